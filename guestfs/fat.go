package guestfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// FAT12/16/32 reader, written here: go-diskfs reads only FAT32 and the
// FAT code is small. It decodes long (VFAT) names with their checksums,
// the NT lower-case flags of 8.3 names, and FAT date/times (local wall
// time in 2-second steps, interpreted in Options.FATLocation).

type fatFS struct {
	dev       io.ReaderAt
	size      int64
	bits      int   // 12, 16 or 32
	secSize   int64 //
	clusSize  int64
	fatOff    int64 // byte offset of the first FAT
	fatBytes  int64
	rootOff   int64 // FAT12/16 fixed root directory
	rootBytes int64
	rootClus  uint32 // FAT32 root cluster
	dataOff   int64
	clusters  uint32 // number of data clusters
	loc       *time.Location

	mu    sync.Mutex
	pages map[int64][]byte // FAT pages of fatPage bytes
}

const fatPage = 64 << 10

// isFATBoot reports whether b starts with a plausible FAT boot sector.
func isFATBoot(b []byte) bool {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return false
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return false
	}
	_, err := parseFATBPB(b, 1<<62)
	return err == nil
}

func parseFATBPB(b []byte, size int64) (*fatFS, error) {
	le := binary.LittleEndian
	ss := int64(le.Uint16(b[11:]))
	spc := int64(b[13])
	reserved := int64(le.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEnts := int64(le.Uint16(b[17:]))
	total := int64(le.Uint16(b[19:]))
	if total == 0 {
		total = int64(le.Uint32(b[32:]))
	}
	fatSz := int64(le.Uint16(b[22:]))
	if fatSz == 0 {
		fatSz = int64(le.Uint32(b[36:]))
	}
	switch {
	case ss < 512 || ss > 4096 || ss&(ss-1) != 0:
		return nil, fmt.Errorf("fat: sector size %d: %w", ss, ErrCorrupt)
	case spc == 0 || spc&(spc-1) != 0:
		return nil, fmt.Errorf("fat: %d sectors per cluster: %w", spc, ErrCorrupt)
	case reserved == 0 || nfats == 0 || nfats > 4 || fatSz == 0 || total == 0:
		return nil, fmt.Errorf("fat: bad BIOS parameter block: %w", ErrCorrupt)
	}
	f := &fatFS{secSize: ss, clusSize: ss * spc, size: size}
	f.fatOff = reserved * ss
	f.fatBytes = fatSz * ss
	f.rootOff = f.fatOff + nfats*f.fatBytes
	f.rootBytes = rootEnts * 32
	rootSecs := (f.rootBytes + ss - 1) / ss
	f.dataOff = f.rootOff + rootSecs*ss
	dataSecs := total - (reserved + nfats*fatSz + rootSecs)
	if dataSecs <= 0 {
		return nil, fmt.Errorf("fat: no data area: %w", ErrCorrupt)
	}
	nclus := dataSecs / spc
	switch {
	case nclus < 4085:
		f.bits = 12
	case nclus < 65525:
		f.bits = 16
	default:
		f.bits = 32
		f.rootClus = le.Uint32(b[44:])
		f.rootBytes = 0
	}
	if nclus > 0x0FFFFFF5 {
		return nil, fmt.Errorf("fat: %d clusters: %w", nclus, ErrCorrupt)
	}
	f.clusters = uint32(nclus)
	if f.fatBytes*8/int64(f.bits) < nclus+2 {
		return nil, fmt.Errorf("fat: FAT too small for %d clusters: %w", nclus, ErrCorrupt)
	}
	return f, nil
}

func openFAT(dev io.ReaderAt, size int64, opts Options) (volume, error) {
	b := make([]byte, 512)
	if err := readFull(dev, b, 0); err != nil {
		return nil, fmt.Errorf("fat: boot sector: %w", err)
	}
	f, err := parseFATBPB(b, size)
	if err != nil {
		return nil, err
	}
	f.dev = dev
	f.loc = opts.FATLocation
	if f.loc == nil {
		f.loc = time.UTC
	}
	f.pages = map[int64][]byte{}
	if f.bits == 32 && !f.validCluster(f.rootClus) {
		return nil, fmt.Errorf("fat: root cluster %d: %w", f.rootClus, ErrCorrupt)
	}
	return f, nil
}

func (f *fatFS) foldCase() bool { return true }

func (f *fatFS) validCluster(c uint32) bool { return c >= 2 && c < f.clusters+2 }

// next returns the FAT entry for cluster c.
func (f *fatFS) next(c uint32) (uint32, error) {
	var off int64
	switch f.bits {
	case 12:
		off = int64(c) + int64(c)/2
	case 16:
		off = int64(c) * 2
	default:
		off = int64(c) * 4
	}
	var b [4]byte
	for i := range b[:f.bits/8+boolInt(f.bits == 12)] {
		v, err := f.fatByte(off + int64(i))
		if err != nil {
			return 0, err
		}
		b[i] = v
	}
	le := binary.LittleEndian
	switch f.bits {
	case 12:
		v := uint32(le.Uint16(b[:]))
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xFFF
		if v >= 0xFF7 {
			v |= 0x0FFFF000
		}
		return v, nil
	case 16:
		v := uint32(le.Uint16(b[:]))
		if v >= 0xFFF7 {
			v |= 0x0FFF0000
		}
		return v, nil
	}
	return le.Uint32(b[:]) & 0x0FFFFFFF, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (f *fatFS) fatByte(off int64) (byte, error) {
	if off >= f.fatBytes {
		return 0, fmt.Errorf("fat: entry past the FAT: %w", ErrCorrupt)
	}
	pg := off / fatPage
	f.mu.Lock()
	p, ok := f.pages[pg]
	f.mu.Unlock()
	if !ok {
		n := min(fatPage, f.fatBytes-pg*fatPage)
		p = make([]byte, n)
		if err := readFull(f.dev, p, f.fatOff+pg*fatPage); err != nil {
			return 0, fmt.Errorf("fat: read FAT: %w", err)
		}
		f.mu.Lock()
		if len(f.pages) >= 256 {
			clear(f.pages)
		}
		f.pages[pg] = p
		f.mu.Unlock()
	}
	return p[off%fatPage], nil
}

// chain follows the cluster chain from first and returns it as extents
// of at most limit bytes. Cycles and chains longer than the volume are
// refused.
func (f *fatFS) chain(first uint32, limit int64) ([]extent, error) {
	var out []extent
	var log int64
	c := first
	for steps := uint32(0); log < limit; steps++ {
		if !f.validCluster(c) {
			return nil, fmt.Errorf("fat: chain reaches cluster %#x: %w", c, ErrCorrupt)
		}
		if steps > f.clusters {
			return nil, fmt.Errorf("fat: cluster chain loops: %w", ErrCorrupt)
		}
		phys := f.dataOff + int64(c-2)*f.clusSize
		if k := len(out) - 1; k >= 0 && out[k].phys+out[k].n == phys {
			out[k].n += f.clusSize
		} else {
			out = append(out, extent{log: log, phys: phys, n: f.clusSize})
		}
		log += f.clusSize
		nx, err := f.next(c)
		if err != nil {
			return nil, err
		}
		if nx >= 0x0FFFFFF8 {
			break
		}
		c = nx
	}
	return out, nil
}

type fatEnt struct {
	clus uint32
}

// fatDirIno is the inode number of a directory: its first cluster (with a
// high bit, apart from the entry offsets files use), so a directory linked
// twice is recognised as the same one.
func fatDirIno(clus uint32) uint64 { return 1<<48 | uint64(clus) }

func (f *fatFS) root() (*node, error) {
	t := time.Unix(0, 0).UTC()
	ino := uint64(1)
	if f.bits == 32 {
		ino = fatDirIno(f.rootClus)
	}
	return &node{name: ".", mode: fs.ModeDir | 0o755, st: Stat{Ino: ino, Nlink: 2, Mtime: t, Atime: t, Ctime: t},
		priv: fatEnt{clus: f.rootClus}}, nil
}

func (f *fatFS) open(n *node) (io.ReaderAt, error) {
	e := n.priv.(fatEnt)
	if n.size == 0 {
		return &extentReader{}, nil
	}
	exts, err := f.chain(e.clus, n.size)
	if err != nil {
		return nil, err
	}
	if got := exts[len(exts)-1].log + exts[len(exts)-1].n; got < n.size {
		return nil, fmt.Errorf("fat: cluster chain holds %d of %d bytes: %w", got, n.size, ErrCorrupt)
	}
	return newExtentReader(f.dev, f.size, exts, n.size)
}

func (f *fatFS) readDir(dir *node) ([]*node, error) {
	e := dir.priv.(fatEnt)
	var exts []extent
	if e.clus == 0 && f.bits != 32 {
		exts = []extent{{log: 0, phys: f.rootOff, n: f.rootBytes}}
	} else {
		var err error
		if exts, err = f.chain(e.clus, maxDirBytes); err != nil {
			return nil, err
		}
	}
	le := binary.LittleEndian
	var out []*node
	var lfn []uint16
	var lfnSum byte
	lfnNext := -1
	buf := make([]byte, 64<<10)
	for _, x := range exts {
		if x.phys < 0 || x.phys+x.n > f.size {
			return out, fmt.Errorf("fat: directory cluster past the volume: %w", ErrCorrupt)
		}
		for co := int64(0); co < x.n; co += int64(len(buf)) {
			data := buf[:min(int64(len(buf)), x.n-co)]
			if err := readFull(f.dev, data, x.phys+co); err != nil {
				return out, err
			}
			for off := 0; off+32 <= len(data); off += 32 {
				d := data[off : off+32]
				if d[0] == 0 {
					return out, nil // end of directory
				}
				if d[0] == 0xE5 {
					lfn, lfnNext = nil, -1
					continue
				}
				attr := d[11]
				if attr&0x3F == 0x0F { // long-name slot
					seq := int(d[0] & 0x1F)
					if d[0]&0x40 != 0 {
						lfn = make([]uint16, 13*seq)
						lfnSum = d[13]
						lfnNext = seq
					}
					if seq == 0 || seq != lfnNext || d[13] != lfnSum || len(lfn) < 13*seq {
						lfn, lfnNext = nil, -1
						continue
					}
					part := lfn[13*(seq-1):]
					for i := 0; i < 5; i++ {
						part[i] = le.Uint16(d[1+2*i:])
					}
					for i := 0; i < 6; i++ {
						part[5+i] = le.Uint16(d[14+2*i:])
					}
					for i := 0; i < 2; i++ {
						part[11+i] = le.Uint16(d[28+2*i:])
					}
					lfnNext--
					continue
				}
				long := lfn
				if lfnNext != 0 || shortSum(d[:11]) != lfnSum {
					long = nil
				}
				lfn, lfnNext = nil, -1
				if attr&0x08 != 0 { // volume label
					continue
				}
				if n := f.dirent(d, long, uint64(x.phys+co+int64(off))); n != nil {
					out = append(out, n)
				}
			}
		}
	}
	return out, nil
}

// dirent decodes one short directory entry (with its long name, if any).
// ino is the entry's byte offset in the volume.
func (f *fatFS) dirent(d []byte, long []uint16, ino uint64) *node {
	le := binary.LittleEndian
	name := ""
	if long != nil {
		for i, c := range long {
			if c == 0 || c == 0xFFFF {
				long = long[:i]
				break
			}
		}
		name = string(utf16.Decode(long))
	}
	if name == "" {
		name = shortName(d)
	}
	if name == "." || name == ".." || name == "" {
		return nil
	}
	attr := d[11]
	clus := uint32(le.Uint16(d[26:]))
	if f.bits == 32 {
		clus |= uint32(le.Uint16(d[20:])) << 16
	}
	n := &node{name: name, priv: fatEnt{clus: clus}}
	n.st.Ino = ino
	n.st.Mtime = fatTime(le.Uint16(d[24:]), le.Uint16(d[22:]), 0, f.loc)
	n.st.Ctime = n.st.Mtime
	n.st.Btime = fatTime(le.Uint16(d[16:]), le.Uint16(d[14:]), d[13], f.loc)
	n.st.Atime = fatTime(le.Uint16(d[18:]), 0, 0, f.loc)
	if attr&0x10 != 0 {
		if !f.validCluster(clus) {
			return nil // a directory without data: corrupt entry
		}
		n.mode = fs.ModeDir | 0o755
		n.st.Nlink = 2
		n.st.Ino = fatDirIno(clus)
	} else {
		n.mode = 0o644
		if attr&0x01 != 0 {
			n.mode = 0o444
		}
		n.size = int64(le.Uint32(d[28:]))
		n.st.Nlink = 1
	}
	return n
}

func shortSum(name []byte) byte {
	var s byte
	for _, c := range name {
		s = (s>>1 | s<<7) + c
	}
	return s
}

// shortName decodes an 8.3 name, applying the NT lower-case flags.
func shortName(d []byte) string {
	b := append([]byte(nil), d[:11]...)
	if b[0] == 0x05 {
		b[0] = 0xE5
	}
	toStr := func(x []byte, lower bool) string {
		s := strings.TrimRight(latin1(x), " ")
		if lower {
			s = strings.ToLower(s)
		}
		return s
	}
	base := toStr(b[:8], d[12]&0x08 != 0)
	ext := toStr(b[8:11], d[12]&0x10 != 0)
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// fatTime decodes a FAT date and time (and 10 ms units for creation).
func fatTime(date, tm uint16, tenth byte, loc *time.Location) time.Time {
	if date == 0 {
		return time.Unix(0, 0).UTC()
	}
	y := 1980 + int(date>>9)
	mo := time.Month(date >> 5 & 0xF)
	d := int(date & 0x1F)
	h, mi, s := int(tm>>11), int(tm>>5&0x3F), int(tm&0x1F)*2
	ns := 0
	if tenth < 200 {
		s += int(tenth) / 100
		ns = int(tenth) % 100 * 10e6
	}
	return time.Date(y, mo, d, h, mi, s, ns, loc)
}
