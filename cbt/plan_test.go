package cbt_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ahvfs/ahvfs/cbt"
)

const cs = 1 << 16

func kinds(p cbt.Plan, size int64) []cbt.Kind {
	var out []cbt.Kind
	for _, e := range p {
		for off := e.Off; off < e.Off+e.Len; off += cs {
			out = append(out, e.Kind)
		}
	}
	return out
}

func TestAlign(t *testing.T) {
	size := int64(10*cs + 100) // a short last chunk
	cases := []struct {
		name    string
		regions []cbt.Region
		rest    cbt.Kind
		want    string // one letter per chunk: R read, Z zero, U unchanged
	}{
		{"nothing changed", nil, cbt.Unchanged, "UUUUUUUUUUU"},
		{"allocation map", nil, cbt.Zero, "ZZZZZZZZZZZ"},
		{"one byte", []cbt.Region{{Off: 3*cs + 7, Len: 1}}, cbt.Unchanged, "UUURUUUUUUU"},
		{"across a boundary", []cbt.Region{{Off: 2*cs - 1, Len: 2}}, cbt.Unchanged, "URRUUUUUUUU"},
		{"zeroed whole chunks", []cbt.Region{{Off: cs, Len: 3 * cs, Zeroed: true}}, cbt.Unchanged, "UZZZUUUUUUU"},
		{"zeroed part of a chunk is read", []cbt.Region{{Off: cs + 10, Len: 2 * cs, Zeroed: true}}, cbt.Unchanged, "URZRUUUUUUU"},
		{"data wins over zero", []cbt.Region{{Off: 0, Len: 4 * cs, Zeroed: true}, {Off: 2 * cs, Len: 5}}, cbt.Unchanged, "ZZRZUUUUUUU"},
		{"zeroed to the short end", []cbt.Region{{Off: 9 * cs, Len: cs + 100, Zeroed: true}}, cbt.Unchanged, "UUUUUUUUUZZ"},
		{"last byte", []cbt.Region{{Off: size - 1, Len: 1}}, cbt.Zero, "ZZZZZZZZZZR"},
	}
	letter := map[cbt.Kind]byte{cbt.Read: 'R', cbt.Zero: 'Z', cbt.Unchanged: 'U'}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := cbt.Align(c.regions, size, cs, c.rest)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Validate(size, cs); err != nil {
				t.Fatal(err)
			}
			var got []byte
			for _, k := range kinds(p, size) {
				got = append(got, letter[k])
			}
			if string(got) != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			for i := 1; i < len(p); i++ {
				if p[i].Kind == p[i-1].Kind {
					t.Fatalf("adjacent extents of one kind not merged: %+v", p)
				}
			}
		})
	}
	if _, err := cbt.Align([]cbt.Region{{Off: size, Len: 1}}, size, cs, cbt.Zero); err == nil {
		t.Fatal("a region past the disk must be refused")
	}
}

// TestAlignCoversChanges: for random regions, every changed byte lies in a
// Read chunk, and every Zero chunk is wholly inside zeroed regions.
func TestAlignCoversChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 500; iter++ {
		size := int64(rng.IntN(40*cs) + 1)
		var regions []cbt.Region
		data := make([]bool, size)
		zero := make([]bool, size)
		for range rng.IntN(8) {
			off := rng.Int64N(size)
			l := rng.Int64N(size-off) + 1
			z := rng.IntN(2) == 0
			regions = append(regions, cbt.Region{Off: off, Len: l, Zeroed: z})
			for i := off; i < off+l; i++ {
				if z {
					zero[i] = true
				} else {
					data[i] = true
				}
			}
		}
		p, err := cbt.Align(regions, size, cs, cbt.Unchanged)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(size, cs); err != nil {
			t.Fatal(err)
		}
		for _, e := range p {
			for i := e.Off; i < e.Off+e.Len; i++ {
				switch e.Kind {
				case cbt.Unchanged:
					if data[i] || zero[i] {
						t.Fatalf("iter %d: changed byte %d in an unchanged extent", iter, i)
					}
				case cbt.Zero:
					if data[i] || !zero[i] {
						t.Fatalf("iter %d: byte %d in a zero extent is not zeroed", iter, i)
					}
				}
			}
		}
	}
}

// sink records what Ingest hands it.
type sink struct {
	mu        sync.Mutex
	size      int64
	buf       []byte
	zero      int64
	unchanged int64
	failAt    int64
}

func (s *sink) WriteAt(ctx context.Context, data []byte, off int64) error {
	if s.failAt >= 0 && off <= s.failAt && s.failAt < off+int64(len(data)) {
		return errors.New("injected write failure")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.buf[off:], data)
	return nil
}
func (s *sink) Zero(off, n int64) error { s.mu.Lock(); s.zero += n; s.mu.Unlock(); return nil }
func (s *sink) Unchanged(ctx context.Context, off, n int64) error {
	s.mu.Lock()
	s.unchanged += n
	s.mu.Unlock()
	return nil
}
func (s *sink) ChunkSize() int { return cs }
func (s *sink) Size() int64    { return s.size }

func TestIngestAndFilePlan(t *testing.T) {
	// A sparse file: data, a hole of 5 chunks, data, a hole to the end.
	path := filepath.Join(t.TempDir(), "sparse.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile("/usr/local/go/bin/gofmt") // real bytes
	if err != nil || len(content) < 3*cs {
		t.Fatalf("need a real file of 3 chunks: %v", err)
	}
	size := int64(20 * cs)
	f.Truncate(size)
	f.WriteAt(content[:2*cs], 0)
	f.WriteAt(content[:cs+10], 7*cs)
	f.Close()
	f, _ = os.Open(path)
	defer f.Close()
	p, err := cbt.FilePlan(f, size, cs)
	if err != nil {
		t.Fatal(err)
	}
	if p.Bytes(cbt.Read) > 4*cs || p.Bytes(cbt.Zero) < 14*cs {
		t.Fatalf("sparse plan reads %d, zeroes %d: %+v", p.Bytes(cbt.Read), p.Bytes(cbt.Zero), p)
	}
	s := &sink{size: size, buf: make([]byte, size), failAt: -1}
	var last int64
	st, err := cbt.Ingest(context.Background(), f, p, s, cbt.Options{Workers: 3, ReadSize: cs, Progress: func(d int64) { last = max(last, d) }})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if !bytes.Equal(s.buf, want) {
		t.Fatal("ingested bytes differ")
	}
	if st.ReadBytes+st.ZeroBytes != size || last != size {
		t.Fatalf("stats %+v, progress %d", st, last)
	}
	// A failing sink stops the work with its error.
	s = &sink{size: size, buf: make([]byte, size), failAt: 8 * cs}
	if _, err := cbt.Ingest(context.Background(), f, cbt.Full(size), s, cbt.Options{ReadSize: cs}); err == nil || err.Error() != "injected write failure" {
		t.Fatalf("failing sink: %v", err)
	}
	// A short source is an error, not a silent short disk.
	s = &sink{size: size + cs, buf: make([]byte, size+cs), failAt: -1}
	if _, err := cbt.Ingest(context.Background(), f, cbt.Full(size+cs), s, cbt.Options{}); err == nil {
		t.Fatal("short source accepted")
	}
}
