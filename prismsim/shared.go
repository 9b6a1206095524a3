package prismsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A cluster answers changed regions from its metadata: a snapshot shares the
// extents of the disk it was taken from, and only what was written since has
// extents of its own. The simulator's snapshots are reflinks (FICLONE) where
// the state directory's filesystem allows it (XFS, btrfs), so the same holds
// for its files: ranges that both files map to the same physical blocks are
// unchanged by construction and need not be read. compareStorage finds them
// with FS_IOC_FIEMAP. Elsewhere (ext4, tmpfs) nothing is shared and every
// data range is compared byte for byte, as before.

const (
	fsIocFiemap    = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapFlagSync = 0x1        // FIEMAP_FLAG_SYNC: flush delayed allocation first
	fiemapHdr      = 32         // sizeof(struct fiemap) without extents
	fiemapExtSize  = 56         // sizeof(struct fiemap_extent)
	fiemapBatch    = 512        // extents asked for per call

	// fe_flags that make fe_physical meaningless for comparison.
	fiemapExtentLast      = 0x1
	fiemapExtentUnknown   = 0x2
	fiemapExtentDelalloc  = 0x4
	fiemapExtentEncoded   = 0x8
	fiemapExtentInline    = 0x200
	fiemapExtentTail      = 0x400
	fiemapExtentUnwritten = 0x800
	fiemapExtentUnusable  = fiemapExtentUnknown | fiemapExtentDelalloc | fiemapExtentEncoded | fiemapExtentInline | fiemapExtentTail
)

// physExtent maps logical [off, end) of a file to physical bytes from phys.
type physExtent struct {
	off, end, phys int64
	unwritten      bool
}

// fiemap lists f's extents over [start, end). ok is false when the
// filesystem does not support FIEMAP.
func fiemap(f *os.File, start, end int64) (exts []physExtent, ok bool, err error) {
	buf := make([]byte, fiemapHdr+fiemapBatch*fiemapExtSize)
	le := binary.LittleEndian
	flags := uint32(fiemapFlagSync)
	for pos := start; pos < end; {
		clear(buf[:fiemapHdr])
		le.PutUint64(buf[0:], uint64(pos))
		le.PutUint64(buf[8:], uint64(end-pos))
		le.PutUint32(buf[16:], flags)
		le.PutUint32(buf[24:], fiemapBatch)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
			if errors.Is(e, unix.EOPNOTSUPP) || errors.Is(e, unix.ENOTTY) || errors.Is(e, unix.EINVAL) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("fiemap %s: %w", f.Name(), e)
		}
		flags = 0 // synced once is enough
		n := int(le.Uint32(buf[20:]))
		if n == 0 {
			break
		}
		last := false
		for i := 0; i < n; i++ {
			e := buf[fiemapHdr+i*fiemapExtSize:]
			logical, physical, length := int64(le.Uint64(e[0:])), int64(le.Uint64(e[8:])), int64(le.Uint64(e[16:]))
			fl := le.Uint32(e[40:])
			if fl&fiemapExtentLast != 0 {
				last = true
			}
			if length <= 0 {
				continue
			}
			if fl&fiemapExtentUnusable != 0 {
				physical = -1 // never equal to another extent
			}
			exts = append(exts, physExtent{off: logical, end: logical + length, phys: physical, unwritten: fl&fiemapExtentUnwritten != 0})
			pos = logical + length
		}
		if last {
			break
		}
	}
	return exts, true, nil
}

// storageMap is what FIEMAP tells of two files over one range.
type storageMap struct {
	shared []extent // both map these bytes to the same physical bytes
	a, b   []extent // written (allocated, not unwritten) extents of each
}

// compareStorage maps a and b over [start, end). shared holds the ranges
// both map to the same physical bytes (reflinked and not rewritten since):
// both files read the same there. Unwritten (preallocated) extents read as
// zeros whatever their blocks, so they are neither written nor shared. ok is
// false when the filesystem has no FIEMAP.
func compareStorage(a, b *os.File, start, end int64) (m storageMap, ok bool, err error) {
	ea, ok, err := fiemap(a, start, end)
	if err != nil || !ok {
		return m, false, err
	}
	eb, ok, err := fiemap(b, start, end)
	if err != nil || !ok {
		return m, false, err
	}
	m.a, m.b = written(ea, start, end), written(eb, start, end)
	i, j := 0, 0
	for i < len(ea) && j < len(eb) {
		x, y := ea[i], eb[j]
		lo, hi := max(x.off, y.off, start), min(x.end, y.end, end)
		if lo < hi && x.phys >= 0 && y.phys >= 0 && !x.unwritten && !y.unwritten &&
			x.phys+(lo-x.off) == y.phys+(lo-y.off) {
			m.shared = appendExtent(m.shared, extent{lo, hi})
		}
		if x.end <= y.end {
			i++
		} else {
			j++
		}
	}
	return m, true, nil
}

// written returns the extents of exts that hold data, clipped to [start,
// end) and merged.
func written(exts []physExtent, start, end int64) []extent {
	var out []extent
	for _, e := range exts {
		if lo, hi := max(e.off, start), min(e.end, end); lo < hi && !e.unwritten {
			out = appendExtent(out, extent{lo, hi})
		}
	}
	return out
}

// appendExtent appends e to sorted exts, merging it with the last one when
// they touch.
func appendExtent(exts []extent, e extent) []extent {
	if k := len(exts); k > 0 && exts[k-1].end == e.off {
		exts[k-1].end = e.end
		return exts
	}
	return append(exts, e)
}

// subtract removes the ranges of cut (sorted, disjoint) from exts (sorted,
// disjoint) and returns what remains, sorted.
func subtract(exts, cut []extent) []extent {
	if len(cut) == 0 {
		return exts
	}
	sort.Slice(exts, func(i, j int) bool { return exts[i].off < exts[j].off })
	var out []extent
	k := 0
	for _, e := range exts {
		off := e.off
		for k < len(cut) && cut[k].end <= off {
			k++
		}
		for c := k; c < len(cut) && cut[c].off < e.end; c++ {
			if cut[c].off > off {
				out = append(out, extent{off, cut[c].off})
			}
			off = max(off, cut[c].end)
		}
		if off < e.end {
			out = append(out, extent{off, e.end})
		}
	}
	return out
}
