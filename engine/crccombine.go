package engine

// CRC-32C of a concatenation from the CRCs of its parts, so that one pass
// over a pack's bytes yields both every blob's CRC and every shard's sum
// (a blob and a shard overlap without nesting). The arithmetic is over
// GF(2) polynomials modulo the Castagnoli polynomial, in the reflected bit
// order hash/crc32 uses (the top bit is x^0).

// castagnoliReflected is the Castagnoli polynomial, reflected.
const castagnoliReflected = 0x82f63b78

// gfMulMod returns a·b modulo the polynomial (both reflected).
func gfMulMod(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReflected
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow2 holds x^(2^k) modulo the polynomial for k in [0, 64).
var xPow2 = func() (t [64]uint32) {
	t[0] = 1 << 30 // x^1
	for k := 1; k < len(t); k++ {
		t[k] = gfMulMod(t[k-1], t[k-1])
	}
	return t
}()

// xPowBytes returns x^(8n) modulo the polynomial: what appending n bytes
// multiplies a CRC's register by.
func xPowBytes(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = gfMulMod(xPow2[k%64], p)
		}
	}
	return p
}

// crcCombine returns the CRC-32C of A‖B from crcA = CRC-32C(A), crcB =
// CRC-32C(B) and len(B).
func crcCombine(crcA, crcB uint32, lenB uint64) uint32 {
	if lenB == 0 {
		return crcA
	}
	return gfMulMod(xPowBytes(lenB), crcA) ^ crcB
}
