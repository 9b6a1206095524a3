package guestfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// ext2/3/4 reader, written here (see doc.go for why). It reads the
// superblock, group descriptors (32/64-bit, meta_bg), inodes (128-byte and
// large, with nanosecond and post-2038 times), extent trees, the ext2/3
// indirect block map, inline data, linear and htree directories (htree
// leaves are linear blocks), fast and slow symlinks and device numbers.
// The journal is not replayed; checksums are not verified.

const (
	extIncompatFiletype   = 0x2
	extIncompatMetaBG     = 0x10
	extIncompatExtents    = 0x40
	ext4Incompat64Bit     = 0x80
	extIncompatInlineData = 0x8000

	extFlagExtents    = 0x80000
	extFlagInlineData = 0x10000000
	extFlagHugeFile   = 0x40000
	extFlagEAInode    = 0x200000

	extRootIno   = 2
	extentMagic  = 0xF30A
	maxExtDepth  = 5
	extNBlocks   = 15
	extBlockSize = 60 // bytes of i_block
)

type extFS struct {
	dev        io.ReaderAt
	size       int64
	bs         int64
	inodes     uint32
	ipg        uint32
	bpg        uint32
	inodeSize  int64
	descSize   int64
	firstData  int64
	groups     int64
	incompat   uint32
	roCompat   uint32
	firstMeta  int64
	blocks     int64
	sparseSupr bool

	mu     sync.Mutex
	tables map[int64]int64 // group → inode table block
}

type extInode struct {
	ino   uint32
	raw   []byte
	mode  uint32
	flags uint32
	size  int64
}

func openExt(dev io.ReaderAt, size int64, _ Options) (*extFS, error) {
	sb := make([]byte, 1024)
	if err := readFull(dev, sb, 1024); err != nil {
		return nil, fmt.Errorf("ext: superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[56:]) != 0xEF53 {
		return nil, fmt.Errorf("ext: bad superblock magic: %w", ErrCorrupt)
	}
	f := &extFS{dev: dev, size: size, tables: map[int64]int64{}}
	logbs := le.Uint32(sb[24:])
	if logbs > 6 {
		return nil, fmt.Errorf("ext: block size 1024<<%d: %w", logbs, ErrCorrupt)
	}
	f.bs = 1024 << logbs
	f.inodes = le.Uint32(sb[0:])
	f.blocks = int64(le.Uint32(sb[4:]))
	f.firstData = int64(le.Uint32(sb[20:]))
	f.bpg = le.Uint32(sb[32:])
	f.ipg = le.Uint32(sb[40:])
	rev := le.Uint32(sb[76:])
	f.inodeSize = 128
	if rev >= 1 {
		f.inodeSize = int64(le.Uint16(sb[88:]))
	}
	f.incompat = le.Uint32(sb[96:])
	f.roCompat = le.Uint32(sb[100:])
	f.sparseSupr = f.roCompat&0x1 != 0
	f.descSize = 32
	if f.incompat&ext4Incompat64Bit != 0 {
		f.blocks |= int64(le.Uint32(sb[0x150:])) << 32
		if ds := int64(le.Uint16(sb[254:])); ds >= 64 {
			f.descSize = ds
		}
	}
	f.firstMeta = int64(le.Uint32(sb[0x104:]))
	switch {
	case f.bpg == 0 || f.ipg == 0 || f.inodes == 0:
		return nil, fmt.Errorf("ext: zero blocks/inodes per group: %w", ErrCorrupt)
	case f.inodeSize < 128 || f.inodeSize > f.bs || f.inodeSize&(f.inodeSize-1) != 0:
		return nil, fmt.Errorf("ext: inode size %d: %w", f.inodeSize, ErrCorrupt)
	case f.descSize > f.bs || f.descSize&(f.descSize-1) != 0:
		return nil, fmt.Errorf("ext: descriptor size %d: %w", f.descSize, ErrCorrupt)
	case f.incompat&0x1 != 0:
		return nil, fmt.Errorf("ext: compression: %w", ErrUnsupported)
	case f.incompat&0x8 != 0:
		return nil, fmt.Errorf("ext: this is an external journal device, not a filesystem: %w", ErrUnsupported)
	}
	f.groups = (int64(f.inodes) + int64(f.ipg) - 1) / int64(f.ipg)
	return f, nil
}

func (f *extFS) foldCase() bool { return false }

func (f *extFS) root() (*node, error) {
	n, err := f.node(extRootIno, ".")
	if err != nil {
		return nil, fmt.Errorf("ext: root inode: %w", err)
	}
	return n, nil
}

func (f *extFS) groupHasSuper(g int64) bool {
	if !f.sparseSupr || g <= 1 {
		return true
	}
	for _, b := range []int64{3, 5, 7} {
		p := b
		for p < g {
			p *= b
		}
		if p == g {
			return true
		}
	}
	return false
}

// inodeTable returns the first block of group g's inode table.
func (f *extFS) inodeTable(g int64) (int64, error) {
	f.mu.Lock()
	t, ok := f.tables[g]
	f.mu.Unlock()
	if ok {
		return t, nil
	}
	perBlock := f.bs / f.descSize
	blk := g / perBlock
	var descBlock int64
	if f.incompat&extIncompatMetaBG == 0 || blk < f.firstMeta {
		descBlock = f.firstData + 1 + blk
	} else {
		first := blk * perBlock // first group of this meta group
		descBlock = f.firstData + first*int64(f.bpg)
		if f.groupHasSuper(first) {
			descBlock++
		}
	}
	d := make([]byte, f.descSize)
	if err := readFull(f.dev, d, descBlock*f.bs+(g%perBlock)*f.descSize); err != nil {
		return 0, fmt.Errorf("group descriptor %d: %w", g, err)
	}
	t = int64(binary.LittleEndian.Uint32(d[8:]))
	if f.descSize >= 64 {
		t |= int64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	if t <= 0 || t >= f.size/f.bs {
		return 0, fmt.Errorf("group %d inode table at block %d: %w", g, t, ErrCorrupt)
	}
	f.mu.Lock()
	if len(f.tables) > 1<<16 {
		clear(f.tables)
	}
	f.tables[g] = t
	f.mu.Unlock()
	return t, nil
}

func (f *extFS) readInode(ino uint32) (*extInode, error) {
	if ino == 0 || ino > f.inodes {
		return nil, fmt.Errorf("inode %d out of range: %w", ino, ErrCorrupt)
	}
	g := int64(ino-1) / int64(f.ipg)
	idx := int64(ino-1) % int64(f.ipg)
	t, err := f.inodeTable(g)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, f.inodeSize)
	if err := readFull(f.dev, raw, t*f.bs+idx*f.inodeSize); err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino, err)
	}
	le := binary.LittleEndian
	in := &extInode{ino: ino, raw: raw, mode: uint32(le.Uint16(raw[0:])), flags: le.Uint32(raw[32:])}
	in.size = int64(le.Uint32(raw[4:])) | int64(le.Uint32(raw[108:]))<<32
	if in.size < 0 {
		return nil, fmt.Errorf("inode %d size: %w", ino, ErrCorrupt)
	}
	return in, nil
}

