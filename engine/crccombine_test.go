package engine

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func TestCRCCombine(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(rnd.Uint32())
	}
	for range 300 {
		n := rnd.IntN(len(buf) + 1)
		cut := rnd.IntN(n + 1)
		a, b := buf[:cut], buf[cut:n]
		want := crc32.Checksum(buf[:n], crcTable)
		if got := crcCombine(crc32.Checksum(a, crcTable), crc32.Checksum(b, crcTable), uint64(len(b))); got != want {
			t.Fatalf("combine at %d of %d: %08x, want %08x", cut, n, got, want)
		}
	}
	// Many parts, folded left to right, as a shard's sum is from its pieces.
	var c uint32
	for off := 0; off < len(buf); {
		n := min(1+rnd.IntN(70000), len(buf)-off)
		c = crcCombine(c, crc32.Checksum(buf[off:off+n], crcTable), uint64(n))
		off += n
	}
	if want := crc32.Checksum(buf, crcTable); c != want {
		t.Fatalf("folded: %08x, want %08x", c, want)
	}
}
