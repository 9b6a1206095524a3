package vhd

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Writer writes a dynamic VHD in one pass, laid out as XAPI streams one:
// the footer copy at byte 0, the dynamic disk header at 512, the BAT at
// 1536 (padded to a whole sector), then each present block as its sector
// bitmap (all ones) and its data, in increasing disk offset, then the
// footer. The blocks present are known up front, so the BAT is complete
// before any data.
type Writer struct {
	w         io.Writer
	size      int64
	blockSize int64
	blocks    []int64
	next      int
	foot      [footerSize]byte
	bitmap    []byte
	pad       []byte
	err       error // sticky
	closed    bool
}

// creatorApp names this program in the footer. qemu reads the size of
// VHDs from unknown creators from the CHS geometry (a little less than
// the size when the size is not a CHS product); XAPI's vhd-tool and this
// package read the footer's current size.
var creatorApp = [4]byte{'a', 'h', 'v', 'f'}

// NewWriter writes the footer copy, the dynamic disk header and the BAT of
// a VHD of size bytes (a multiple of 512) with blocks of DefaultBlockSize;
// blocks lists the byte offsets in the disk of the blocks that will be
// present, multiples of the block size in increasing order. Every other
// block is absent (zero, or in a difference: unchanged).
func NewWriter(w io.Writer, size int64, blocks []int64) (*Writer, error) {
	return NewWriterBlockSize(w, size, DefaultBlockSize, blocks)
}

// NewWriterBlockSize is NewWriter with another block size, a power of two
// from 512 bytes to MaxBlockSize.
func NewWriterBlockSize(w io.Writer, size, blockSize int64, blocks []int64) (*Writer, error) {
	switch {
	case blockSize < sectorSize || blockSize&(blockSize-1) != 0 || blockSize > MaxBlockSize:
		return nil, fmt.Errorf("vhd: block size %d is not a power of two from 512 to %d", blockSize, MaxBlockSize)
	case size < 0 || size%sectorSize != 0:
		return nil, fmt.Errorf("vhd: size %d is not a whole number of 512-byte sectors", size)
	}
	entries := (size + blockSize - 1) / blockSize
	if entries > MaxEntries {
		return nil, fmt.Errorf("vhd: size %d needs %d blocks of %d, more than %d", size, entries, blockSize, MaxEntries)
	}
	for i, off := range blocks {
		switch {
		case off < 0 || off%blockSize != 0 || off >= size:
			return nil, fmt.Errorf("vhd: block offset %d is not a multiple of %d inside the disk's %d bytes", off, blockSize, size)
		case i > 0 && off <= blocks[i-1]:
			return nil, fmt.Errorf("vhd: block offset %d follows %d: offsets must increase", off, blocks[i-1])
		}
	}
	vw := &Writer{w: w, size: size, blockSize: blockSize, blocks: append([]int64(nil), blocks...)}
	bm := bitmapSize(blockSize)
	vw.bitmap = make([]byte, bm)
	for i := range vw.bitmap {
		vw.bitmap[i] = 0xFF
	}

	const dataOffset, tableOffset = footerSize, footerSize + headerSize
	batBytes := (4*entries + sectorSize - 1) / sectorSize * sectorSize
	firstBlock := tableOffset + batBytes
	if n := int64(len(blocks)); n > 0 {
		if lastStart := firstBlock + (n-1)*(bm+blockSize); lastStart/sectorSize >= batUnused {
			return nil, fmt.Errorf("vhd: %d blocks of %d do not fit the BAT's 32-bit sector offsets", n, blockSize)
		}
	}

	// Footer.
	f := vw.foot[:]
	copy(f[0:], footerCookie)
	binary.BigEndian.PutUint32(f[8:], 2) // features: the reserved bit, always set
	binary.BigEndian.PutUint32(f[12:], 0x00010000)
	binary.BigEndian.PutUint64(f[16:], dataOffset)
	binary.BigEndian.PutUint32(f[24:], uint32(max(time.Now().Unix()-vhdEpoch, 0)))
	copy(f[28:], creatorApp[:])
	binary.BigEndian.PutUint32(f[32:], 0x00010000) // creator version 1.0
	binary.BigEndian.PutUint64(f[40:], uint64(size))
	binary.BigEndian.PutUint64(f[48:], uint64(size))
	c, h, s := geometry(size / sectorSize)
	binary.BigEndian.PutUint16(f[56:], uint16(c))
	f[58], f[59] = byte(h), byte(s)
	binary.BigEndian.PutUint32(f[60:], typeDynamic)
	if _, err := rand.Read(f[68:84]); err != nil {
		return nil, fmt.Errorf("vhd: unique id: %w", err)
	}
	f[68+6] = f[68+6]&0x0F | 0x40 // a version 4 UUID
	f[68+8] = f[68+8]&0x3F | 0x80
	binary.BigEndian.PutUint32(f[64:], checksum(f, 64))

	// Dynamic disk header.
	var hd [headerSize]byte
	copy(hd[0:], headerCookie)
	binary.BigEndian.PutUint64(hd[8:], ^uint64(0))
	binary.BigEndian.PutUint64(hd[16:], tableOffset)
	binary.BigEndian.PutUint32(hd[24:], 0x00010000)
	binary.BigEndian.PutUint32(hd[28:], uint32(entries))
	binary.BigEndian.PutUint32(hd[32:], uint32(blockSize))
	binary.BigEndian.PutUint32(hd[36:], checksum(hd[:], 36))

	// BAT.
	bat := make([]byte, batBytes)
	for i := range bat {
		bat[i] = 0xFF
	}
	next := firstBlock
	for _, off := range blocks {
		binary.BigEndian.PutUint32(bat[4*(off/blockSize):], uint32(next/sectorSize))
		next += bm + blockSize
	}

	for _, b := range [][]byte{vw.foot[:], hd[:], bat} {
		if _, err := w.Write(b); err != nil {
			return nil, fmt.Errorf("vhd: write the headers: %w", err)
		}
	}
	return vw, nil
}