// extraIsize is the number of bytes past 128 that hold the large-inode
// fields (0 for 128-byte inodes or if corrupt).
func (in *extInode) extraIsize() int {
	if len(in.raw) <= 128+2 {
		return 0
	}
	x := int(binary.LittleEndian.Uint16(in.raw[128:]))
	if 128+x > len(in.raw) {
		return 0
	}
	return x
}

// extTime decodes a 32-bit seconds field plus its optional "extra" word
// (2 epoch bits extending the seconds past 2038, 30 bits of nanoseconds).
func (in *extInode) time(off, extraOff int) time.Time {
	sec := int64(int32(binary.LittleEndian.Uint32(in.raw[off:])))
	var nsec int64
	if extraOff > 0 && 128+in.extraIsize() >= extraOff+4 {
		extra := binary.LittleEndian.Uint32(in.raw[extraOff:])
		sec += int64(extra&3) << 32
		nsec = int64(extra >> 2)
		if nsec > 999999999 {
			nsec = 0
		}
	}
	return time.Unix(sec, nsec)
}

func (f *extFS) node(ino uint32, name string) (*node, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	r := in.raw
	n := &node{name: name, mode: unixMode(in.mode), size: in.size, priv: in}
	n.st = Stat{
		UID:   uint32(le.Uint16(r[2:])) | uint32(le.Uint16(r[120:]))<<16,
		GID:   uint32(le.Uint16(r[24:])) | uint32(le.Uint16(r[122:]))<<16,
		Atime: in.time(8, 140),
		Ctime: in.time(12, 132),
		Mtime: in.time(16, 136),
		Nlink: uint32(le.Uint16(r[26:])),
		Ino:   uint64(ino),
	}
	if 128+in.extraIsize() >= 152 {
		n.st.Btime = in.time(144, 148)
	}
	switch in.mode & sIFMT {
	case sIFDIR:
	case sIFREG:
	case sIFLNK:
		t, err := f.readlink(in)
		if err != nil {
			return nil, fmt.Errorf("symlink inode %d: %w", ino, err)
		}
		n.st.LinkTarget = t
	case sIFCHR, sIFBLK:
		n.size = 0
		b0, b1 := le.Uint32(r[40:]), le.Uint32(r[44:])
		if b0 != 0 {
			n.st.Rdev = mkdev((b0>>8)&0xff, b0&0xff)
		} else {
			n.st.Rdev = mkdev((b1>>8)&0xfff, (b1&0xff)|((b1>>12)&0xfff00))
		}
	default:
		n.size = 0
	}
	return n, nil
}

