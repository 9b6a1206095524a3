package engine

import (
	"encoding/binary"
	"math/bits"
)

// idFilter is a Bloom filter of blob IDs: gc marks every page and chunk
// a restore point references in it, so its memory is about two bytes per
// indexed blob however large the repository, instead of a set of 32-byte
// IDs. A false positive only keeps an unused blob until a later gc (whose
// filter, sized from a smaller index, errs elsewhere); a referenced blob
// is never missed.
//
// IDs are BLAKE3 hashes (keyed in an encrypted repository), uniform
// already: the k probes come from two 64-bit words of the ID by double
// hashing (Kirsch–Mitzenmacher).
type idFilter struct {
	words []uint64
	m     uint64 // bits
	k     int
}

// newIDFilter sizes a filter for n IDs at 16 bits per ID and 11 probes: a
// false-positive rate near 1 in 2,000.
func newIDFilter(n int) *idFilter {
	m := max(uint64(n)*16, 1<<16)
	m = (m + 63) &^ 63
	return &idFilter{words: make([]uint64, m/64), m: m, k: 11}
}

func (f *idFilter) probes(id ID) (h1, h2 uint64) {
	return binary.LittleEndian.Uint64(id[0:8]), binary.LittleEndian.Uint64(id[8:16]) | 1
}

func (f *idFilter) add(id ID) {
	h1, h2 := f.probes(id)
	for i := 0; i < f.k; i++ {
		b := (h1 + uint64(i)*h2) % f.m
		f.words[b/64] |= 1 << (b % 64)
	}
}

func (f *idFilter) has(id ID) bool {
	h1, h2 := f.probes(id)
	for i := 0; i < f.k; i++ {
		b := (h1 + uint64(i)*h2) % f.m
		if f.words[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// fill is the share of bits set (tests, reports).
func (f *idFilter) fill() float64 {
	n := 0
	for _, w := range f.words {
		n += bits.OnesCount64(w)
	}
	return float64(n) / float64(f.m)
}
