package engine

import (
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Blob flags, stored in the pack table and the index.
const (
	flagCodecMask = 0x03
	codecRaw      = 0
	codecZstd     = 1
	codecS2       = 2
	flagEncrypted = 0x04
	flagPage      = 0x10 // the blob is a manifest page, not disk data
	flagsKnown    = flagCodecMask | flagEncrypted | flagPage
)

// codec compresses and seals blobs. It is safe for concurrent use.
type codec struct {
	compression string
	keys        *keys // nil: not encrypted
	zenc        *zstd.Encoder
	zdec        *zstd.Decoder
}

func newCodec(compression string, k *keys) (*codec, error) {
	c := &codec{compression: compression, keys: k}
	var err error
	c.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(0), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	c.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *codec) close() {
	c.zenc.Close()
	c.zdec.Close()
}

// encode turns plaintext into a stored blob (appended to dst[:0]) and its
// flags. The blob is compressed when that shrinks it by at least 1/32, then
// sealed when the repository is encrypted, with the ID as associated data so
// a blob cannot be swapped for another.
func (c *codec) encode(dst, plain []byte, id ID, page bool) ([]byte, byte) {
	var flags byte
	if page {
		flags |= flagPage
	}
	out := plain
	switch c.compression {
	case CompressS2:
		comp := s2.Encode(dst[:cap(dst)], plain)
		if len(comp) < len(plain)-len(plain)/32 {
			out, flags = comp, flags|codecS2
		}
	case CompressZstd:
		comp := c.zenc.EncodeAll(plain, dst[:0])
		if len(comp) < len(plain)-len(plain)/32 {
			out, flags = comp, flags|codecZstd
		}
	}
	if c.keys != nil {
		sealed := c.keys.blob.Seal(nil, nil, out, id[:])
		return sealed, flags | flagEncrypted
	}
	if flags&flagCodecMask == codecRaw {
		return append(dst[:0], plain...), flags
	}
	return out, flags
}

// decode reverses encode into dst (which should have capacity rawLen) and
// checks the result against id with h. Any mismatch is ErrCorrupt.
func (c *codec) decode(dst, stored []byte, flags byte, rawLen int, id ID, h hasher) ([]byte, error) {
	out, err := c.unpack(dst, stored, flags, rawLen, id)
	if err != nil {
		return nil, err
	}
	if got := h.sum(out); got != id {
		return nil, fmt.Errorf("blob %s: %w: content hashes to %s", id.Short(), ErrCorrupt, got.Short())
	}
	return out, nil
}

// decodeAt is decode for a blob at l: when the index recorded the stored
// bytes' CRC-32C, that is checked before decoding instead of the BLAKE3 ID
// after, at a tenth of the cost (over fewer bytes, as they are
// compressed). Both catch damaged data; verify --read-data recomputes IDs.
func (c *codec) decodeAt(dst, stored []byte, l location, id ID, h hasher) ([]byte, error) {
	if !l.HasCRC {
		return c.decode(dst, stored, l.Flags, int(l.Raw), id, h)
	}
	if got := crc32.Checksum(stored, crcTable); got != l.CRC {
		return nil, fmt.Errorf("blob %s: %w: CRC-32C %08x, index says %08x", id.Short(), ErrCorrupt, got, l.CRC)
	}
	return c.unpack(dst, stored, l.Flags, int(l.Raw), id)
}

// unpack opens and decompresses a stored blob into dst without checking
// what comes out against the ID.
func (c *codec) unpack(dst, stored []byte, flags byte, rawLen int, id ID) ([]byte, error) {
	if flags&^flagsKnown != 0 {
		return nil, fmt.Errorf("blob %s: %w: unknown flags %#x", id.Short(), ErrCorrupt, flags)
	}
	data := stored
	if flags&flagEncrypted != 0 {
		if c.keys == nil {
			return nil, fmt.Errorf("blob %s: %w: encrypted blob in an unencrypted repository", id.Short(), ErrCorrupt)
		}
		var err error
		data, err = c.keys.blob.Open(nil, nil, stored, id[:])
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w: authentication failed", id.Short(), ErrCorrupt)
		}
	}
	var out []byte
	switch flags & flagCodecMask {
	case codecRaw:
		out = append(dst[:0], data...)
	case codecS2:
		n, err := s2.DecodedLen(data)
		if err != nil || n != rawLen {
			return nil, fmt.Errorf("blob %s: %w: s2 header (len %d, want %d): %v", id.Short(), ErrCorrupt, n, rawLen, err)
		}
		if cap(dst) < rawLen {
			dst = make([]byte, rawLen)
		}
		out, err = s2.Decode(dst[:rawLen], data)
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w: s2: %v", id.Short(), ErrCorrupt, err)
		}
	case codecZstd:
		var err error
		out, err = c.zdec.DecodeAll(data, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w: zstd: %v", id.Short(), ErrCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("blob %s: %w: unknown codec %d", id.Short(), ErrCorrupt, flags&flagCodecMask)
	}
	if len(out) != rawLen {
		return nil, fmt.Errorf("blob %s: %w: %d bytes, want %d", id.Short(), ErrCorrupt, len(out), rawLen)
	}
	return out, nil
}

// maxEncodedLen bounds the size of an encoded blob of n plaintext bytes.
func maxEncodedLen(n int) int { return s2.MaxEncodedLen(n) + 64 }
