package guestfs

import (
	"fmt"
	"io"
	"io/fs"
	"sort"
	"sync"

	ntfs "www.velocidex.com/golang/go-ntfs/parser"
)

// NTFS adapter over www.velocidex.com/golang/go-ntfs (boot sector, MFT
// with fix-ups and attribute lists, $I30 indexes, run lists). Metadata
// calls into the library are serialised by a mutex; file data is read by
// our extentReader straight from the run list, so concurrent ReadAt calls
// do not queue and large reads stay large. Compressed streams fall back to
// the library's reader (under the mutex).
//
// NTFS has no Unix owners: UID and GID are 0, modes are 0755 for
// directories and 0644 for files (0444 with the read-only attribute).
// Metadata files ($MFT, $Bitmap, ..., MFT records below 24) are hidden.

type ntfsFS struct {
	dev  io.ReaderAt
	size int64
	mu   sync.Mutex
	ctx  *ntfs.NTFSContext
}

type ntfsRef struct{ id int64 }

const ntfsFirstUserRecord = 24

func openNTFS(dev io.ReaderAt, size int64, _ Options) (v volume, err error) {
	paged, err := ntfs.NewPagedReader(dev, 4096, 1024)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w", err)
	}
	c, err := ntfs.GetNTFSContext(paged, 0)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w: %w", ErrCorrupt, err)
	}
	if c.ClusterSize <= 0 || c.ClusterSize > 2<<20 {
		return nil, fmt.Errorf("ntfs: cluster size %d: %w", c.ClusterSize, ErrCorrupt)
	}
	return &ntfsFS{dev: dev, size: size, ctx: c}, nil
}

func (f *ntfsFS) foldCase() bool { return true }

func (f *ntfsFS) root() (n *node, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer recoverTo(&err, "ntfs root")
	e, err := f.ctx.GetMFT(5)
	if err != nil {
		return nil, fmt.Errorf("ntfs: root record: %w", err)
	}
	n = f.stat(e, 5, ".")
	if !n.mode.IsDir() {
		return nil, fmt.Errorf("ntfs: root record is not a directory: %w", ErrCorrupt)
	}
	return n, nil
}

// stat builds a node from an MFT entry. The caller holds f.mu.
func (f *ntfsFS) stat(e *ntfs.MFT_ENTRY, id int64, name string) *node {
	n := &node{name: name, priv: ntfsRef{id}}
	n.st.Ino = uint64(id)
	isDir := e.Flags().Value&0x2 != 0
	readonly := false
	if si, err := e.StandardInformation(f.ctx); err == nil {
		n.st.Mtime = si.File_altered_time().Time
		n.st.Atime = si.File_accessed_time().Time
		n.st.Ctime = si.Mft_altered_time().Time
		n.st.Btime = si.Create_time().Time
		readonly = si.Flags().Value&0x1 != 0
	}
	links := 0
	for _, fn := range e.FileName(f.ctx) {
		if fn.NameType().Value != 2 { // not a DOS-only 8.3 alias
			links++
		}
	}
	n.st.Nlink = uint32(max(links, 1))
	if isDir {
		n.mode = fs.ModeDir | 0o755
		n.st.Nlink = max(n.st.Nlink, 2)
		return n
	}
	n.mode = 0o644
	if readonly {
		n.mode = 0o444
	}
	if vcns := ntfs.GetAllVCNs(f.ctx, e, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, ""); len(vcns) > 0 {
		a := vcns[0]
		if a.IsResident() {
			n.size = int64(a.Content_size())
		} else {
			n.size = int64(a.Actual_size())
		}
	}
	if n.size < 0 {
		n.size = 0
	}
	return n
}

func (f *ntfsFS) readDir(dir *node) (out []*node, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer recoverTo(&err, "ntfs readdir")
	id := dir.priv.(ntfsRef).id
	e, err := f.ctx.GetMFT(id)
	if err != nil {
		return nil, fmt.Errorf("ntfs: record %d: %w", id, err)
	}
	type key struct {
		id   int64
		name string
	}
	// go-ntfs walks $INDEX_ALLOCATION in 4 KiB steps up to its claimed
	// size: refuse sizes the volume cannot hold before it loops on them.
	for _, a := range e.EnumerateAttributes(f.ctx) {
		if a.Type().Value == ntfs.ATTR_TYPE_INDEX_ALLOCATION && (a.DataSize() < 0 || a.DataSize() > f.size) {
			return nil, fmt.Errorf("ntfs: record %d: index of %d bytes: %w", id, a.DataSize(), ErrCorrupt)
		}
	}
	seen := map[key]bool{}
	for _, rec := range e.Dir(f.ctx) {
		fn := rec.File()
		if fn.NameType().Value == 2 {
			continue // DOS 8.3 alias of a name listed anyway
		}
		ref := int64(rec.MftReference() & 0xFFFFFFFFFFFF)
		if ref < ntfsFirstUserRecord && ref != 5 || ref == id {
			continue
		}
		name := fn.Name()
		k := key{ref, name}
		if seen[k] || name == "" {
			continue
		}
		seen[k] = true
		if ref == 5 {
			continue
		}
		child, err := f.ctx.GetMFT(ref)
		if err != nil {
			continue
		}
		out = append(out, f.stat(child, ref, name))
	}
	return out, nil
}

func (f *ntfsFS) open(n *node) (ra io.ReaderAt, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer recoverTo(&err, "ntfs open")
	id := n.priv.(ntfsRef).id
	e, err := f.ctx.GetMFT(id)
	if err != nil {
		return nil, fmt.Errorf("ntfs: record %d: %w", id, err)
	}
	vcns := ntfs.GetAllVCNs(f.ctx, e, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, "")
	if len(vcns) == 0 {
		return &extentReader{}, nil
	}
	first := vcns[0]
	if first.IsResident() || ntfs.IsCompressed(first.Flags()) {
		// Small resident data, or a compressed stream: the library's
		// reader, serialised.
		s, err := ntfs.OpenStream(f.ctx, e, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, "")
		if err != nil {
			return nil, fmt.Errorf("ntfs: open stream of record %d: %w", id, err)
		}
		return &lockedReader{mu: &f.mu, r: s}, nil
	}
	sort.Slice(vcns, func(i, j int) bool { return vcns[i].Runlist_vcn_start() < vcns[j].Runlist_vcn_start() })
	cs := f.ctx.ClusterSize
	initialized := int64(first.Initialized_size())
	var exts []extent
	maxRuns := n.size/cs + 1024
	for _, a := range vcns {
		vcn := int64(a.Runlist_vcn_start())
		for _, run := range a.RunList() {
			if int64(len(exts)) > maxRuns || run.Length <= 0 || run.Length > f.size/cs+1 {
				return nil, fmt.Errorf("ntfs: record %d: bad run list: %w", id, ErrCorrupt)
			}
			log, l := vcn*cs, run.Length*cs
			vcn += run.Length
			if run.RelativeUrnOffset == 0 {
				continue // sparse run: a hole
			}
			// Bytes past the initialized size read as zeros.
			if log >= initialized {
				continue
			}
			l = min(l, initialized-log)
			exts = append(exts, extent{log: log, phys: run.Offset * cs, n: l})
		}
	}
	return newExtentReader(f.dev, f.size, exts, n.size)
}

// lockedReader serialises a ReaderAt that is not safe for concurrent use.
type lockedReader struct {
	mu *sync.Mutex
	r  io.ReaderAt
}

func (l *lockedReader) ReadAt(p []byte, off int64) (n int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer recoverTo(&err, "ntfs read")
	return l.r.ReadAt(p, off)
}
