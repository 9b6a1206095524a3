package xva

import (
	"encoding/binary"
	"math/bits"
)

// xxh64 is XXH64 with seed 0, written from the algorithm description in
// the xxHash specification (doc/xxhash_spec.md of github.com/Cyan4973/xxHash,
// "XXH64 Algorithm Description"); newer XAPI releases checksum XVA blocks
// with it (".xxhash" members). The tests check it against published
// vectors.
const (
	xxPrime1 uint64 = 0x9E3779B185EBCA87
	xxPrime2 uint64 = 0xC2B2AE3D27D4EB4F
	xxPrime3 uint64 = 0x165667B19E3779F9
	xxPrime4 uint64 = 0x85EBCA77C2B2AE63
	xxPrime5 uint64 = 0x27D4EB2F165667C5
)

func xxRound(acc, lane uint64) uint64 {
	acc += lane * xxPrime2
	acc = bits.RotateLeft64(acc, 31)
	return acc * xxPrime1
}

func xxMerge(acc, v uint64) uint64 {
	acc ^= xxRound(0, v)
	return acc*xxPrime1 + xxPrime4
}

func xxh64(b []byte) uint64 {
	n := len(b)
	var acc uint64
	if n >= 32 {
		// Step 1 with seed 0; step 2 over every whole 32-byte stripe.
		p1, p2 := xxPrime1, xxPrime2 // variables: the sums wrap modulo 2^64
		v1 := p1 + p2
		v2 := p2
		v3 := uint64(0)
		v4 := -p1
		for len(b) >= 32 {
			v1 = xxRound(v1, binary.LittleEndian.Uint64(b[0:]))
			v2 = xxRound(v2, binary.LittleEndian.Uint64(b[8:]))
			v3 = xxRound(v3, binary.LittleEndian.Uint64(b[16:]))
			v4 = xxRound(v4, binary.LittleEndian.Uint64(b[24:]))
			b = b[32:]
		}
		// Step 3: convergence.
		acc = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) +
			bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		acc = xxMerge(acc, v1)
		acc = xxMerge(acc, v2)
		acc = xxMerge(acc, v3)
		acc = xxMerge(acc, v4)
	} else {
		acc = xxPrime5
	}
	// Step 4: the input length.
	acc += uint64(n)
	// Step 5: the remaining 0..31 bytes.
	for len(b) >= 8 {
		acc ^= xxRound(0, binary.LittleEndian.Uint64(b))
		acc = bits.RotateLeft64(acc, 27)*xxPrime1 + xxPrime4
		b = b[8:]
	}
	if len(b) >= 4 {
		acc ^= uint64(binary.LittleEndian.Uint32(b)) * xxPrime1
		acc = bits.RotateLeft64(acc, 23)*xxPrime2 + xxPrime3
		b = b[4:]
	}
	for _, c := range b {
		acc ^= uint64(c) * xxPrime5
		acc = bits.RotateLeft64(acc, 11) * xxPrime1
	}
	// Step 6: avalanche.
	acc ^= acc >> 33
	acc *= xxPrime2
	acc ^= acc >> 29
	acc *= xxPrime3
	acc ^= acc >> 32
	return acc
}
