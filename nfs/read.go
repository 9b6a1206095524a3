package nfs

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/rptree"
	nfsfile "github.com/willscott/go-nfs/file"
)

// NFSv3 READ is answered here rather than by go-nfs, which serves one
// request per connection at a time, opens and stats the file for every
// read, and copies the data four times. Here reads of one connection run
// concurrently (clients such as qemu and the kernel keep many in flight),
// open files are kept by handle, and a disk's bytes go from the engine's
// chunk cache to the socket in one writev.

const (
	nfsProcRead = 6

	nfs3OK    = 0
	nfs3ErrIO = 5
	nfs3IsDir = 21
	nfs3Inval = 22
	nfs3Stale = 70

	// maxReadCount bounds one READ's reply (clients ask at most rtmax,
	// which go-nfs's FSINFO puts far above; Linux asks 1 MiB).
	maxReadCount = 4 << 20
	// readsInFlight bounds the reads one connection runs at once.
	readsInFlight = 16
	// maxOpenFiles bounds the files kept open (idle ones are closed
	// beyond it).
	maxOpenFiles = 256
)

// reads serves READ for every connection of one server.
type reads struct {
	ctx     context.Context
	tree    *rptree.Tree
	handles *handles
	log     *slog.Logger

	mu   sync.Mutex
	open map[string]*openFile // by handle
	bufs sync.Pool            // *[]byte for files that are not disks
}

// openFile is a file kept open for reads, with its attributes encoded.
type openFile struct {
	f    *rptree.File
	size int64
	attr []byte // fattr3
	refs int
}

func newReads(ctx context.Context, tree *rptree.Tree, h *handles, log *slog.Logger) *reads {
	return &reads{ctx: ctx, tree: tree, handles: h, log: log, open: map[string]*openFile{}}
}

// isRead reports whether rec is an NFSv3 READ call.
func isRead(rec []byte) bool {
	d := xdrReader{b: rec}
	d.uint32() // xid
	typ, rpcvers, prog, vers, proc := d.uint32(), d.uint32(), d.uint32(), d.uint32(), d.uint32()
	return d.err == nil && typ == msgCall && rpcvers == 2 && prog == progNFS && vers == 3 && proc == nfsProcRead
}

// serve answers the READ call rec and sends the reply with send.
func (r *reads) serve(rec []byte, send func(parts ...[]byte) error) error {
	d := xdrReader{b: rec}
	xid := d.uint32()
	for range 5 { // type, rpcvers, prog, vers, proc: checked by isRead
		d.uint32()
	}
	d.opaqueAuth()
	d.opaqueAuth()
	fh := d.opaque(64)
	off := uint64(d.uint32())<<32 | uint64(d.uint32())
	count := d.uint32()
	if d.err != nil {
		return send(accepted(xid, acceptGarbageArgs))
	}
	of, status := r.acquire(fh)
	if status != nfs3OK {
		return send(readError(xid, status))
	}
	defer r.release(fh, of)
	n := int(min(count, maxReadCount))
	if int64(off) >= of.size {
		n = 0
	} else {
		n = int(min(int64(n), of.size-int64(off)))
	}
	var (
		data [][]byte
		span engine.Span
	)
	defer span.Release()
	if n > 0 {
		ok, err := of.f.ReadSpan(r.ctx, &span, int64(off), n)
		if ok {
			data = span.Bytes()
		} else {
			bp := r.buf(n)
			defer r.bufs.Put(bp)
			var k int
			k, err = of.f.ReadAtContext(r.ctx, (*bp)[:n], int64(off))
			if errors.Is(err, io.EOF) {
				err = nil
			}
			data = [][]byte{(*bp)[:k]}
		}
		if err != nil {
			r.log.Error("NFS read failed", "path", of.f.Path(), "offset", off, "count", n, "err", err)
			return send(readError(xid, nfs3ErrIO))
		}
	}
	got := 0
	for _, b := range data {
		got += len(b)
	}
	eof := uint32(0)
	if int64(off)+int64(got) >= of.size {
		eof = 1
	}
	head := accepted(xid, acceptSuccess)
	head = binary.BigEndian.AppendUint32(head, nfs3OK)
	head = binary.BigEndian.AppendUint32(head, 1) // attributes follow
	head = append(head, of.attr...)
	head = binary.BigEndian.AppendUint32(head, uint32(got))
	head = binary.BigEndian.AppendUint32(head, eof)
	head = binary.BigEndian.AppendUint32(head, uint32(got))
	parts := append([][]byte{head}, data...)
	if pad := (4 - got%4) % 4; pad > 0 {
		parts = append(parts, make([]byte, pad))
	}
	return send(parts...)
}

