package engine_test

import (
	"bytes"
	"context"
	"io"
	"os"
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
