package xapi

import (
	"encoding/base64"
	"fmt"
	"math/bits"
	"strings"
)

// CBTBlockSize is the disk span of one bit of a CBT bitmap.
const CBTBlockSize = 64 << 10

// Bitmap is a decoded VDI.list_changed_blocks answer: bit i is block i
// (bytes i×64 KiB to (i+1)×64 KiB), the first block in the most
// significant bit of byte 0. Blocks past its end are unchanged.
type Bitmap []byte

// Extent is a byte range of a disk.
type Extent struct{ Off, Len int64 }

// DecodeBitmap decodes the base64 text of a CBT bitmap (padded or not;
// white space is ignored).
func DecodeBitmap(s string) (Bitmap, error) {
	s = strings.Join(strings.Fields(s), "")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b2, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
			return b2, nil
		}
		return nil, fmt.Errorf("CBT bitmap: %w", err)
	}
	return b, nil
}

// Changed reports whether block changed.
func (b Bitmap) Changed(block int64) bool {
	if block < 0 || block/8 >= int64(len(b)) {
		return false
	}
	return b[block/8]&(0x80>>(block%8)) != 0
}

// Count is the number of changed blocks.
func (b Bitmap) Count() int64 {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return int64(n)
}

// Extents returns the changed byte ranges of a disk of size bytes: runs of
// changed blocks coalesced, in order, the last one clipped to size.
func (b Bitmap) Extents(size int64) []Extent {
	if size <= 0 {
		return nil
	}
	blocks := size / CBTBlockSize
	if size%CBTBlockSize != 0 {
		blocks++
	}
	blocks = min(blocks, int64(len(b))*8)
	end := func(block int64) int64 { // the byte offset where block starts, clipped
		if block > size/CBTBlockSize {
			return size
		}
		return min(block*CBTBlockSize, size)
	}
	var out []Extent
	for i := int64(0); i < blocks; {
		if i%8 == 0 && b[i/8] == 0 {
			i += 8
			continue
		}
		if !b.Changed(i) {
			i++
			continue
		}
		j := i + 1
		for j < blocks && b.Changed(j) {
			j++
		}
		out = append(out, Extent{Off: i * CBTBlockSize, Len: end(j) - i*CBTBlockSize})
		i = j
	}
	return out
}
