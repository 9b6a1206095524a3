package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

func readAll(t *testing.T, r *engine.Repository, rp *engine.RestorePoint, n int) []byte {
	t.Helper()
	d, err := r.OpenDisk(context.Background(), rp, n)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := io.ReadAll(io.NewSectionReader(d, 0, d.Size()))
	if err != nil {
		t.Fatalf("read disk-%d: %v", n, err)
	}
	return b
}

func TestRoundTripAndDedup(t *testing.T) {
	ctx := context.Background()
	img := enginetest.Ext4Image(t, 64<<20, 1)
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	t0 := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	rp1, err := enginetest.ImportFiles(ctx, r, "web01", t0, img)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if got := readAll(t, r, rp1, 0); !bytes.Equal(got, want) {
		t.Fatalf("disk-0 differs from the image")
	}
	if rp1.Stats.NewStoredBytes == 0 || rp1.Stats.NewStoredBytes >= int64(len(want)) {
		t.Fatalf("first import stored %d bytes of %d", rp1.Stats.NewStoredBytes, len(want))
	}
	rp2, err := enginetest.ImportFiles(ctx, r, "web01", t0.Add(time.Hour), img)
	if err != nil {
		t.Fatalf("second import: %v", err)
	}
	if rp2.Stats.NewChunks != 0 || rp2.Stats.NewStoredBytes != 0 {
		t.Fatalf("second import of the same image stored %d chunks, %d bytes", rp2.Stats.NewChunks, rp2.Stats.NewStoredBytes)
	}
	if got := readAll(t, r, rp2, 0); !bytes.Equal(got, want) {
		t.Fatalf("second restore point differs from the image")
	}
	// A reader in another "process" (a read-only open) sees both.
	ro := enginetest.Open(t, dir, engine.OpenOptions{})
	rps, err := ro.ListRestorePoints(ctx, "web01")
	if err != nil || len(rps) != 2 {
		t.Fatalf("reader lists %d restore points (%v), want 2", len(rps), err)
	}
	latest, err := ro.Resolve(ctx, "web01@latest")
	if err != nil || latest.ID != rp2.ID {
		t.Fatalf("resolve latest: %v %v", latest, err)
	}
	if got := readAll(t, ro, latest, 0); !bytes.Equal(got, want) {
		t.Fatalf("reader's disk differs")
	}
}

func TestSeekDataHole(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10, PageEntries: 16})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	cs := int64(64 << 10)
	// data at chunks 1 and 40 (page 2), zeros elsewhere; 50 chunks and a tail.
	size := 50*cs + 100
	img := make([]byte, size)
	copy(img[cs:], bytes.Repeat([]byte("real data "), 100))
	copy(img[40*cs+5:], []byte("more"))
	path := t.TempDir() + "/img.raw"
	os.WriteFile(path, img, 0o644)
	rp, err := enginetest.ImportFiles(ctx, r, "s", time.Unix(1e9, 0), path)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := r.OpenDisk(ctx, rp, 0)
	cases := []struct {
		off     int64
		data    int64
		dataEOF bool
		hole    int64
	}{
		{0, cs, false, 0},
		{cs + 7, cs + 7, false, 2 * cs},
		{2 * cs, 40 * cs, false, 2 * cs},
		{40 * cs, 40 * cs, false, 41 * cs},
		{41 * cs, 0, true, 41 * cs},
		{size - 1, 0, true, size - 1},
	}
	for _, c := range cases {
		got, err := d.SeekData(ctx, c.off)
		if c.dataEOF != (err == io.EOF) || (!c.dataEOF && got != c.data) {
			t.Errorf("SeekData(%d) = %d, %v; want %d (EOF %v)", c.off, got, err, c.data, c.dataEOF)
		}
		if got, err := d.SeekHole(ctx, c.off); err != nil || got != c.hole {
			t.Errorf("SeekHole(%d) = %d, %v; want %d", c.off, got, err, c.hole)
		}
	}
	if _, err := d.SeekData(ctx, size); err != io.EOF {
		t.Errorf("SeekData at the end: %v", err)
	}
}

// TestSpansSurviveRecycling holds spans while a cache of two chunks evicts
// and recycles everything else, from several goroutines: what a span holds
// never changes until it is released (the chunk buffers are counted), and
// every read returns the image's bytes.
func TestSpansSurviveRecycling(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10})
	rp, want := importOne(t, dir)
	r := enginetest.Open(t, dir, engine.OpenOptions{CacheBytes: 2 * (64<<10 + 64)})
	d, err := r.OpenDisk(ctx, rp, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	size := int(d.Size())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			held, heldOff := new(engine.Span), -1
			for range 300 {
				off, n := rng.IntN(size), 1+rng.IntN(200<<10)
				s := new(engine.Span)
				err := d.ReadSpan(ctx, s, int64(off), n)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if got := bytes.Join(s.Bytes(), nil); !bytes.Equal(got, want[off:min(off+n, size)]) {
					errs <- fmt.Errorf("span at %d+%d differs from the image", off, n)
					return
				}
				// Keep every tenth span across the following reads.
				if heldOff >= 0 {
					if got := bytes.Join(held.Bytes(), nil); !bytes.Equal(got, want[heldOff:heldOff+len(got)]) {
						errs <- fmt.Errorf("a held span at %d changed under its holder", heldOff)
						return
					}
				}
				if rng.IntN(10) == 0 {
					held.Release()
					held, heldOff = s, off
					continue
				}
				s.Release()
			}
			held.Release()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestDataBytes: a disk's data bytes are its chunks that hold data, the
// last one cut at the disk's end; zero chunks count nothing.
func TestDataBytes(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	cs := int64(r.ChunkSize())
	img := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	// chunk 0: data; chunks 1 and 2: zero; chunk 3 (half a chunk): data.
	for _, off := range []int64{0, 3 * cs} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, int(cs/2)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rp, err := enginetest.ImportFiles(ctx, r, "vm", time.Unix(1e9, 0), img)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.DataBytes(ctx, &rp.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := cs + cs/2; got != want {
		t.Fatalf("DataBytes %d, want %d (one whole chunk and the half chunk at the end)", got, want)
	}
}
