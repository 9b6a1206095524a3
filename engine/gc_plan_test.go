package engine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPlanPacksSpendsTheBudgetOnTheMostUnused checks planPacks on packs of
// 1000 blob bytes: empty ones go, and rewrites run most-unused first and
// stop once what stays is within the repository-wide share.
func TestPlanPacksSpendsTheBudgetOnTheMostUnused(t *testing.T) {
	pack := func(b byte) PackID { var id PackID; id[0] = b; return id }
	packs := map[PackID]*packUse{}
	add := func(b byte, live int64) {
		n := 0
		if live > 0 {
			n = 1
		}
		packs[pack(b)] = &packUse{rec: packRecord{DataLen: 1000 + packEntrySize, Blobs: 1}, live: live, liveBlobs: n}
	}
	add(1, 0)   // nothing referenced: deleted
	add(2, 100) // 90% unused
	add(3, 500) // 50%
	add(4, 960) // 4%: below the share, never a candidate
	add(5, 700) // 30%
	for b := byte(6); b < 16; b++ {
		add(b, 1000) // full
	}
	// Kept: 14 packs, 14000 bytes, 900+500+40+300 = 1740 unused (12.4%).
	cases := []struct {
		share   float64
		rewrite []byte
	}{
		{1, nil},
		{0.2, nil},           // 12.4% is within 20%
		{0.1, []byte{2}},     // 840/13100 = 6.4% after the 90% one
		{0.05, []byte{2, 3}}, // then 340/12600 = 2.7%
		{0.02, []byte{2, 3, 5}},
		{0, []byte{2, 3, 4, 5}},
	}
	for _, c := range cases {
		drop, rewrite := planPacks(packs, c.share)
		require.Equal(t, []PackID{pack(1)}, drop, "share %g", c.share)
		var want []PackID
		for _, b := range c.rewrite {
			want = append(want, pack(b))
		}
		require.Equal(t, want, rewrite, "share %g", c.share)
	}
}
