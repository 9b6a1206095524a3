package restore_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

// dataDisk writes a size-byte image: random data in a few places, zeros
// elsewhere (so zero chunks are exercised), and returns its path.
func dataDisk(t testing.TB, size int64, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	buf := make([]byte, 3<<20+12345)
	for off := int64(0); off+int64(len(buf)) <= size; off += size / 4 {
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(buf, off+4096); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// copyFile copies src to a fresh temp file (images from enginetest must
// not be modified).
func copyFile(t testing.TB, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// importVM stores files as one restore point of vm with the configuration
// cfg (marshalled to JSON; nil: none) in a fresh repository.
func importVM(t testing.TB, vm string, cfg any, files ...string) (*engine.Repository, *engine.RestorePoint) {
	t.Helper()
	dir := enginetest.Init(t, engine.InitOptions{})
	ctx := context.Background()
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	var raw json.RawMessage
	if cfg != nil {
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		raw = b
	}
	rpw, err := w.NewRestorePoint(ctx, engine.RestorePointSpec{VM: vm, VMUUID: "0e1b7c3a-1111-4222-8333-444455556666",
		Time: time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC), Level: engine.LevelFull, Config: raw})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		d, err := rpw.AddDisk(engine.DiskSpec{Index: i, Size: st.Size(), Bus: "scsi", BusIndex: i})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := cbt.FilePlan(f, st.Size(), w.ChunkSize())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cbt.Ingest(ctx, f, plan, d, cbt.Options{}); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, err := rpw.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	rp, err := r.Resolve(ctx, vm+"@latest")
	if err != nil {
		t.Fatal(err)
	}
	return r, rp
}
