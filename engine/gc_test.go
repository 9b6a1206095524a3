package engine_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

var gcOpts = engine.InitOptions{ChunkSize: 64 << 10, PackSize: 1 << 20, ShardSize: 16 << 10, ParityData: 4, ParityShards: 2}

// randomBytes returns n random (incompressible) bytes.
func randomBytes(t *testing.T, n int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 9))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// everyThirdChunk returns a copy of a with every third 64 KiB chunk
// replaced by fresh random bytes, so that whatever order the pack writer
// stores a's chunks in, each of its packs holds chunks b shares and chunks
// it does not.
func everyThirdChunk(a []byte, seed uint64) []byte {
	b := slices.Clone(a)
	r := rand.New(rand.NewPCG(seed, 3))
	for off := 0; off < len(b); off += 3 << 16 {
		for i := off; i < min(off+1<<16, len(b)); i++ {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

// dirBytes sums the sizes of the files under dir/sub.
func dirBytes(t *testing.T, dir, sub string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TestGCReclaimsWhatNoPointNeeds: three points, two of them forgotten; a
// dry run changes nothing; gc then deletes and rewrites packs, the kept
// point reads back byte-exact, verify --read-data passes, the packs take
// at most 10% more than a fresh repository holding only the kept point,
// and a second gc finds nothing to do.
func TestGCReclaimsWhatNoPointNeeds(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, gcOpts)
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	defer w.Close()
	a := randomBytes(t, 6<<20, 1)
	b := everyThirdChunk(a, 2) // shares two chunks in three with a: every pack of a is mixed
	c := randomBytes(t, 4<<20, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rps []*engine.RestorePoint
	for i, img := range [][]byte{a, b, c} {
		rp, err := enginetest.ImportFiles(ctx, w, "vm", t0.Add(time.Duration(i)*time.Hour), writeTemp(t, img))
		if err != nil {
			t.Fatal(err)
		}
		rps = append(rps, rp)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{rps[0], rps[2]}); err != nil {
		t.Fatal(err)
	}
	before := repoFiles(t, dir, "packs")
	dry, err := w.GC(ctx, engine.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.PacksDeleted == 0 || dry.ReclaimedBytes < 5<<20 || dry.UnusedBlobs != 32+64+2 {
		t.Fatalf("dry run: %+v; want packs to delete, at least 5 MiB to reclaim, and 98 unused blobs: a's own 32 chunks, c's 64, and their pages", dry)
	}
	if after := repoFiles(t, dir, "packs"); !slices.Equal(after, before) {
		t.Fatal("a dry run changed the packs")
	}
	rep, err := w.GC(ctx, engine.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != dry.PacksDeleted || rep.PacksRewritten != dry.PacksRewritten || rep.PacksRewritten == 0 {
		t.Fatalf("gc %+v after dry run %+v: want the same plan, with packs rewritten", rep, dry)
	}
	checkRestorePoints(t, w, map[string][][]byte{rps[1].Name(): {b}})
	v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !v.OK() {
		t.Fatalf("verify after gc: %+v %v", v, err)
	}

	fresh := enginetest.Init(t, gcOpts)
	fw := enginetest.Open(t, fresh, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(ctx, fw, "vm", t0, writeTemp(t, b)); err != nil {
		t.Fatal(err)
	}
	fw.Close()
	got, want := dirBytes(t, dir, "packs"), dirBytes(t, fresh, "packs")
	t.Logf("packs after gc: %d bytes; a fresh repository of the kept point: %d bytes", got, want)
	if float64(got) > 1.1*float64(want) {
		t.Fatalf("packs after gc: %d bytes, more than 10%% over a fresh repository's %d", got, want)
	}
	again, err := w.GC(ctx, engine.GCOptions{})
	if err != nil || again.PacksDeleted != 0 || again.PacksRewritten != 0 {
		t.Fatalf("a second gc: %+v %v, want nothing to do", again, err)
	}
}

// TestGCKeepsLockedPoints: a locked point cannot be forgotten, and after
// every other point that shared its chunks is forgotten and gc has run,
// it still reads back byte-exact.
func TestGCKeepsLockedPoints(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, gcOpts)
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	defer w.Close()
	a := randomBytes(t, 3<<20, 4)
	b := slices.Clone(a)
	copy(b[1<<20:], randomBytes(t, 1<<20, 5))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first, err := enginetest.ImportFiles(ctx, w, "vm", t0, writeTemp(t, a))
	if err != nil {
		t.Fatal(err)
	}
	second, err := enginetest.Import(ctx, w, engine.RestorePointSpec{VM: "vm", Time: t0.Add(time.Hour), Level: engine.LevelImport,
		LockUntil: time.Now().Add(time.Hour)}, writeTemp(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{second}); err == nil {
		t.Fatal("a locked point was forgotten")
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{first}); err != nil {
		t.Fatal(err)
	}
	rep, err := w.GC(ctx, engine.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted+rep.PacksRewritten == 0 {
		t.Fatalf("gc %+v: want the forgotten point's own chunks reclaimed", rep)
	}
	checkRestorePoints(t, w, map[string][][]byte{second.Name(): {b}})
	if v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true}); err != nil || !v.OK() {
		t.Fatalf("verify after gc: %+v %v", v, err)
	}
	// The reader path too, from a new process's view.
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	defer r.Close()
	rp, err := r.Resolve(ctx, second.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, rp, 0); !bytes.Equal(got, b) {
		t.Fatal("the locked point reads back wrong bytes through a reader")
	}
}

// TestGCWaitsForOldReaders: a reader holding an older checkpoint (a mount)
// keeps the packs it may read: gc leaves them in place and says so, and
// the reader still reads its point; the next gc deletes them.
func TestGCWaitsForOldReaders(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, gcOpts)
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	defer w.Close()
	a := randomBytes(t, 2<<20, 6)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old, err := enginetest.ImportFiles(ctx, w, "vm", t0, writeTemp(t, a))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enginetest.ImportFiles(ctx, w, "vm", t0.Add(time.Hour), writeTemp(t, randomBytes(t, 1<<20, 7))); err != nil {
		t.Fatal(err)
	}
	reader := enginetest.Open(t, dir, engine.OpenOptions{})
	defer reader.Close()
	if err := w.Forget(ctx, []*engine.RestorePoint{old}); err != nil {
		t.Fatal(err)
	}
	rep, err := w.GC(ctx, engine.GCOptions{ReaderWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksLeft == 0 {
		t.Fatalf("gc %+v deleted packs a reader of an older index may read", rep)
	}
	rp, err := reader.Resolve(ctx, old.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, reader, rp, 0); !bytes.Equal(got, a) {
		t.Fatal("the reader of the older index cannot read its point after gc")
	}
	reader.Close()
	w.Close()
	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	rep, err = w.GC(ctx, engine.GCOptions{})
	if err != nil || rep.PacksDeleted == 0 || rep.PacksLeft != 0 {
		t.Fatalf("the next gc: %+v %v, want the packs left before deleted", rep, err)
	}
	if v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true}); err != nil || !v.OK() {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// mixedPacks makes a repository of two restore points of one VM, an hour
// apart: old, 3 MiB of random bytes, and kept, the same with every third
// chunk changed (its bytes are b), so forgetting old leaves every pack of
// old's chunks a third unused. The writer w closes with the test.
func mixedPacks(t *testing.T, seed uint64) (dir string, w *engine.Repository, old, kept *engine.RestorePoint, b []byte) {
	t.Helper()
	ctx := context.Background()
	dir = enginetest.Init(t, gcOpts)
	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	t.Cleanup(func() { w.Close() })
	a := randomBytes(t, 3<<20, seed)
	b = everyThirdChunk(a, seed+1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old, err := enginetest.ImportFiles(ctx, w, "vm", t0, writeTemp(t, a))
	if err != nil {
		t.Fatal(err)
	}
	if kept, err = enginetest.ImportFiles(ctx, w, "vm", t0.Add(time.Hour), writeTemp(t, b)); err != nil {
		t.Fatal(err)
	}
	return dir, w, old, kept, b
}

// TestReaderFollowsBlobsGCMoved: a reader looked a blob up in an older
// index and then refreshed (so holds no older index), and gc deleted the
// pack the lookup named. The reader refreshes and finds the blob where gc
// moved it, instead of failing the read. (The test deletes the packs a
// reader-waiting gc left, as that gc would have once the reader let go.)
func TestReaderFollowsBlobsGCMoved(t *testing.T) {
	ctx := context.Background()
	dir, w, old, kept, b := mixedPacks(t, 8)
	reader := enginetest.Open(t, dir, engine.OpenOptions{})
	defer reader.Close()
	if err := w.Forget(ctx, []*engine.RestorePoint{old}); err != nil {
		t.Fatal(err)
	}
	rep, err := w.GC(ctx, engine.GCOptions{MaxUnused: 1e-9, ReaderWait: -1})
	if err != nil || rep.PacksRewritten == 0 || rep.PacksLeft == 0 {
		t.Fatalf("gc: %+v %v, want packs rewritten and left for the reader", rep, err)
	}
	indexed, err := engine.IndexedPacks(w)
	if err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	gone := 0
	for _, p := range packs {
		if !indexed[p] {
			gone++
			for _, f := range []string{p, strings.TrimSuffix(p, ".pack") + ".par"} {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if gone == 0 {
		t.Fatal("no pack left to delete")
	}
	rp, err := reader.Resolve(ctx, kept.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, reader, rp, 0); !bytes.Equal(got, b) {
		t.Fatal("the kept point reads back different")
	}
}

// TestGCRepairsWhatItKeeps: a referenced blob that gc must move out of a
// pack it replaces fails its CRC (a flipped bit): gc rebuilds it from
// parity instead of copying the damage, and the kept point reads back
// byte-exact from the new packs after the old one is gone.
func TestGCRepairsWhatItKeeps(t *testing.T) {
	ctx := context.Background()
	_, w, old, kept, b := mixedPacks(t, 11)
	if err := w.Forget(ctx, []*engine.RestorePoint{old}); err != nil {
		t.Fatal(err)
	}
	ids, err := w.ChunkIDs(ctx, &kept.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	pack, off, err := engine.BlobAt(w, ids[1]) // chunk 1 is shared with the forgotten point
	if err != nil {
		t.Fatal(err)
	}
	flipBit(t, pack, off+1000)
	rep, err := w.GC(ctx, engine.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksRewritten == 0 {
		t.Fatalf("gc %+v rewrote nothing", rep)
	}
	if _, err := os.Stat(pack); !os.IsNotExist(err) {
		t.Fatalf("the damaged old pack is still there (%v)", err)
	}
	checkRestorePoints(t, w, map[string][][]byte{kept.Name(): {b}})
	if v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true}); err != nil || !v.OK() {
		t.Fatalf("verify after gc: %+v %v", v, err)
	}
}
