package guestfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// XFS reader, written here: github.com/masahiro331/go-xfs-filesystem
// keeps a shared Seek position (not safe for concurrent reads), reads one
// block per Read call, maps files block-by-block in a Go map, returns no
// owners (Sys() is nil) and cannot read symlinks. This reader handles v4
// and v5 (CRC) superblocks, v1-v3 inodes, the local/extents/btree data
// fork formats, shortform/block/leaf/node directories (data blocks are
// read linearly; the hash index is not needed to list), inline and remote
// symlinks, bigtime and the 64-bit extent counters. The log is not
// replayed; checksums are not verified.

type xfsFS struct {
	dev       io.ReaderAt
	size      int64
	bs        int64
	agblocks  int64
	agcount   int64
	agblklog  uint
	inopblog  uint
	inodeSize int64
	dirBlk    int64
	rootIno   uint64
	v5        bool
	ftype     bool
}

type xfsInode struct {
	ino    uint64
	raw    []byte
	mode   uint32
	format byte
	size   int64
	nexts  uint64
	fork   []byte // data fork literal area
	flags2 uint64
}

const (
	xfsDirLeafOffset = 32 << 30 // directory data lives below this logical offset
	maxBtreeLevels   = 10
)

func openXFS(dev io.ReaderAt, size int64, _ Options) (volume, error) {
	sb := make([]byte, 512)
	if err := readFull(dev, sb, 0); err != nil {
		return nil, fmt.Errorf("xfs: superblock: %w", err)
	}
	be := binary.BigEndian
	if string(sb[:4]) != "XFSB" {
		return nil, fmt.Errorf("xfs: bad magic: %w", ErrCorrupt)
	}
	f := &xfsFS{dev: dev, size: size}
	f.bs = int64(be.Uint32(sb[4:]))
	f.rootIno = be.Uint64(sb[56:])
	f.agblocks = int64(be.Uint32(sb[84:]))
	f.agcount = int64(be.Uint32(sb[88:]))
	ver := be.Uint16(sb[100:])
	f.inodeSize = int64(be.Uint16(sb[104:]))
	blocklog := uint(sb[120])
	f.inopblog = uint(sb[123])
	f.agblklog = uint(sb[124])
	dirblklog := uint(sb[192])
	f.v5 = ver&0xF == 5
	features2 := be.Uint32(sb[200:])
	incompat := be.Uint32(sb[216:])
	f.ftype = features2&0x200 != 0 || (f.v5 && incompat&0x1 != 0)
	switch {
	case blocklog < 9 || blocklog > 16 || f.bs != 1<<blocklog:
		return nil, fmt.Errorf("xfs: block size %d: %w", f.bs, ErrCorrupt)
	case f.inodeSize < 256 && f.v5 || f.inodeSize < 128 || f.inodeSize > f.bs || f.inodeSize&(f.inodeSize-1) != 0:
		return nil, fmt.Errorf("xfs: inode size %d: %w", f.inodeSize, ErrCorrupt)
	case f.bs>>f.inopblog != f.inodeSize:
		return nil, fmt.Errorf("xfs: inodes per block: %w", ErrCorrupt)
	case f.agblocks == 0 || f.agcount == 0 || f.agblklog > 31 || int64(1)<<f.agblklog < f.agblocks:
		return nil, fmt.Errorf("xfs: allocation group geometry: %w", ErrCorrupt)
	case dirblklog > 8:
		return nil, fmt.Errorf("xfs: directory block log %d: %w", dirblklog, ErrCorrupt)
	}
	if f.v5 && incompat&^uint32(0x3F) != 0 {
		return nil, fmt.Errorf("xfs: unknown incompatible features %#x: %w", incompat, ErrUnsupported)
	}
	f.dirBlk = f.bs << dirblklog
	return f, nil
}

func (f *xfsFS) foldCase() bool { return false }

// fsbToByte converts a filesystem block number (AG number in the high
// bits) to a byte offset.
func (f *xfsFS) fsbToByte(fsb uint64) (int64, error) {
	ag := fsb >> f.agblklog
	bno := fsb & (1<<f.agblklog - 1)
	if int64(ag) >= f.agcount || int64(bno) >= f.agblocks {
		return 0, fmt.Errorf("xfs: block %#x outside the filesystem: %w", fsb, ErrCorrupt)
	}
	return (int64(ag)*f.agblocks + int64(bno)) * f.bs, nil
}

