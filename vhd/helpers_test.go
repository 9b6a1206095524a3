package vhd_test

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/ahvfs/ahvfs/vhd"
)

// The tests build VHDs by hand from the specification (field offsets of
// the footer and the dynamic disk header, the checksum, the BAT), not with
// the package's Writer, and also read what qemu-img writes.

const mib = 1 << 20

// spec describes a hand-built dynamic VHD stream.
type spec struct {
	size        int64
	blockSize   int64
	tableOffset int64            // default 1536 (qemu); XAPI's vhd-tool uses 2048
	diskType    uint32           // default 3
	order       []int64          // indices of present blocks, in file order
	data        map[int64][]byte // block data by index (blockSize bytes); pattern if nil
	gap         int64            // zero bytes between the BAT and the first block
	bitmap      []byte           // every block's bitmap; default all ones
	parent      [16]byte
}

// checksum is the spec's one's complement of the byte sum, the checksum
// field (4 bytes at field) taken as zero.
func checksum(b []byte, field int) uint32 {
	var sum uint32
	for i, c := range b {
		if i < field || i >= field+4 {
			sum += uint32(c)
		}
	}
	return ^sum
}

// fixFooter recomputes the checksum of the footer at b[off:off+512].
func fixFooter(b []byte, off int) {
	f := b[off : off+512]
	binary.BigEndian.PutUint32(f[64:], checksum(f, 64))
}

// fixHeader recomputes the checksum of the dynamic disk header at 512.
func fixHeader(b []byte) {
	h := b[512 : 512+1024]
	binary.BigEndian.PutUint32(h[36:], checksum(h, 36))
}

func bitmapLen(blockSize int64) int64 { return ((blockSize/512+7)/8 + 511) / 512 * 512 }

// build lays out footer copy, header at 512, zeros up to the table
// offset, the BAT (padded to a sector), the gap, the blocks in s.order,
// and the footer.
func build(s spec) []byte {
	if s.tableOffset == 0 {
		s.tableOffset = 1536
	}
	if s.diskType == 0 {
		s.diskType = 3
	}
	entries := (s.size + s.blockSize - 1) / s.blockSize
	foot := make([]byte, 512)
	copy(foot, "conectix")
	binary.BigEndian.PutUint32(foot[8:], 2)
	binary.BigEndian.PutUint32(foot[12:], 0x00010000)
	binary.BigEndian.PutUint64(foot[16:], 512)
	binary.BigEndian.PutUint32(foot[24:], 800000000)
	copy(foot[28:], "test")
	copy(foot[36:], "Wi2k")
	binary.BigEndian.PutUint64(foot[40:], uint64(s.size))
	binary.BigEndian.PutUint64(foot[48:], uint64(s.size))
	binary.BigEndian.PutUint32(foot[56:], 0xFFFF10FF)
	binary.BigEndian.PutUint32(foot[60:], s.diskType)
	copy(foot[68:84], "0123456789abcdef")
	binary.BigEndian.PutUint32(foot[64:], checksum(foot, 64))

	head := make([]byte, 1024)
	copy(head, "cxsparse")
	binary.BigEndian.PutUint64(head[8:], ^uint64(0))
	binary.BigEndian.PutUint64(head[16:], uint64(s.tableOffset))
	binary.BigEndian.PutUint32(head[24:], 0x00010000)
	binary.BigEndian.PutUint32(head[28:], uint32(entries))
	binary.BigEndian.PutUint32(head[32:], uint32(s.blockSize))
	copy(head[40:56], s.parent[:])
	binary.BigEndian.PutUint32(head[36:], checksum(head, 36))

	out := append([]byte(nil), foot...)
	out = append(out, head...)
	out = append(out, make([]byte, s.tableOffset-int64(len(out)))...)
	batLen := (4*entries + 511) / 512 * 512
	bat := make([]byte, batLen)
	for i := range bat {
		bat[i] = 0xFF
	}
	bm := bitmapLen(s.blockSize)
	next := s.tableOffset + batLen + s.gap
	for _, idx := range s.order {
		binary.BigEndian.PutUint32(bat[4*idx:], uint32(next/512))
		next += bm + s.blockSize
	}
	out = append(out, bat...)
	out = append(out, make([]byte, s.gap)...)
	bitmap := s.bitmap
	if bitmap == nil {
		bitmap = make([]byte, bm)
		for i := range bitmap {
			bitmap[i] = 0xFF
		}
	}
	for _, idx := range s.order {
		out = append(out, bitmap...)
		out = append(out, s.block(idx)...)
	}
	return append(out, foot...)
}

func (s spec) block(idx int64) []byte {
	if d, ok := s.data[idx]; ok {
		return d
	}
	return pattern(byte(idx+1), int(s.blockSize))
}

// image is the disk the spec describes: present blocks' data, zeros
// elsewhere, cut at the size.
func (s spec) image() []byte {
	img := make([]byte, (s.size+s.blockSize-1)/s.blockSize*s.blockSize)
	for _, idx := range s.order {
		copy(img[idx*s.blockSize:], s.block(idx))
	}
	return img[:s.size]
}

func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13+i>>10) ^ seed
	}
	if n > 0 {
		b[0] = seed | 1
	}
	return b
}

// readImage reads a whole VHD stream into an image of Size bytes.
func readImage(t testing.TB, r *vhd.Reader) ([]byte, []vhd.Block, error) {
	t.Helper()
	img := make([]byte, r.Size())
	var blocks []vhd.Block
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			return img, blocks, nil
		}
		if err != nil {
			return img, blocks, err
		}
		if b.Off%r.BlockSize() != 0 || b.Off+int64(len(b.Data)) > r.Size() {
			t.Fatalf("block at %d with %d bytes in a disk of %d", b.Off, len(b.Data), r.Size())
		}
		copy(img[b.Off:], b.Data)
		blocks = append(blocks, vhd.Block{Off: b.Off, Bitmap: append([]byte(nil), b.Bitmap...)})
	}
}
