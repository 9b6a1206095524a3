package engine

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestStripeCheck exercises one 3+2 stripe: damage within parity is
// rebuilt exactly; a parity shard rewritten together with its sum is found
// by recomputing the parity, and a rebuild that first picks it tries the
// other parity shard; damage beyond parity is reported as lost and left as
// it was.
func TestStripeCheck(t *testing.T) {
	const k, m, ss = 3, 2, 256
	c, err := newStripeCoder(k, m, ss)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(9, 9))
	orig := make([][]byte, k)
	sums := make([]uint32, k)
	for i := range orig {
		orig[i] = make([]byte, ss)
		for j := range orig[i] {
			orig[i][j] = byte(rnd.Uint32())
		}
		sums[i] = crc32.Checksum(orig[i], crcTable)
	}
	origPar := [][]byte{make([]byte, ss), make([]byte, ss)}
	if err := c.encode(orig, origPar); err != nil {
		t.Fatal(err)
	}
	parSums := []uint32{crc32.Checksum(origPar[0], crcTable), crc32.Checksum(origPar[1], crcTable)}
	clone := func(s [][]byte) [][]byte {
		out := make([][]byte, len(s))
		for i := range s {
			out[i] = bytes.Clone(s[i])
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		badData    []int
		badParity  int  // -1: none
		sumToo     bool // the bad parity shard's sum is rewritten with it
		wantLost   bool
		wantParity []int
	}{
		{"intact", nil, -1, false, false, nil},
		{"one data shard", []int{1}, -1, false, false, nil},
		{"two data shards", []int{0, 2}, -1, false, false, nil},
		{"one parity shard", nil, 1, false, false, []int{1}},
		{"parity shard rewritten with its sum", nil, 0, true, false, []int{0}},
		{"data shard and a parity shard rewritten with its sum", []int{1}, 0, true, false, []int{0}},
		{"data shard and a damaged parity shard", []int{2}, 1, false, false, []int{1}},
		{"three data shards", []int{0, 1, 2}, -1, false, true, nil},
		{"two data shards and a parity shard", []int{0, 1}, 1, false, true, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, par := clone(orig), clone(origPar)
			ps := slices.Clone(parSums)
			for _, i := range tc.badData {
				data[i][7] ^= 1
			}
			damaged := clone(data)
			if tc.badParity >= 0 {
				par[tc.badParity][100] ^= 0x80
				if tc.sumToo {
					ps[tc.badParity] = crc32.Checksum(par[tc.badParity], crcTable)
				}
			}
			out := [][]byte{make([]byte, ss), make([]byte, ss)}
			chk := c.check(data, sums, par, ps, out)
			if !slices.Equal(chk.badData, tc.badData) || chk.lost != tc.wantLost || !slices.Equal(chk.badParity, tc.wantParity) {
				t.Fatalf("check: %+v, want bad data %v, lost %v, bad parity %v", chk, tc.badData, tc.wantLost, tc.wantParity)
			}
			want := orig
			if tc.wantLost {
				want = damaged
			}
			for i := range data {
				if !bytes.Equal(data[i], want[i]) {
					t.Fatalf("data shard %d is not as it should be after the check", i)
				}
			}
			if !tc.wantLost && (!bytes.Equal(out[0], origPar[0]) || !bytes.Equal(out[1], origPar[1])) {
				t.Fatal("recomputed parity differs from the original")
			}
		})
	}
}
