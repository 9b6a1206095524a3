package crashproc

import (
	"encoding/binary"
	"math/rand/v2"
)

// Chacha returns n bytes of the ChaCha8 stream of seed: source data that
// a seed reproduces.
func Chacha(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}
