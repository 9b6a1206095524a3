package nbd

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestPlanRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 2000 {
		mb := int64(1) << rng.IntN(13)
		maxReq := mb * (rng.Int64N(8) + 1)
		size := rng.Int64N(1<<16) + 1
		off := rng.Int64N(size)
		n := rng.Int64N(size-off) + 1
		p := make([]byte, n)
		pieces := planRead(p, off, mb, maxReq, size)
		pos := off
		for _, pc := range pieces {
			// Requests are aligned (but the export's last partial block),
			// within the export, and not too long.
			if pc.off%mb != 0 || pc.length <= 0 || pc.length > maxReq || pc.off+pc.length > size ||
				(pc.length%mb != 0 && pc.off+pc.length != size) {
				t.Fatalf("mb %d max %d size %d read [%d,+%d): piece %+v", mb, maxReq, size, off, n, pc)
			}
			// Pieces fill p in order, without gaps.
			if &pc.dst[0] != &p[pos-off] {
				t.Fatalf("piece %+v does not start at %d", pc, pos)
			}
			if pc.bounce == nil {
				if pc.off != pos || int64(len(pc.dst)) != pc.length {
					t.Fatalf("direct piece %+v at %d", pc, pos)
				}
			} else if pc.off+pc.skip != pos || pc.skip+int64(len(pc.dst)) > pc.length || int64(len(pc.bounce)) != pc.length {
				t.Fatalf("bounce piece %+v at %d", pc, pos)
			}
			pos += int64(len(pc.dst))
		}
		if pos != off+n {
			t.Fatalf("pieces cover [%d, %d), want [%d, %d)", off, pos, off, off+n)
		}
	}
}

func TestRequestStep(t *testing.T) {
	for _, c := range []struct {
		maxReq, minBlock int64
		depth            int
		want             int64
	}{
		{32 << 20, 1, 8, 256 << 10},          // long reads pipelined
		{32 << 20, 512, 1, 32 << 20},         // one in flight: long requests
		{64 << 10, 512, 8, 64 << 10},         // the server's cap is lower
		{32 << 20, 3 << 10, 8, 255 << 10},    // whole blocks of an odd size
		{32 << 20, 1 << 20, 8, 1 << 20},      // blocks larger than the cap
		{256 << 10, 4096, 16, 256 << 10},     // exactly the cap
		{1 << 30, 4096, 2, 256 << 10},        // two in flight
		{300 << 10, 100 << 10, 4, 200 << 10}, // rounded down to blocks
	} {
		if got := requestStep(c.maxReq, c.minBlock, c.depth); got != c.want {
			t.Errorf("requestStep(%d, %d, %d) = %d, want %d", c.maxReq, c.minBlock, c.depth, got, c.want)
		}
	}
}

func TestIntervals(t *testing.T) {
	var s intervals
	for _, r := range [][2]uint64{{10, 20}, {30, 40}, {0, 5}, {20, 25}, {5, 10}, {25, 30}, {50, 60}, {45, 50}} {
		if err := s.add(r[0], r[1]); err != nil {
			t.Fatalf("add %v: %v", r, err)
		}
	}
	if len(s.r) != 2 || s.r[0] != [2]uint64{0, 40} || s.r[1] != [2]uint64{45, 60} || s.total() != 55 {
		t.Fatalf("intervals %v", s.r)
	}
	for _, r := range [][2]uint64{{39, 41}, {0, 1}, {44, 46}, {59, 70}, {10, 11}, {0, 100}} {
		if err := s.add(r[0], r[1]); !errors.Is(err, ErrProtocol) {
			t.Fatalf("overlapping %v: %v", r, err)
		}
	}
	if err := s.add(40, 45); err != nil || len(s.r) != 1 || s.total() != 60 {
		t.Fatalf("filling the gap: %v %v", err, s.r)
	}
}

func TestPrintable(t *testing.T) {
	if got := printable([]byte("ok \x00\x1b[31m\xffé")); got != "ok ??[31m?é" {
		t.Fatalf("printable: %q", got)
	}
}
