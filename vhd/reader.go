package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Block is one present block of the disk.
type Block struct {
	// Off is the block's byte offset in the virtual disk, a multiple of
	// the block size.
	Off int64
	// Data is the block's data: the block size, cut at the disk's size for
	// a last block that extends past it. It is valid until the next call
	// of Next.
	Data []byte
	// Bitmap is the block's sector bitmap as stored: bit i (most
	// significant bit first: byte i/8, mask 0x80>>(i%8)) is 1 when sector i
	// of the block is in this file. Sectors whose bit is 0 are absent (in a
	// difference stream: unchanged), whatever Data holds for them. Valid
	// until the next call of Next.
	Bitmap []byte
}

// SectorPresent reports whether sector i (0-based, of 512 bytes) of the
// block is present according to its bitmap.
func (b Block) SectorPresent(i int) bool {
	if i < 0 || i/8 >= len(b.Bitmap) {
		return false
	}
	return b.Bitmap[i/8]&(0x80>>(i%8)) != 0
}

// entry is a present BAT entry: the block's index and its file sector.
type entry struct {
	index, sector uint32
}

// Reader reads a dynamic (or differencing) VHD in one pass: footer copy,
// dynamic disk header and BAT in NewReader, then the present blocks in
// file order, then the final footer. It holds the BAT's present entries
// and one block.
type Reader struct {
	r   io.Reader
	pos int64 // bytes consumed from r

	foot      *footer
	head      *header
	size      int64
	blockSize int64
	bitmap    int64 // bitmap size
	present   []entry
	next      int

	data, bits []byte
	done       bool
	err        error // sticky
}

// NewReader reads and checks the footer copy, the dynamic disk header and
// the BAT. Present BAT entries must point after the BAT, in increasing
// order of block index, without overlapping, so that the blocks come in
// disk order in one pass.
func NewReader(r io.Reader) (*Reader, error) {
	vr := &Reader{r: r}
	if err := vr.open(); err != nil {
		return nil, err
	}
	return vr, nil
}

func (r *Reader) open() error {
	var fb [footerSize]byte
	if err := r.read(fb[:], "the footer copy"); err != nil {
		return err
	}
	foot, err := parseFooter(fb[:], "footer copy")
	if err != nil {
		return err
	}
	r.foot = foot
	if err := r.skipTo(int64(foot.dataOffset), "the dynamic disk header"); err != nil {
		return err
	}
	var hb [headerSize]byte
	if err := r.read(hb[:], "the dynamic disk header"); err != nil {
		return err
	}
	head, err := parseHeader(hb[:])
	if err != nil {
		return err
	}
	r.head = head
	r.size = int64(foot.size)
	r.blockSize = int64(head.blockSize)
	r.bitmap = bitmapSize(r.blockSize)
	if need := (r.size + r.blockSize - 1) / r.blockSize; int64(head.entries) != need {
		return corruptf("max table entries %d does not fit the size: %d bytes in blocks of %d need %d", head.entries, r.size, r.blockSize, need)
	}
	if head.tableOffset < foot.dataOffset+headerSize || head.tableOffset > 1<<40 {
		return corruptf("the BAT's offset %d is not after the dynamic disk header (%d..%d)", head.tableOffset, foot.dataOffset, foot.dataOffset+headerSize)
	}
	if err := r.skipTo(int64(head.tableOffset), "the BAT"); err != nil {
		return err
	}
	return r.readBAT()
}

// readBAT reads the BAT in pieces, keeping the present entries only.
func (r *Reader) readBAT() error {
	batEnd := int64(r.head.tableOffset) + 4*int64(r.head.entries)
	firstFree := (batEnd + sectorSize - 1) / sectorSize * sectorSize // the BAT fills whole sectors
	span := (r.bitmap + r.blockSize) / sectorSize                    // sectors a block takes
	buf := make([]byte, 64<<10)
	var prev entry
	havePrev := false
	for i := uint32(0); i < r.head.entries; {
		n := min(int(r.head.entries-i), len(buf)/4)
		chunk := buf[:4*n]
		if err := r.read(chunk, "the BAT"); err != nil {
			return err
		}
		for j := 0; j < n; j, i = j+1, i+1 {
			s := binary.BigEndian.Uint32(chunk[4*j:])
			if s == batUnused {
				continue
			}
			e := entry{index: i, sector: s}
			switch {
			case int64(s)*sectorSize < firstFree:
				return corruptf("BAT entry %d points at byte %d, inside the headers or the BAT (blocks start at %d)", i, int64(s)*sectorSize, firstFree)
			case havePrev && s <= prev.sector:
				return corruptf("BAT entries out of order: block %d is at sector %d, before block %d at sector %d (blocks must follow in disk order to be read in one pass)", i, s, prev.index, prev.sector)
			case havePrev && int64(s) < int64(prev.sector)+span:
				return corruptf("BAT entries overlap: block %d at sector %d starts inside block %d at sector %d (a block takes %d sectors)", i, s, prev.index, prev.sector, span)
			}
			r.present = append(r.present, e)
			prev, havePrev = e, true
		}
	}
	// The BAT's padding to its last sector holds unused entries (0xFF
	// bytes), not data.
	return r.skipTo(firstFree, "the end of the BAT's last sector")
}

// Size returns the virtual disk's size in bytes (the footer's current
// size).
func (r *Reader) Size() int64 { return r.size }

