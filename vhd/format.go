package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every error that describes a malformed stream:
// bad cookies or checksums, an unsupported disk type, impossible sizes or
// offsets, blocks out of order or overlapping, a truncated stream, a final
// footer that differs from the first.
var ErrCorrupt = errors.New("malformed VHD")

const (
	sectorSize = 512
	footerSize = 512
	headerSize = 1024

	// DefaultBlockSize is the block size of the VHDs that XAPI and qemu
	// write, and of the Writer: 2 MiB.
	DefaultBlockSize = 2 << 20
	// MaxBlockSize bounds the block size the Reader accepts (64 MiB).
	MaxBlockSize = 64 << 20
	// MaxEntries bounds the BAT: 4 Mi entries cover the format's 2040 GiB
	// with blocks of 512 KiB and more.
	MaxEntries = 4 << 20

	// Disk types (footer).
	typeFixed        = 2
	typeDynamic      = 3
	typeDifferencing = 4

	batUnused = 0xFFFFFFFF

	// vhdEpoch is 2000-01-01T00:00:00Z, the origin of VHD time stamps.
	vhdEpoch = 946684800
)

var (
	footerCookie = []byte("conectix")
	headerCookie = []byte("cxsparse")
)

// footer is the hard disk footer (spec: "Hard Disk Footer Format"). All
// fields are big-endian:
//
//	0  cookie "conectix"     40 original size      64 checksum
//	8  features              48 current size       68 unique id (16)
//	12 file format version   56 geometry C(2)H(1)S(1) 84 saved state
//	16 data offset           60 disk type          85 reserved (427)
//	24 time stamp, 28 creator application, 32 creator version, 36 creator host OS
type footer struct {
	raw        [footerSize]byte
	dataOffset uint64
	size       uint64 // current size
	diskType   uint32
	uniqueID   [16]byte
}

// checksum is the spec's one's complement of the byte sum of a structure
// with its checksum field taken as zero.
func checksum(b []byte, field int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= field && i < field+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// parseFooter checks a footer; which names it in errors ("footer copy",
// "final footer").
func parseFooter(b []byte, which string) (*footer, error) {
	f := &footer{}
	copy(f.raw[:], b)
	if !bytes.Equal(b[0:8], footerCookie) {
		return nil, corruptf("the %s's cookie is %q, want \"conectix\" (not a VHD)", which, b[0:8])
	}
	if got, want := binary.BigEndian.Uint32(b[64:]), checksum(b[:footerSize], 64); got != want {
		return nil, corruptf("the %s's checksum is %08x, the footer sums to %08x", which, got, want)
	}
	if v := binary.BigEndian.Uint32(b[12:]); v>>16 != 1 {
		return nil, corruptf("file format version %08x, want 0x00010000", v)
	}
	f.dataOffset = binary.BigEndian.Uint64(b[16:])
	f.size = binary.BigEndian.Uint64(b[48:])
	f.diskType = binary.BigEndian.Uint32(b[60:])
	copy(f.uniqueID[:], b[68:84])
	switch f.diskType {
	case typeDynamic, typeDifferencing:
	case typeFixed:
		return nil, corruptf("disk type 2 (fixed): a fixed VHD is not a dynamic stream")
	default:
		return nil, corruptf("disk type %d, want 3 (dynamic) or 4 (differencing)", f.diskType)
	}
	if f.size > 1<<62 {
		return nil, corruptf("current size %d is impossible", f.size)
	}
	if f.dataOffset < footerSize || f.dataOffset > 1<<40 {
		return nil, corruptf("the %s's data offset %d does not point after the footer copy", which, f.dataOffset)
	}
	return f, nil
}

// header is the dynamic disk header (spec: "Dynamic Disk Header Format"):
//
//	0  cookie "cxsparse"   28 max table entries   40 parent unique id (16)
//	8  data offset (~0)    32 block size          56 parent time stamp
//	16 table offset        36 checksum            64 parent unicode name (512)
//	24 header version                             576 parent locators (8 x 24)
type header struct {
	tableOffset uint64
	entries     uint32
	blockSize   uint32
	parentID    [16]byte
}

func parseHeader(b []byte) (*header, error) {
	if !bytes.Equal(b[0:8], headerCookie) {
		return nil, corruptf("the dynamic disk header's cookie is %q, want \"cxsparse\"", b[0:8])
	}
	if got, want := binary.BigEndian.Uint32(b[36:]), checksum(b[:headerSize], 36); got != want {
		return nil, corruptf("the dynamic disk header's checksum is %08x, the header sums to %08x", got, want)
	}
	if v := binary.BigEndian.Uint32(b[24:]); v>>16 != 1 {
		return nil, corruptf("dynamic disk header version %08x, want 0x00010000", v)
	}
	h := &header{
		tableOffset: binary.BigEndian.Uint64(b[16:]),
		entries:     binary.BigEndian.Uint32(b[28:]),
		blockSize:   binary.BigEndian.Uint32(b[32:]),
	}
	copy(h.parentID[:], b[40:56])
	bs := h.blockSize
	if bs < sectorSize || bs&(bs-1) != 0 || bs > MaxBlockSize {
		return nil, corruptf("block size %d is not a power of two from 512 to %d", bs, MaxBlockSize)
	}
	if h.entries > MaxEntries {
		return nil, corruptf("max table entries %d is more than the %d supported", h.entries, MaxEntries)
	}
	return h, nil
}

// bitmapSize is the size of a block's sector bitmap: one bit per sector,
// padded to a whole sector.
func bitmapSize(blockSize int64) int64 {
	bits := blockSize / sectorSize
	return ((bits+7)/8 + sectorSize - 1) / sectorSize * sectorSize
}

// geometry is the spec's CHS calculation ("Appendix: CHS Calculation")
// for a disk of totalSectors sectors: cylinders, heads, sectors per track.
func geometry(totalSectors int64) (c, h, s int64) {
	if totalSectors > 65535*16*255 {
		totalSectors = 65535 * 16 * 255
	}
	var cth int64 // cylinders times heads
	if totalSectors >= 65535*16*63 {
		s, h = 255, 16
		cth = totalSectors / s
	} else {
		s = 17
		cth = totalSectors / s
		h = (cth + 1023) / 1024
		if h < 4 {
			h = 4
		}
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = totalSectors / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = totalSectors / s
		}
	}
	return cth / h, h, s
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("vhd: %s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
}