// WriteBlock writes the next present block: off must be the next offset
// of the blocks given to NewWriter, data the block size in bytes, or for a
// block that extends past the disk's end, at least the bytes up to it (the
// rest of the block is written as zeros).
func (w *Writer) WriteBlock(off int64, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("vhd: WriteBlock after Close")
	}
	if w.next >= len(w.blocks) || off != w.blocks[w.next] {
		want := "none: all blocks are written"
		if w.next < len(w.blocks) {
			want = fmt.Sprint(w.blocks[w.next])
		}
		return fmt.Errorf("vhd: WriteBlock at %d, want the next present block, %s", off, want)
	}
	n := int64(len(data))
	if n != w.blockSize && (n < w.size-off || n > w.blockSize) {
		return fmt.Errorf("vhd: WriteBlock at %d: %d bytes, want %d (or the %d up to the disk's end)", off, n, w.blockSize, w.size-off)
	}
	w.next++
	if _, err := w.w.Write(w.bitmap); err != nil {
		w.err = fmt.Errorf("vhd: write block at %d: %w", off, err)
		return w.err
	}
	if _, err := w.w.Write(data); err != nil {
		w.err = fmt.Errorf("vhd: write block at %d: %w", off, err)
		return w.err
	}
	if rest := w.blockSize - n; rest > 0 {
		if w.pad == nil {
			w.pad = make([]byte, w.blockSize)
		}
		if _, err := w.w.Write(w.pad[:rest]); err != nil {
			w.err = fmt.Errorf("vhd: write block at %d: %w", off, err)
			return w.err
		}
	}
	return nil
}

// Close checks that every present block was written and writes the
// footer. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.next < len(w.blocks) {
		w.err = fmt.Errorf("vhd: Close: %d of %d present blocks were not written (the next is at %d)", len(w.blocks)-w.next, len(w.blocks), w.blocks[w.next])
		return w.err
	}
	if _, err := w.w.Write(w.foot[:]); err != nil {
		w.err = fmt.Errorf("vhd: write the footer: %w", err)
	}
	return w.err
}
