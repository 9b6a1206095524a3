package engine

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// IDSize is the length of a chunk or page ID in bytes.
const IDSize = 32

// ID names a chunk or a page: the BLAKE3-256 of its plaintext, keyed with the
// repository's ID key when the repository is encrypted. The zero ID stands for
// an all-zero chunk (or page) that is never stored.
type ID [IDSize]byte

// ZeroID is the ID the manifest uses for an all-zero chunk or page.
var ZeroID ID

// IsZero reports whether id is ZeroID.
func (id ID) IsZero() bool { return id == ZeroID }

// String is the lowercase hex form of the ID.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 bytes in hex, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:8]) }

// ParseID parses the hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != IDSize {
		return id, fmt.Errorf("parse ID %q: want %d hex bytes", s, IDSize)
	}
	copy(id[:], b)
	return id, nil
}

// hasher computes IDs. It is safe for concurrent use: each call makes its
// own BLAKE3 state from a prepared template.
type hasher struct {
	key []byte // nil: plain BLAKE3-256
}

func (h hasher) sum(data []byte) ID {
	var id ID
	if h.key == nil {
		id = blake3.Sum256(data)
		return id
	}
	k, err := blake3.NewKeyed(h.key)
	if err != nil {
		panic(err) // key length is checked when the repository is opened
	}
	k.Write(data)
	k.Sum(id[:0])
	return id
}

// isZero reports whether b is all zero bytes.
func isZero(b []byte) bool {
	for len(b) >= len(zeroBlock) {
		if string(b[:len(zeroBlock)]) != string(zeroBlock[:]) {
			return false
		}
		b = b[len(zeroBlock):]
	}
	return string(b) == string(zeroBlock[:len(b)])
}

var zeroBlock [64 << 10]byte