// readError is a READ reply with status and no attributes.
func readError(xid, status uint32) []byte {
	out := binary.BigEndian.AppendUint32(accepted(xid, acceptSuccess), status)
	return binary.BigEndian.AppendUint32(out, 0)
}

// buf returns a pooled buffer of at least n bytes.
func (r *reads) buf(n int) *[]byte {
	if bp, ok := r.bufs.Get().(*[]byte); ok && cap(*bp) >= n {
		return bp
	}
	b := make([]byte, n)
	return &b
}

// acquire returns the open file fh names (opening it when needed), or an
// NFS status.
func (r *reads) acquire(fh []byte) (*openFile, uint32) {
	key := string(fh)
	r.mu.Lock()
	if of, ok := r.open[key]; ok {
		of.refs++
		r.mu.Unlock()
		return of, nfs3OK
	}
	r.mu.Unlock()
	comps, err := r.handles.fromHandle(r.ctx, fh)
	if err != nil {
		return nil, nfs3Stale
	}
	p := treePath(strings.Join(comps, "/"))
	f, err := r.tree.OpenFile(r.ctx, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nfs3Stale
	case err != nil:
		r.log.Error("NFS read: open failed", "path", p, "err", err)
		return nil, nfs3ErrIO
	}
	fi, _ := f.Stat()
	if !fi.Mode().IsRegular() {
		f.Close()
		if fi.IsDir() {
			return nil, nfs3IsDir
		}
		return nil, nfs3Inval
	}
	of := &openFile{f: f, size: fi.Size(), attr: fattr3(info{fi, p}), refs: 1}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.open[key]; ok { // opened meanwhile by another read
		f.Close()
		old.refs++
		return old, nfs3OK
	}
	if len(r.open) >= maxOpenFiles {
		for k, o := range r.open {
			if o.refs == 0 {
				o.f.Close()
				delete(r.open, k)
			}
		}
	}
	r.open[key] = of
	return of, nfs3OK
}

// release ends a read of of.
func (r *reads) release(fh []byte, of *openFile) {
	r.mu.Lock()
	defer r.mu.Unlock()
	of.refs--
	if cur, ok := r.open[string(fh)]; !ok || cur != of {
		if of.refs == 0 {
			of.f.Close() // evicted while read
		}
	}
}

// close closes every open file.
func (r *reads) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, o := range r.open {
		o.f.Close()
		delete(r.open, k)
	}
}

// fattr3 encodes a file's NFSv3 attributes as go-nfs does for the same
// file (so that a client sees one set of attributes, whichever answered):
// the mode word, link count, owner and file ID of info, every time the
// modification time.
func fattr3(fi info) []byte {
	typ := uint32(1) // NF3REG
	switch {
	case fi.IsDir():
		typ = 2
	case fi.Mode()&fs.ModeSymlink != 0:
		typ = 5
	}
	a, _ := fi.Sys().(nfsfile.FileInfo)
	t := fi.ModTime()
	out := make([]byte, 0, 84)
	for _, v := range []uint32{typ, uint32(fi.Mode()), a.Nlink, a.UID, a.GID} {
		out = binary.BigEndian.AppendUint32(out, v)
	}
	out = binary.BigEndian.AppendUint64(out, uint64(fi.Size()))
	out = binary.BigEndian.AppendUint64(out, uint64(fi.Size()))
	out = binary.BigEndian.AppendUint64(out, 0) // rdev
	out = binary.BigEndian.AppendUint64(out, 0) // fsid
	out = binary.BigEndian.AppendUint64(out, a.Fileid)
	for range 3 {
		out = binary.BigEndian.AppendUint32(out, uint32(t.Unix()))
		out = binary.BigEndian.AppendUint32(out, uint32(t.Nanosecond()))
	}
	return out
}