func (f *xfsFS) readInode(ino uint64) (*xfsInode, error) {
	aginolog := f.inopblog + f.agblklog
	agno := ino >> aginolog
	agino := ino & (1<<aginolog - 1)
	agbno := agino >> f.inopblog
	idx := agino & (1<<f.inopblog - 1)
	if int64(agno) >= f.agcount || int64(agbno) >= f.agblocks {
		return nil, fmt.Errorf("xfs: inode %d out of range: %w", ino, ErrCorrupt)
	}
	off := (int64(agno)*f.agblocks+int64(agbno))*f.bs + int64(idx)*f.inodeSize
	raw := make([]byte, f.inodeSize)
	if err := readFull(f.dev, raw, off); err != nil {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, err)
	}
	be := binary.BigEndian
	if be.Uint16(raw) != 0x494e {
		return nil, fmt.Errorf("xfs: inode %d: bad magic: %w", ino, ErrCorrupt)
	}
	in := &xfsInode{ino: ino, raw: raw, mode: uint32(be.Uint16(raw[2:])), format: raw[5]}
	in.size = int64(be.Uint64(raw[56:]))
	if in.size < 0 {
		return nil, fmt.Errorf("xfs: inode %d size: %w", ino, ErrCorrupt)
	}
	lit := int64(100)
	if raw[4] >= 3 {
		lit = 176
		in.flags2 = be.Uint64(raw[120:])
	}
	if lit > f.inodeSize {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, ErrCorrupt)
	}
	in.nexts = uint64(be.Uint32(raw[76:]))
	if in.flags2&0x10 != 0 { // NREXT64
		in.nexts = be.Uint64(raw[24:])
	}
	end := f.inodeSize
	if fo := int64(raw[82]); fo != 0 {
		end = min(end, lit+fo*8)
	}
	in.fork = raw[lit:end]
	return in, nil
}

func (f *xfsFS) time(in *xfsInode, off int) time.Time {
	be := binary.BigEndian
	if in.flags2&0x8 != 0 { // bigtime: ns since 1901-12-13T20:45:52Z
		ns := be.Uint64(in.raw[off:])
		return time.Unix(int64(ns/1e9)-(1<<31), int64(ns%1e9))
	}
	sec := int64(int32(be.Uint32(in.raw[off:])))
	nsec := int64(be.Uint32(in.raw[off+4:]))
	if nsec > 999999999 {
		nsec = 0
	}
	return time.Unix(sec, nsec)
}

func (f *xfsFS) root() (*node, error) { return f.node(f.rootIno, ".") }

func (f *xfsFS) node(ino uint64, name string) (*node, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	be := binary.BigEndian
	r := in.raw
	n := &node{name: name, mode: unixMode(in.mode), size: in.size, priv: in}
	n.st = Stat{UID: be.Uint32(r[8:]), GID: be.Uint32(r[12:]), Ino: ino,
		Atime: f.time(in, 32), Mtime: f.time(in, 40), Ctime: f.time(in, 48)}
	if r[4] == 1 {
		n.st.Nlink = uint32(be.Uint16(r[6:]))
	} else {
		n.st.Nlink = be.Uint32(r[16:])
	}
	if r[4] >= 3 {
		n.st.Btime = f.time(in, 144)
	}
	switch in.mode & sIFMT {
	case sIFREG, sIFDIR:
	case sIFLNK:
		t, err := f.readlink(in)
		if err != nil {
			return nil, err
		}
		n.st.LinkTarget = t
	case sIFCHR, sIFBLK:
		n.size = 0
		if len(in.fork) >= 4 {
			d := be.Uint32(in.fork)
			n.st.Rdev = mkdev(d>>18, d&0x3ffff)
		}
	default:
		n.size = 0
	}
	return n, nil
}

// extents decodes the data fork's block map.
func (f *xfsFS) extents(in *xfsInode) ([]extent, error) {
	maxRecs := uint64(min(in.size, f.size)/f.bs + 64)
	var recs []byte
	switch in.format {
	case 2:
		if in.nexts*16 > uint64(len(in.fork)) {
			return nil, fmt.Errorf("xfs: inode %d has %d extents: %w", in.ino, in.nexts, ErrCorrupt)
		}
		recs = in.fork[:in.nexts*16]
	case 3:
		var err error
		recs, err = f.btreeRecords(in, maxRecs)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("xfs: inode %d data fork format %d: %w", in.ino, in.format, ErrCorrupt)
	}
	be := binary.BigEndian
	out := make([]extent, 0, len(recs)/16)
	for i := 0; i+16 <= len(recs); i += 16 {
		hi, lo := be.Uint64(recs[i:]), be.Uint64(recs[i+8:])
		unwritten := hi>>63 != 0
		startoff := int64(hi >> 9 & (1<<54 - 1))
		startblock := (hi&0x1ff)<<43 | lo>>21
		count := int64(lo & (1<<21 - 1))
		phys := int64(0)
		if !unwritten {
			var err error
			if phys, err = f.fsbToByte(startblock); err != nil {
				return nil, err
			}
		}
		out = append(out, extent{log: startoff * f.bs, phys: phys, n: count * f.bs, zero: unwritten})
	}
	return out, nil
}

