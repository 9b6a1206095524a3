package xapisim

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// A dynamic VHD (Microsoft Virtual Hard Disk Image Format Specification
// v1.0), written in one pass: footer copy, dynamic disk header, BAT, then
// each present block as its sector bitmap (one 512-byte sector for a
// 2 MiB block) and its data, in increasing offset, then the footer.

const (
	vhdBlockSize  = 2 << 20
	vhdSector     = 512
	vhdHeaderSize = 1024
	vhdBitmapSize = vhdBlockSize / vhdSector / 8 // one sector
)

// vhdEpoch is the VHD timestamp origin.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// vhdLength is the length of a dynamic VHD of a disk of size bytes with
// n present blocks.
func vhdLength(size int64, n int) int64 {
	return vhdSector + vhdHeaderSize + vhdBATBytes(size) + int64(n)*(vhdBitmapSize+vhdBlockSize) + vhdSector
}

func vhdBlocks(size int64) int64 { return (size + vhdBlockSize - 1) / vhdBlockSize }

func vhdBATBytes(size int64) int64 { return roundUp(vhdBlocks(size)*4, vhdSector) }

// vhdGeometry is the CHS geometry of the spec's appendix.
func vhdGeometry(size int64) (cyl uint16, heads, spt uint8) {
	total := size / vhdSector
	total = min(total, 65535*16*255)
	var c, h, s int64
	if total >= 65535*16*63 {
		s, h = 255, 16
		c = total / s
	} else {
		s = 17
		c = total / s
		h = max((c+1023)/1024, 4)
		if c >= h*1024 || h > 16 {
			s, h = 31, 16
			c = total / s
		}
		if c >= h*1024 {
			s, h = 63, 16
			c = total / s
		}
	}
	return uint16(c / h), uint8(h), uint8(s)
}

func vhdChecksum(b []byte, at int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= at && i < at+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

func vhdFooter(size int64, id [16]byte, ts uint32) []byte {
	f := make([]byte, vhdSector)
	copy(f[0:], "conectix")
	binary.BigEndian.PutUint32(f[8:], 2)           // features: reserved bit
	binary.BigEndian.PutUint32(f[12:], 0x00010000) // format version
	binary.BigEndian.PutUint64(f[16:], vhdSector)  // dynamic header offset
	binary.BigEndian.PutUint32(f[24:], ts)
	copy(f[28:], "tap\x00") // as xapi's blktap: readers take current_size
	binary.BigEndian.PutUint32(f[32:], 0x00010003)
	copy(f[36:], "Lnux")
	binary.BigEndian.PutUint64(f[40:], uint64(size))
	binary.BigEndian.PutUint64(f[48:], uint64(size))
	c, h, s := vhdGeometry(size)
	binary.BigEndian.PutUint16(f[56:], c)
	f[58], f[59] = h, s
	binary.BigEndian.PutUint32(f[60:], 3) // dynamic
	copy(f[68:], id[:])
	binary.BigEndian.PutUint32(f[64:], vhdChecksum(f, 64))
	return f
}

func vhdDynHeader(size int64) []byte {
	h := make([]byte, vhdHeaderSize)
	copy(h[0:], "cxsparse")
	binary.BigEndian.PutUint64(h[8:], ^uint64(0))
	binary.BigEndian.PutUint64(h[16:], vhdSector+vhdHeaderSize) // BAT offset
	binary.BigEndian.PutUint32(h[24:], 0x00010000)
	binary.BigEndian.PutUint32(h[28:], uint32(vhdBlocks(size)))
	binary.BigEndian.PutUint32(h[32:], vhdBlockSize)
	binary.BigEndian.PutUint32(h[36:], vhdChecksum(h, 36))
	return h
}

// writeVHD streams a dynamic VHD of a disk of size bytes whose present
// blocks are the sorted block indexes in present; read fills a block's
// bytes (the last block may be short of the disk's end: it is padded
// with zeros).
func writeVHD(w io.Writer, size int64, present []int64, read func(idx int64, p []byte) error) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	ts := uint32(time.Since(vhdEpoch) / time.Second)
	footer := vhdFooter(size, id, ts)
	if _, err := w.Write(footer); err != nil {
		return err
	}
	if _, err := w.Write(vhdDynHeader(size)); err != nil {
		return err
	}
	bat := make([]byte, vhdBATBytes(size))
	for i := range len(bat) / 4 {
		binary.BigEndian.PutUint32(bat[i*4:], 0xFFFFFFFF)
	}
	next := int64(vhdSector + vhdHeaderSize + len(bat))
	for _, idx := range present {
		if idx < 0 || idx >= vhdBlocks(size) {
			return fmt.Errorf("vhd: block %d outside a disk of %d bytes", idx, size)
		}
		binary.BigEndian.PutUint32(bat[idx*4:], uint32(next/vhdSector))
		next += vhdBitmapSize + vhdBlockSize
	}
	if _, err := w.Write(bat); err != nil {
		return err
	}
	bitmap := make([]byte, vhdBitmapSize)
	buf := make([]byte, vhdBlockSize)
	for _, idx := range present {
		off := idx * vhdBlockSize
		n := min(vhdBlockSize, size-off)
		clear(bitmap)
		sectors := (n + vhdSector - 1) / vhdSector
		for s := range sectors {
			bitmap[s/8] |= 0x80 >> (s % 8)
		}
		if _, err := w.Write(bitmap); err != nil {
			return err
		}
		clear(buf[n:])
		if err := read(idx, buf[:n]); err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	_, err := w.Write(footer)
	return err
}
