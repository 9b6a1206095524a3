package engine

import (
	"math/rand/v2"
	"testing"
)

// TestIDFilter: every added ID is found, and IDs never added are found
// rarely (the false-positive rate the sizing promises, with margin).
func TestIDFilter(t *testing.T) {
	const n = 200_000
	r := rand.New(rand.NewPCG(1, 2))
	id := func() (x ID) {
		for i := range x {
			x[i] = byte(r.Uint32())
		}
		return x
	}
	f := newIDFilter(n)
	added := make([]ID, n)
	for i := range added {
		added[i] = id()
		f.add(added[i])
	}
	for _, x := range added {
		if !f.has(x) {
			t.Fatalf("added ID %s not found", x.Short())
		}
	}
	fp := 0
	for range n {
		if f.has(id()) {
			fp++
		}
	}
	rate := float64(fp) / n
	t.Logf("fill %.3f, false positives %d of %d (%.4f%%), %d bytes for %d IDs", f.fill(), fp, n, 100*rate, len(f.words)*8, n)
	if rate > 0.002 || f.fill() < 0.4 || f.fill() > 0.6 {
		t.Fatalf("false-positive rate %.4f, fill %.3f: want under 0.2%% at about half the bits set", rate, f.fill())
	}
}