// btreeRecords collects the leaf records of a btree-format data fork. Each
// level must be one below its parent, so a corrupt tree cannot loop.
func (f *xfsFS) btreeRecords(in *xfsInode, maxRecs uint64) ([]byte, error) {
	be := binary.BigEndian
	root := in.fork
	if len(root) < 4 {
		return nil, fmt.Errorf("xfs: btree root: %w", ErrCorrupt)
	}
	level := int(be.Uint16(root))
	nrecs := int(be.Uint16(root[2:]))
	rootMax := (len(root) - 4) / 16
	if level == 0 || level > maxBtreeLevels || nrecs > rootMax {
		return nil, fmt.Errorf("xfs: btree root level %d with %d records: %w", level, nrecs, ErrCorrupt)
	}
	hdr := 24
	magic := "BMAP"
	if f.v5 {
		hdr, magic = 72, "BMA3"
	}
	var out []byte
	visited := map[int64]bool{}
	var walk func(ptr uint64, want int) error
	walk = func(ptr uint64, want int) error {
		off, err := f.fsbToByte(ptr)
		if err != nil {
			return err
		}
		if visited[off] {
			return fmt.Errorf("xfs: btree block used twice: %w", ErrCorrupt)
		}
		visited[off] = true
		b := make([]byte, f.bs)
		if err := readFull(f.dev, b, off); err != nil {
			return err
		}
		lvl, n := int(be.Uint16(b[4:])), int(be.Uint16(b[6:]))
		if string(b[:4]) != magic || lvl != want {
			return fmt.Errorf("xfs: btree block at %d: %w", off, ErrCorrupt)
		}
		maxr := (len(b) - hdr) / 16
		if n > maxr {
			return fmt.Errorf("xfs: btree block with %d records: %w", n, ErrCorrupt)
		}
		if lvl == 0 {
			if uint64(len(out)/16+n) > maxRecs {
				return fmt.Errorf("xfs: more extents than blocks: %w", ErrCorrupt)
			}
			out = append(out, b[hdr:hdr+16*n]...)
			return nil
		}
		ptrs := b[hdr+8*maxr:]
		for i := 0; i < n; i++ {
			if err := walk(be.Uint64(ptrs[8*i:]), lvl-1); err != nil {
				return err
			}
		}
		return nil
	}
	ptrs := root[4+8*rootMax:]
	for i := 0; i < nrecs; i++ {
		if err := walk(be.Uint64(ptrs[8*i:]), level-1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *xfsFS) content(in *xfsInode, size int64) (io.ReaderAt, error) {
	if in.format == 1 {
		if size > int64(len(in.fork)) {
			return nil, fmt.Errorf("xfs: inode %d local data of %d bytes: %w", in.ino, size, ErrCorrupt)
		}
		return bytes.NewReader(in.fork[:size]), nil
	}
	exts, err := f.extents(in)
	if err != nil {
		return nil, err
	}
	return newExtentReader(f.dev, f.size, exts, size)
}

func (f *xfsFS) open(n *node) (io.ReaderAt, error) {
	return f.content(n.priv.(*xfsInode), n.size)
}

func (f *xfsFS) readlink(in *xfsInode) (string, error) {
	if in.size > maxSymlinkLen || in.size == 0 {
		return "", fmt.Errorf("xfs: symlink of %d bytes: %w", in.size, ErrCorrupt)
	}
	if in.format == 1 {
		if in.size > int64(len(in.fork)) {
			return "", fmt.Errorf("xfs: symlink: %w", ErrCorrupt)
		}
		return string(in.fork[:in.size]), nil
	}
	// Remote symlink: v5 blocks start with a 56-byte "XSLM" header, except
	// that mkfs.xfs -p (xfsprogs 6.1) writes them without one; both are
	// accepted.
	hdr := int64(0)
	if f.v5 {
		hdr = 56
	}
	per := f.bs - hdr
	nblk := (in.size + per - 1) / per
	ra, err := f.content(in, nblk*f.bs)
	if err != nil {
		return "", err
	}
	raw := make([]byte, nblk*f.bs)
	if err := readFull(ra, raw, 0); err != nil {
		return "", err
	}
	if hdr > 0 && string(raw[:4]) != "XSLM" {
		return string(raw[:in.size]), nil
	}
	var out []byte
	for b := int64(0); b < nblk; b++ {
		blk := raw[b*f.bs : (b+1)*f.bs]
		if hdr > 0 && string(blk[:4]) != "XSLM" {
			return "", fmt.Errorf("xfs: remote symlink block: %w", ErrCorrupt)
		}
		out = append(out, blk[hdr:]...)
	}
	return string(out[:in.size]), nil
}

type xfsDirent struct {
	ino  uint64
	name string
}

func (f *xfsFS) readDir(dir *node) ([]*node, error) {
	in := dir.priv.(*xfsInode)
	var ents []xfsDirent
	var err error
	if in.format == 1 {
		ents, err = f.shortformDir(in)
	} else {
		ents, err = f.blockDir(in)
	}
	if err != nil {
		return nil, err
	}
	out := make([]*node, 0, len(ents))
	for _, e := range ents {
		n, err := f.node(e.ino, e.name)
		if err != nil {
			continue // a corrupt entry is left out, the rest still lists
		}
		out = append(out, n)
	}
	return out, nil
}

func (f *xfsFS) shortformDir(in *xfsInode) ([]xfsDirent, error) {
	b := in.fork
	if int64(len(b)) > in.size {
		b = b[:in.size]
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("xfs: shortform directory: %w", ErrCorrupt)
	}
	count := int(b[0])
	inoLen := 4
	if b[1] != 0 {
		count = int(b[1])
		inoLen = 8
	}
	off := 2 + inoLen
	var out []xfsDirent
	for i := 0; i < count; i++ {
		if off+3 > len(b) {
			return out, fmt.Errorf("xfs: shortform directory truncated: %w", ErrCorrupt)
		}
		nl := int(b[off])
		p := off + 3
		end := p + nl + inoLen
		if f.ftype {
			end++
		}
		if end > len(b) {
			return out, fmt.Errorf("xfs: shortform directory truncated: %w", ErrCorrupt)
		}
		name := string(b[p : p+nl])
		ip := p + nl
		if f.ftype {
			ip++
		}
		var ino uint64
		if inoLen == 4 {
			ino = uint64(binary.BigEndian.Uint32(b[ip:]))
		} else {
			ino = binary.BigEndian.Uint64(b[ip:]) & (1<<56 - 1)
		}
		out = append(out, xfsDirent{ino, name})
		off = end
	}
	return out, nil
}

func (f *xfsFS) blockDir(in *xfsInode) ([]xfsDirent, error) {
	size := min(in.size, xfsDirLeafOffset)
	if size > maxDirBytes {
		return nil, fmt.Errorf("xfs: directory of %d bytes: %w", size, ErrCorrupt)
	}
	exts, err := f.extents(in)
	if err != nil {
		return nil, err
	}
	ra, err := newExtentReader(f.dev, f.size, exts, size)
	if err != nil {
		return nil, err
	}
	// Visit only the directory blocks that are mapped.
	var offs []int64
	for _, e := range ra.ext {
		if e.zero {
			continue
		}
		for o := e.log / f.dirBlk * f.dirBlk; o < e.log+e.n && o+f.dirBlk <= size; o += f.dirBlk {
			if len(offs) == 0 || offs[len(offs)-1] < o {
				offs = append(offs, o)
			}
		}
	}
	be := binary.BigEndian
	var out []xfsDirent
	blk := make([]byte, f.dirBlk)
	for _, off := range offs {
		if err := readFull(ra, blk, off); err != nil {
			return out, err
		}
		var hdr int
		end := len(blk)
		switch string(blk[:4]) {
		case "XD2B", "XD2D":
			hdr = 16
		case "XDB3", "XDD3":
			hdr = 64
		default:
			continue // a hole or a free/leaf block
		}
		if blk[3] == 'B' || blk[2] == 'B' { // single-block form: leaf entries + tail at the end
			count := int(be.Uint32(blk[len(blk)-8:]))
			end = len(blk) - 8 - 8*count
			if end < hdr {
				continue
			}
		}
		for p := hdr; p+8 <= end; {
			if be.Uint16(blk[p:]) == 0xFFFF { // unused region
				l := int(be.Uint16(blk[p+2:]))
				if l < 8 || l%8 != 0 {
					break
				}
				p += l
				continue
			}
			if p+11 > end {
				break
			}
			ino := be.Uint64(blk[p:])
			nl := int(blk[p+8])
			l := 8 + 1 + nl + 2
			if f.ftype {
				l++
			}
			l = (l + 7) &^ 7
			if nl == 0 || p+l > end {
				break
			}
			name := string(blk[p+9 : p+9+nl])
			if name != "." && name != ".." {
				out = append(out, xfsDirent{ino & (1<<56 - 1), name})
			}
			p += l
		}
	}
	return out, nil
}
