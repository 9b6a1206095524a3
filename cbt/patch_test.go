package cbt_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ahvfs/ahvfs/cbt"
)

// TestPatchedIncremental builds random old/new disks whose differences the
// regions describe (64-byte blocks, like Nutanix's 64 KiB ones against
// larger chunks), and checks that a patched plan ingests the new disk
// exactly from the new source plus the old disk as base, reads only the
// changed parts of patched chunks, and reads less than the unpatched plan.
func TestPatchedIncremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const blk = cs / 16
	var patchedSome bool
	for iter := 0; iter < 300; iter++ {
		size := int64(rng.IntN(30*cs) + 1)
		old := make([]byte, size)
		for i := range old {
			old[i] = byte(rng.IntN(256))
		}
		cur := bytes.Clone(old)
		var regions []cbt.Region
		for range rng.IntN(12) {
			off := rng.Int64N(size) / blk * blk
			l := min(size-off, (rng.Int64N(4)+1)*blk)
			z := rng.IntN(4) == 0
			for i := off; i < off+l; i++ {
				if z {
					cur[i] = 0
				} else {
					cur[i] = byte(rng.IntN(256))
				}
			}
			regions = append(regions, cbt.Region{Off: off, Len: l, Zeroed: z})
		}
		// Later writes win: a data write over a zeroed one leaves data, so
		// keep the regions consistent with cur, as a cluster reports them.
		for i, r := range regions {
			if r.Zeroed && !allZero(cur[r.Off:r.Off+r.Len]) {
				regions[i].Zeroed = false
			}
		}
		full, err := cbt.Align(regions, size, cs, cbt.Unchanged)
		if err != nil {
			t.Fatal(err)
		}
		p, err := cbt.AlignPatched(regions, size, cs, cs/2)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(size, cs); err != nil {
			t.Fatalf("iter %d: %v\n%+v", iter, err, p)
		}
		for _, e := range p {
			if e.Kind != cbt.Patch {
				continue
			}
			patchedSome = true
			var n int64
			for _, pt := range e.Parts {
				if !pt.Zeroed {
					n += pt.Len
				}
			}
			if n > cs/2 {
				t.Fatalf("iter %d: a patch reads %d bytes, more than the limit", iter, n)
			}
		}
		if p.SourceBytes() > full.SourceBytes() {
			t.Fatalf("iter %d: patched plan reads %d, whole chunks %d", iter, p.SourceBytes(), full.SourceBytes())
		}

		s := &sink{size: size, buf: bytes.Clone(old), failAt: -1}
		src := &countingReader{b: cur}
		st, err := cbt.Ingest(context.Background(), src, p, zeroingSink{s}, cbt.Options{Workers: 3, ReadSize: cs, Base: bytes.NewReader(old)})
		if err != nil {
			t.Fatal(err)
		}
		// The sink starts as the old disk: Unchanged extents keep it, as
		// the engine keeps the parent's chunks.
		if !bytes.Equal(s.buf, cur) {
			t.Fatalf("iter %d: ingested disk differs from the new one", iter)
		}
		if st.ReadBytes != p.SourceBytes() || src.n.Load() != p.SourceBytes() {
			t.Fatalf("iter %d: read %d (source saw %d), plan says %d", iter, st.ReadBytes, src.n.Load(), p.SourceBytes())
		}
	}
	if !patchedSome {
		t.Fatal("no plan had a patch: the test proves nothing")
	}
}

func TestPatchNeedsBase(t *testing.T) {
	p, err := cbt.AlignPatched([]cbt.Region{{Off: 10, Len: 10}}, 4*cs, cs, cs/2)
	if err != nil || len(p) == 0 || p[0].Kind != cbt.Patch {
		t.Fatalf("plan %+v, %v", p, err)
	}
	s := &sink{size: 4 * cs, buf: make([]byte, 4*cs), failAt: -1}
	_, err = cbt.Ingest(context.Background(), &countingReader{b: make([]byte, 4*cs)}, p, s, cbt.Options{})
	if err == nil || !strings.Contains(err.Error(), "no base") {
		t.Fatalf("patch without a base: %v", err)
	}
	bad := cbt.Plan{{Off: 0, Len: 4 * cs, Kind: cbt.Patch, Parts: []cbt.Part{{Off: 1, Len: 1}}}}
	if err := bad.Validate(4*cs, cs); err == nil {
		t.Fatal("a patch over four chunks validated")
	}
	bad = cbt.Plan{{Off: 0, Len: cs, Kind: cbt.Patch, Parts: []cbt.Part{{Off: 10, Len: 5}, {Off: 12, Len: 1}}}, {Off: cs, Len: 3 * cs, Kind: cbt.Unchanged}}
	if err := bad.Validate(4*cs, cs); err == nil {
		t.Fatal("overlapping parts validated")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// countingReader is an in-memory source that counts the bytes read.
type countingReader struct {
	b []byte
	n atomic.Int64
}

func (r *countingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	r.n.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// zeroingSink applies Zero extents to the buffer.
type zeroingSink struct{ *sink }

func (s zeroingSink) Zero(off, n int64) error {
	s.mu.Lock()
	clear(s.buf[off : off+n])
	s.mu.Unlock()
	return s.sink.Zero(off, n)
}
