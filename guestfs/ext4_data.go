package guestfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// The data of an ext2/3/4 inode: the extent tree (ext4), the indirect
// block map (ext2/3) or inline data, turned into the extents an
// extentReader reads.

// content returns a ReaderAt over an inode's data.
func (f *extFS) content(in *extInode) (io.ReaderAt, error) {
	if in.flags&extFlagInlineData != 0 {
		data, err := f.inlineData(in)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(data), nil
	}
	exts, err := f.dataExtents(in)
	if err != nil {
		return nil, fmt.Errorf("inode %d block map: %w", in.ino, err)
	}
	r, err := newExtentReader(f.dev, f.size, exts, in.size)
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", in.ino, err)
	}
	return r, nil
}

// dataExtents maps an inode's data blocks: its extent tree, or the
// ext2/3 indirect block map.
func (f *extFS) dataExtents(in *extInode) ([]extent, error) {
	if in.flags&extFlagExtents != 0 {
		return f.extentMap(in)
	}
	return f.blockMap(in)
}

func (f *extFS) open(n *node) (io.ReaderAt, error) {
	return f.content(n.priv.(*extInode))
}

// extentMap walks an extent tree. Each level must be one shallower than its
// parent, so a corrupt tree cannot loop; the number of extents is bounded
// by the file's block count.
func (f *extFS) extentMap(in *extInode) ([]extent, error) {
	var out []extent
	devBlocks := f.size / f.bs
	maxExt := min(in.size/f.bs, devBlocks) + 16
	visited := map[int64]bool{}
	var walk func(b []byte, depth int) error
	walk = func(b []byte, want int) error {
		le := binary.LittleEndian
		if len(b) < 12 || le.Uint16(b[0:]) != extentMagic {
			return fmt.Errorf("bad extent header: %w", ErrCorrupt)
		}
		entries := int(le.Uint16(b[2:]))
		depth := int(le.Uint16(b[6:]))
		if depth > maxExtDepth || (want >= 0 && depth != want) {
			return fmt.Errorf("extent tree depth %d: %w", depth, ErrCorrupt)
		}
		if 12+12*entries > len(b) {
			return fmt.Errorf("extent node with %d entries: %w", entries, ErrCorrupt)
		}
		for i := 0; i < entries; i++ {
			e := b[12+12*i:]
			if depth == 0 {
				lblk := int64(le.Uint32(e[0:]))
				l := int64(le.Uint16(e[4:]))
				unwritten := false
				if l > 32768 {
					l -= 32768
					unwritten = true
				}
				start := int64(le.Uint16(e[6:]))<<32 | int64(le.Uint32(e[8:]))
				if int64(len(out)) >= maxExt {
					return fmt.Errorf("more extents than blocks: %w", ErrCorrupt)
				}
				out = append(out, extent{log: lblk * f.bs, phys: start * f.bs, n: l * f.bs, zero: unwritten})
				continue
			}
			child := int64(le.Uint16(e[8:]))<<32 | int64(le.Uint32(e[4:]))
			if child <= 0 || child >= devBlocks || visited[child] {
				return fmt.Errorf("extent index points to block %d: %w", child, ErrCorrupt)
			}
			visited[child] = true
			blk := make([]byte, f.bs)
			if err := readFull(f.dev, blk, child*f.bs); err != nil {
				return err
			}
			if err := walk(blk, depth-1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(in.raw[40:40+extBlockSize], -1); err != nil {
		return nil, err
	}
	return out, nil
}

// blockMap decodes the ext2/3 direct and (double, triple) indirect block
// pointers into extents, merging contiguous blocks. It stops at the last
// block the size needs.
func (f *extFS) blockMap(in *extInode) ([]extent, error) {
	le := binary.LittleEndian
	nblocks := (in.size + f.bs - 1) / f.bs
	perBlock := f.bs / 4
	devBlocks := f.size / f.bs
	visited := map[int64]bool{}
	var out []extent
	add := func(lblk, pblk int64) error {
		if pblk == 0 {
			return nil
		}
		if int64(len(out)) > devBlocks {
			return fmt.Errorf("more extents than blocks: %w", ErrCorrupt)
		}
		if pblk >= f.size/f.bs {
			return fmt.Errorf("block pointer %d past the volume: %w", pblk, ErrCorrupt)
		}
		if k := len(out) - 1; k >= 0 && out[k].log+out[k].n == lblk*f.bs && out[k].phys+out[k].n == pblk*f.bs {
			out[k].n += f.bs
			return nil
		}
		out = append(out, extent{log: lblk * f.bs, phys: pblk * f.bs, n: f.bs})
		return nil
	}
	var lblk int64
	for i := 0; i < 12 && lblk < nblocks; i++ {
		if err := add(lblk, int64(le.Uint32(in.raw[40+4*i:]))); err != nil {
			return nil, err
		}
		lblk++
	}
	// walk reads an indirect block of the given level (1 = single).
	var walk func(pblk int64, level int) error
	walk = func(pblk int64, level int) error {
		span := int64(1)
		for range level - 1 {
			span *= perBlock
		}
		if pblk == 0 { // a hole covering the whole subtree
			lblk += span * perBlock
			return nil
		}
		if pblk >= devBlocks || visited[pblk] {
			return fmt.Errorf("indirect block %d past the volume or used twice: %w", pblk, ErrCorrupt)
		}
		visited[pblk] = true
		blk := make([]byte, f.bs)
		if err := readFull(f.dev, blk, pblk*f.bs); err != nil {
			return err
		}
		for i := int64(0); i < perBlock && lblk < nblocks; i++ {
			p := int64(le.Uint32(blk[4*i:]))
			if level == 1 {
				if err := add(lblk, p); err != nil {
					return err
				}
				lblk++
			} else if err := walk(p, level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for level := 1; level <= 3 && lblk < nblocks; level++ {
		if err := walk(int64(le.Uint32(in.raw[40+4*(11+level):])), level); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// inlineData returns the data of an inline-data inode: the 60 bytes of
// i_block followed by the in-inode extended attribute "system.data".
func (f *extFS) inlineData(in *extInode) ([]byte, error) {
	if in.size > extBlockSize+int64(len(in.raw)) {
		return nil, fmt.Errorf("inline data of %d bytes: %w", in.size, ErrCorrupt)
	}
	data := append([]byte(nil), in.raw[40:40+extBlockSize]...)
	if in.size > extBlockSize {
		data = append(data, f.inlineXattr(in)...)
	}
	if int64(len(data)) < in.size {
		return nil, fmt.Errorf("inline data shorter than size: %w", ErrCorrupt)
	}
	return data[:in.size], nil
}

func (f *extFS) inlineXattr(in *extInode) []byte {
	le := binary.LittleEndian
	start := 128 + in.extraIsize()
	if start+4 > len(in.raw) || le.Uint32(in.raw[start:]) != 0xEA020000 {
		return nil
	}
	area := in.raw[start+4:]
	for off := 0; off+16 <= len(area); {
		nameLen := int(area[off])
		idx := area[off+1]
		voff := int(le.Uint16(area[off+2:]))
		vsize := int(le.Uint32(area[off+8:]))
		if nameLen == 0 && idx == 0 && voff == 0 {
			break
		}
		if off+16+nameLen > len(area) {
			break
		}
		name := string(area[off+16 : off+16+nameLen])
		if idx == 7 && name == "data" && voff+vsize <= len(area) && voff >= 0 {
			return area[voff : voff+vsize]
		}
		off += (16 + nameLen + 3) &^ 3
	}
	return nil
}