// BlockSize returns the block size in bytes.
func (r *Reader) BlockSize() int64 { return r.blockSize }

// Differencing reports whether the footer says disk type 4 (differencing):
// XAPI's export relative to a base. Its blocks are read like a dynamic
// disk's; absent blocks mean unchanged instead of zero.
func (r *Reader) Differencing() bool { return r.foot.diskType == typeDifferencing }

// UniqueID returns the footer's unique id of this disk.
func (r *Reader) UniqueID() [16]byte { return r.foot.uniqueID }

// ParentID returns the dynamic disk header's parent unique id (zero for a
// dynamic disk).
func (r *Reader) ParentID() [16]byte { return r.head.parentID }

// Present returns the byte offsets in the disk of the present blocks,
// from the BAT, in increasing order: the order Next returns them in.
func (r *Reader) Present() []int64 {
	out := make([]int64, len(r.present))
	for i, e := range r.present {
		out[i] = int64(e.index) * r.blockSize
	}
	return out
}

// Next returns the next present block. After the last one it reads the
// final footer, which must equal the footer copy (only zero padding may
// come before it), and returns io.EOF. Errors are sticky.
func (r *Reader) Next() (Block, error) {
	if r.err != nil {
		return Block{}, r.err
	}
	b, err := r.nextBlock()
	if err != nil {
		r.err = err
	}
	return b, err
}

func (r *Reader) nextBlock() (Block, error) {
	if r.next >= len(r.present) {
		if !r.done {
			if err := r.finalFooter(); err != nil {
				return Block{}, err
			}
			r.done = true
		}
		return Block{}, io.EOF
	}
	e := r.present[r.next]
	r.next++
	what := fmt.Sprintf("block %d (disk offset %d)", e.index, int64(e.index)*r.blockSize)
	if err := r.skipTo(int64(e.sector)*sectorSize, what); err != nil {
		return Block{}, err
	}
	if r.bits == nil {
		r.bits = make([]byte, r.bitmap)
	}
	if err := r.read(r.bits, "the sector bitmap of "+what); err != nil {
		return Block{}, err
	}
	var err error
	if r.data, err = r.readGrow(r.data, r.blockSize, what); err != nil {
		return Block{}, err
	}
	off := int64(e.index) * r.blockSize
	return Block{Off: off, Data: r.data[:min(r.blockSize, r.size-off)], Bitmap: r.bits}, nil
}

// finalFooter reads the rest of the stream: optional zero padding, then a
// footer identical to the footer copy, then the end.
func (r *Reader) finalFooter() error {
	var win [2 * footerSize]byte
	have := 0 // bytes of win in use; win[:have] are the last bytes read
	for {
		n, err := r.r.Read(win[have:])
		r.pos += int64(n)
		have += n
		if have == len(win) {
			// Everything but the last footerSize bytes is padding.
			if !isZero(win[:footerSize]) {
				return corruptf("unexpected data at byte %d after the last block (only zero padding may come before the final footer)", r.pos-int64(have))
			}
			copy(win[:], win[footerSize:])
			have = footerSize
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("vhd: read the final footer: %w", err)
		}
	}
	if have < footerSize {
		return fmt.Errorf("vhd: the stream ends without the final footer (%d bytes after the last block): %w: %w", have, io.ErrUnexpectedEOF, ErrCorrupt)
	}
	if !isZero(win[:have-footerSize]) {
		return corruptf("unexpected data near the end of the stream, after the last block (only zero padding may come before the final footer)")
	}
	tail := win[have-footerSize : have]
	if !bytes.Equal(tail, r.foot.raw[:]) {
		if _, err := parseFooter(tail, "final footer"); err != nil {
			return err
		}
		return corruptf("the final footer differs from the footer copy at the start")
	}
	return nil
}

// read fills b from the stream.
func (r *Reader) read(b []byte, what string) error {
	n, err := io.ReadFull(r.r, b)
	r.pos += int64(n)
	if err != nil {
		return r.readErr(err, what)
	}
	return nil
}

// readGrow reads n bytes into buf, growing it only as data arrives, so
// that a short hostile stream cannot make the Reader allocate a large
// block it never fills.
func (r *Reader) readGrow(buf []byte, n int64, what string) ([]byte, error) {
	if int64(cap(buf)) >= n {
		return buf[:n], r.read(buf[:n], what)
	}
	buf = buf[:0]
	for int64(len(buf)) < n {
		step := min(n-int64(len(buf)), max(int64(len(buf)), 1<<20))
		start := len(buf)
		buf = append(buf, make([]byte, step)...)
		if err := r.read(buf[start:], what); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// skipTo discards the stream up to byte off; it may not lie behind.
func (r *Reader) skipTo(off int64, what string) error {
	if off < r.pos {
		return corruptf("%s at byte %d lies before byte %d, already read", what, off, r.pos)
	}
	n, err := io.CopyN(io.Discard, r.r, off-r.pos)
	r.pos += n
	if err != nil {
		return r.readErr(err, "the bytes before "+what)
	}
	return nil
}

func (r *Reader) readErr(err error, what string) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("vhd: the stream ends early, at byte %d, in %s: %w: %w", r.pos, what, io.ErrUnexpectedEOF, ErrCorrupt)
	}
	return fmt.Errorf("vhd: read %s at byte %d: %w", what, r.pos, err)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
