// Package enginetest holds helpers for tests of engine and of the packages
// built on it: a small repository in a temp dir, real disk images, and
// import of a file as a restore point.
package enginetest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// Init creates a repository in a temp dir with small packs (so tests see
// many) and returns its directory.
func Init(t testing.TB, o engine.InitOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if o.PackSize == 0 {
		o.PackSize = 4 << 20
	}
	if o.ShardSize == 0 {
		o.ShardSize = 64 << 10
	}
	if o.Password != nil && o.KDF.MemoryK == 0 {
		o.KDF = engine.KDFParams{Time: 1, MemoryK: 8 << 10, Threads: 1}
	}
	if _, err := engine.Init(context.Background(), dir, o); err != nil {
		t.Fatalf("init: %v", err)
	}
	return dir
}

// Open opens dir and closes it at cleanup.
func Open(t testing.TB, dir string, o engine.OpenOptions) *engine.Repository {
	t.Helper()
	r, err := engine.Open(context.Background(), dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var (
	imgMu    sync.Mutex
	imgCache = map[string]string{}
	imgDir   string
)

// Ext4Image returns the path of a bare ext4 image of size bytes filled with
// real files (seed varies which), built once per test binary. Callers must
// not modify it; copy it first.
func Ext4Image(t testing.TB, size int64, seed uint64) string {
	t.Helper()
	testenv.Commands(t, "mkfs.ext4")
	imgMu.Lock()
	defer imgMu.Unlock()
	key := filepath.Join("ext4", string(rune('a'+seed%26)), time.Duration(size).String())
	if p, ok := imgCache[key]; ok {
		return p
	}
	if imgDir == "" {
		d, err := os.MkdirTemp("", "ahvfs-images-*")
		if err != nil {
			t.Fatal(err)
		}
		imgDir = d
	}
	tree := filepath.Join(imgDir, "tree-"+filepath.Base(key)+"-"+string(rune('a'+seed%26)))
	if _, err := mkimage.Tree(context.Background(), tree, size*7/10, mkimage.TreeOptions{Seed: seed, Symlinks: true}); err != nil {
		t.Fatalf("mkimage tree: %v", err)
	}
	p := tree + ".raw"
	if err := mkimage.Build(context.Background(), p, mkimage.Spec{Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: size, Dir: tree}}}); err != nil {
		t.Fatalf("mkimage: %v", err)
	}
	os.RemoveAll(tree)
	imgCache[key] = p
	return p
}

// Cleanup removes the images built by this test binary (call from TestMain).
func Cleanup() {
	imgMu.Lock()
	defer imgMu.Unlock()
	if imgDir != "" {
		os.RemoveAll(imgDir)
	}
}

// ImportFiles stores the files as one restore point of vm (disk-0, disk-1,
// ...) and returns it.
func ImportFiles(ctx context.Context, r *engine.Repository, vm string, when time.Time, files ...string) (*engine.RestorePoint, error) {
	return Import(ctx, r, engine.RestorePointSpec{VM: vm, Time: when, Level: engine.LevelImport}, files...)
}

// Import stores the files as the disks of one restore point of spec
// (disk-N on scsi.N) and returns it.
func Import(ctx context.Context, r *engine.Repository, spec engine.RestorePointSpec, files ...string) (*engine.RestorePoint, error) {
	w, err := r.NewRestorePoint(ctx, spec)
	if err != nil {
		return nil, err
	}
	for i, name := range files {
		f, err := os.Open(name)
		if err != nil {
			w.Abort()
			return nil, err
		}
		st, _ := f.Stat()
		d, err := w.AddDisk(engine.DiskSpec{Index: i, Size: st.Size(), Bus: "scsi", BusIndex: i})
		if err == nil {
			var plan cbt.Plan
			if plan, err = cbt.FilePlan(f, st.Size(), r.ChunkSize()); err == nil {
				_, err = cbt.Ingest(ctx, f, plan, d, cbt.Options{})
			}
		}
		f.Close()
		if err != nil {
			w.Abort()
			return nil, err
		}
	}
	return w.Commit(ctx)
}

// ImportVM stores files as one full restore point of vm (UUID
// 0e1b7c3a-1111-4222-8333-444455556666, 2026-11-22T01:30:00Z) with the
// VM configuration cfg (marshalled to JSON; nil: none) in a fresh
// repository, and returns the repository, opened read-only, and the
// restore point.
func ImportVM(t testing.TB, vm string, cfg any, files ...string) (*engine.Repository, *engine.RestorePoint) {
	t.Helper()
	dir := Init(t, engine.InitOptions{})
	ctx := context.Background()
	w := Open(t, dir, engine.OpenOptions{Writable: true})
	var raw json.RawMessage
	if cfg != nil {
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		raw = b
	}
	if _, err := Import(ctx, w, engine.RestorePointSpec{VM: vm, VMUUID: "0e1b7c3a-1111-4222-8333-444455556666",
		Time: time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC), Level: engine.LevelFull, Config: raw}, files...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r := Open(t, dir, engine.OpenOptions{})
	rp, err := r.Resolve(ctx, vm+"@latest")
	if err != nil {
		t.Fatal(err)
	}
	return r, rp
}

// DataDisk writes a size-byte image: random data in a few places, zeros
// elsewhere (so zero chunks are exercised), and returns its path.
func DataDisk(t testing.TB, size int64, seed uint64) string {
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