func (f *extFS) readlink(in *extInode) (string, error) {
	if in.size > maxSymlinkLen {
		return "", fmt.Errorf("symlink of %d bytes: %w", in.size, ErrCorrupt)
	}
	le := binary.LittleEndian
	blocks := int64(le.Uint32(in.raw[28:]))
	if in.flags&extFlagEAInode == 0 && in.flags&extFlagInlineData == 0 {
		var eaBlocks int64
		if le.Uint32(in.raw[104:]) != 0 {
			eaBlocks = f.bs >> 9
		}
		if blocks-eaBlocks == 0 {
			if in.size > extBlockSize {
				return "", fmt.Errorf("fast symlink of %d bytes: %w", in.size, ErrCorrupt)
			}
			return string(in.raw[40 : 40+in.size]), nil
		}
	}
	ra, err := f.content(in)
	if err != nil {
		return "", err
	}
	buf := make([]byte, in.size)
	if err := readFull(ra, buf, 0); err != nil && in.size > 0 {
		return "", err
	}
	return string(buf), nil
}

func (f *extFS) readDir(dir *node) ([]*node, error) {
	in := dir.priv.(*extInode)
	if in.size > maxDirBytes {
		return nil, fmt.Errorf("directory of %d bytes: %w", in.size, ErrCorrupt)
	}
	type ent struct {
		ino  uint32
		name string
	}
	var ents []ent
	parse := func(b []byte) {
		le := binary.LittleEndian
		for off := 0; off+8 <= len(b); {
			ino := le.Uint32(b[off:])
			rl := int(le.Uint16(b[off+4:]))
			if f.bs >= 65536 && (rl == 65535 || rl == 0) {
				rl = int(f.bs)
			}
			nl := int(b[off+6])
			if f.incompat&extIncompatFiletype == 0 {
				nl |= int(b[off+7]) << 8
			}
			if rl < 8 || off+rl > len(b) || 8+nl > rl {
				return // corrupt: skip the rest of this block
			}
			if ino != 0 && nl > 0 {
				name := string(b[off+8 : off+8+nl])
				if name != "." && name != ".." {
					ents = append(ents, ent{ino, name})
				}
			}
			off += rl
		}
	}
	if in.flags&extFlagInlineData != 0 {
		data, err := f.inlineData(in)
		if err != nil {
			return nil, err
		}
		// 4 bytes of parent inode, then entries; the xattr part follows.
		if len(data) >= 4 {
			parse(data[4:min(len(data), extBlockSize)])
			if len(data) > extBlockSize {
				parse(data[extBlockSize:])
			}
		}
	} else {
		// Read only the mapped parts: a corrupt size over holes costs nothing.
		exts, err := f.dataExtents(in)
		if err != nil {
			return nil, err
		}
		chunk := max(f.bs, 1<<20/f.bs*f.bs)
		buf := make([]byte, chunk)
		for _, e := range exts {
			if e.zero {
				continue
			}
			end := min(e.n, in.size-e.log)
			if e.phys+end > f.size {
				return nil, fmt.Errorf("directory extent past the volume: %w", ErrCorrupt)
			}
			for off := int64(0); off < end; off += chunk {
				b := buf[:min(chunk, end-off)]
				if err := readFull(f.dev, b, e.phys+off); err != nil {
					return nil, err
				}
				for i := 0; i < len(b); i += int(f.bs) {
					parse(b[i:min(i+int(f.bs), len(b))])
				}
			}
		}
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
