package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// chainRepo fills dir with three VMs (one with a full and an incremental
// restore point sharing chunks, one with two disks, a VM configuration and
// a retention lock, one whose name holds '/' and '@') and returns every
// restore point with its disks' bytes.
func chainRepo(t *testing.T, dir string, password []byte) map[string][][]byte {
	t.Helper()
	ctx := context.Background()
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Password: password})
	defer r.Close()
	want := map[string][][]byte{}
	t0 := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	a := enginetest.DataDisk(t, 6<<20, 1)
	full, err := enginetest.Import(ctx, r, engine.RestorePointSpec{VM: "web01", VMUUID: "vm-uuid-web01", Time: t0, Level: engine.LevelFull}, a)
	if err != nil {
		t.Fatal(err)
	}
	want[full.Name()] = [][]byte{readFile(t, a)}
	a2 := readFile(t, a)
	copy(a2[1<<20:], bytes.Repeat([]byte("changed "), 1<<15))
	incr, err := enginetest.Import(ctx, r, engine.RestorePointSpec{VM: "web01", VMUUID: "vm-uuid-web01", Time: t0.Add(time.Hour),
		Level: engine.LevelIncremental, Parent: full.ID}, writeTemp(t, a2))
	if err != nil {
		t.Fatal(err)
	}
	want[incr.Name()] = [][]byte{a2}
	b0, b1 := enginetest.DataDisk(t, 3<<20, 2), enginetest.DataDisk(t, 1<<20, 3)
	cfg := json.RawMessage(`{"version":1,"name":"db02","description":"payroll ledger","disks":[{"disk":0,"uuid":"disk-uuid-db02-0"}]}`)
	db, err := enginetest.Import(ctx, r, engine.RestorePointSpec{VM: "db02", VMUUID: "vm-uuid-db02", Time: t0, Level: engine.LevelFull,
		Consistency: "app", Config: cfg, Meta: map[string]string{"job": "nightly"}, LockUntil: time.Now().AddDate(10, 0, 0)}, b0, b1)
	if err != nil {
		t.Fatal(err)
	}
	want[db.Name()] = [][]byte{readFile(t, b0), readFile(t, b1)}
	odd, err := enginetest.ImportFiles(ctx, r, "x/y@z", t0.Add(2*time.Hour), b1)
	if err != nil {
		t.Fatal(err)
	}
	want[odd.Name()] = [][]byte{readFile(t, b1)}
	return want
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkRestorePoints asserts that r lists exactly the restore points of
// want and that every disk reads back byte-exact.
func checkRestorePoints(t *testing.T, r *engine.Repository, want map[string][][]byte) []*engine.RestorePoint {
	t.Helper()
	ctx := context.Background()
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, rp := range rps {
		names = append(names, rp.Name())
		disks, ok := want[rp.Name()]
		if !ok {
			t.Errorf("unexpected restore point %s", rp.Name())
			continue
		}
		if len(rp.Disks) != len(disks) {
			t.Errorf("%s: %d disks, want %d", rp.Name(), len(rp.Disks), len(disks))
			continue
		}
		for i := range disks {
			if got := readAll(t, r, rp, i); !bytes.Equal(got, disks[i]) {
				t.Errorf("%s disk-%d: wrong bytes", rp.Name(), i)
			}
		}
		again, err := r.Resolve(ctx, rp.Name())
		if err != nil || again.ID != rp.ID {
			t.Errorf("resolve %s: %v", rp.Name(), err)
		}
	}
	if len(names) != len(want) {
		t.Fatalf("restore points %v, want %d: %v", names, len(want), slices.Collect(mapKeys(want)))
	}
	return rps
}

// sameRestorePoints asserts that got and want hold the same restore
// points, field for field, in any order.
func sameRestorePoints(t *testing.T, got, want []*engine.RestorePoint) {
	t.Helper()
	byID := map[string][]byte{}
	locks := map[string]time.Time{}
	for _, rp := range want {
		byID[rp.ID], _ = json.Marshal(rp)
		locks[rp.ID] = rp.LockedUntil
	}
	for _, rp := range got {
		b, _ := json.Marshal(rp)
		if !bytes.Equal(b, byID[rp.ID]) {
			t.Errorf("restore point\n%s\nwant\n%s", b, byID[rp.ID])
		}
		if !rp.LockedUntil.Equal(locks[rp.ID]) {
			t.Errorf("restore point %s locked until %v, want %v", rp.Name(), rp.LockedUntil, locks[rp.ID])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d restore points, want %d", len(got), len(want))
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestRepairIndexRebuildsEverything deletes the index and the published
// checkpoints of repositories with several VMs, an incremental chain, a VM
// configuration and a locked point, plain and encrypted: writers and
// readers refuse with a message naming 'ahvfs repair index', and
// RepairIndex brings back every restore point with the same ID, time,
// level, configuration and lock, reading back byte-exact, and keeps every
// pack.
func TestRepairIndexRebuildsEverything(t *testing.T) {
	ctx := context.Background()
	for _, pw := range [][]byte{nil, []byte("secret")} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[pw != nil], func(t *testing.T) {
			dir := enginetest.Init(t, engine.InitOptions{Password: pw, KDF: engine.KDFParams{Time: 1, MemoryK: 1024, Threads: 1}})
			want := chainRepo(t, dir, pw)
			r := enginetest.Open(t, dir, engine.OpenOptions{Password: pw})
			before, err := r.ListRestorePoints(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			if !slices.ContainsFunc(before, func(rp *engine.RestorePoint) bool { return !rp.LockedUntil.IsZero() }) {
				t.Fatal("no restore point of the repository is locked")
			}
			packs := repoFiles(t, dir, "packs")

			for _, sub := range []string{"index", "snapshots"} {
				if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range []engine.OpenOptions{{Writable: true, Password: pw}, {Password: pw}} {
				if _, err := engine.Open(ctx, dir, o); err == nil || !strings.Contains(err.Error(), "repair index") {
					t.Fatalf("open (writable %v) without an index: %v, want advice to run 'ahvfs repair index'", o.Writable, err)
				}
			}
			rep, err := engine.RepairIndex(ctx, dir, engine.OpenOptions{Password: pw}, engine.RepairOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.RestorePoints != len(want) || rep.Packs != len(packs)/2 || len(rep.Problems) > 0 {
				t.Fatalf("repair report %+v, want %d restore points, %d packs, no problems", rep, len(want), len(packs)/2)
			}
			if after := repoFiles(t, dir, "packs"); !slices.Equal(after, packs) {
				t.Fatalf("packs changed by the repair:\nbefore %v\nafter  %v", packs, after)
			}
			r = enginetest.Open(t, dir, engine.OpenOptions{Password: pw})
			sameRestorePoints(t, checkRestorePoints(t, r, want), before)
			v, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
			if err != nil || !v.OK() {
				t.Fatalf("verify after repair: %+v %v", v, err)
			}
			r.Close()
		})
	}
}

// TestWALBitFlipKeepsRestorePoint is the repro: one bit flipped in
// the write-ahead-log record that committed a restore point. Pebble stops
// replaying there and the index loses it; the next writer finds its record
// file, indexes it again and says so, and every pack stays. (A writer
// flushes its index when it publishes, so the commit is in the log only
// when the writer died between committing and publishing: the import runs
// in a child killed there.)
func TestWALBitFlipKeepsRestorePoint(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, crashOpts)
	img := enginetest.DataDisk(t, 3<<20, 21)
	want := readFile(t, img)
	if err := crashChildAt(t, "import", dir, img, faultStep{engine.FaultRPIndexed, 1}); err != nil {
		t.Fatal(err)
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "records", "rp", "*.rec"))
	if len(recs) != 1 {
		t.Fatalf("%d record files, want 1", len(recs))
	}
	rp := &engine.RestorePoint{ID: strings.TrimSuffix(filepath.Base(recs[0]), ".rec"), VM: "new", Time: time.Unix(2e9, 0).UTC()}
	before := repoFiles(t, dir, "packs")
	// Until a writer opens, readers do not see it, and verify says it is
	// pending, not damaged.
	rd := enginetest.Open(t, dir, engine.OpenOptions{})
	v, err := rd.Verify(ctx, engine.VerifyOptions{})
	rd.Close()
	if err != nil || !v.OK() || len(v.Pending) != 1 || !strings.Contains(v.Pending[0], rp.Name()) {
		t.Fatalf("verify before a writer: %+v %v, want OK with %s pending", v, err, rp.Name())
	}

	wal, num := newestWAL(t, dir)
	start, end := walRecordWith(t, wal, num, []byte(rp.ID))
	flipBit(t, wal, (start+end)/2)

	var log enginetest.LogBuffer
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Logger: log.Logger()})
	defer r.Close()
	if !strings.Contains(log.String(), "restore point "+rp.Name()+" was missing from the index") {
		t.Fatalf("the flip did not lose the restore point, or it was not indexed again: log:\n%s", log.String())
	}
	if after := repoFiles(t, dir, "packs"); !slices.Equal(after, before) {
		t.Fatalf("pack files changed:\nbefore %v\nafter  %v", before, after)
	}
	got, err := r.Resolve(ctx, rp.Name())
	if err != nil || got.ID != rp.ID {
		t.Fatalf("resolve %s after the flip: %v", rp.Name(), err)
	}
	if b := readAll(t, r, got, 0); !bytes.Equal(b, want) {
		t.Fatal("the restore point reads back wrong bytes")
	}
	v, err = r.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !v.OK() || len(v.Pending) > 0 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	// A reader sees it too: the writer published what it re-indexed.
	rd = enginetest.Open(t, dir, engine.OpenOptions{})
	defer rd.Close()
	if _, err := rd.Resolve(ctx, rp.Name()); err != nil {
		t.Fatalf("reader: %v", err)
	}
}

// walRecordWith returns the byte range of the first WAL record whose
// payload contains needle.
func walRecordWith(t *testing.T, path string, num uint64, needle []byte) (int64, int64) {
	t.Helper()
	for _, r := range walRecords(t, path, num) {
		if bytes.Contains(r.payload, needle) {
			return r.start, r.end
		}
	}
	t.Fatalf("no record of %s holds %q", path, needle)
	return 0, 0
}

// TestRecordFilesAndIndexDrift: a record file lost is written again by the
// next writer from the index; verify reports a record file the index lacks
// and a damaged one; the writer indexes the first and quarantines the
// second when the index does not hold it.
func TestRecordFilesAndIndexDrift(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	want := chainRepo(t, dir, nil)
	recs, _ := filepath.Glob(filepath.Join(dir, "records", "rp", "*.rec"))
	if len(recs) != len(want) {
		t.Fatalf("%d record files, want %d", len(recs), len(want))
	}
	// Lose one file: verify says so; a writer writes it again.
	lost := recs[0]
	saved := readFile(t, lost)
	os.Remove(lost)
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	v, err := r.Verify(ctx, engine.VerifyOptions{})
	r.Close()
	if err != nil || v.OK() || !strings.Contains(strings.Join(v.Problems, "\n"), "is missing") {
		t.Fatalf("verify with a record file missing: %+v %v", v, err)
	}
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	w.Close()
	if !bytes.Equal(readFile(t, lost), saved) {
		t.Fatal("the record file written again differs from the original")
	}
	// Damage one: verify names it; the writer leaves it (the index holds
	// the restore point) and verify keeps naming it.
	flipBit(t, recs[1], 40)
	r = enginetest.Open(t, dir, engine.OpenOptions{})
	v, _ = r.Verify(ctx, engine.VerifyOptions{})
	if v.OK() || !strings.Contains(strings.Join(v.Problems, "\n"), filepath.Base(recs[1])) {
		t.Fatalf("verify with a damaged record file: %+v", v)
	}
	checkRestorePoints(t, r, want)
	r.Close()
}

// TestEncryptedRepositoryHidesMetadata: in an encrypted repository no file
// holds a VM name, a disk UUID or a word of the VM configuration, in the
// packs, the record files, the index or its checkpoints.
func TestEncryptedRepositoryHidesMetadata(t *testing.T) {
	dir := enginetest.Init(t, engine.InitOptions{Password: []byte("pw"), KDF: engine.KDFParams{Time: 1, MemoryK: 1024, Threads: 1}})
	chainRepo(t, dir, []byte("pw"))
	assertNoPlaintext(t, dir, "web01", "db02", "x/y@z", "vm-uuid-db02", "disk-uuid-db02-0", "payroll", "nightly")
}

func assertNoPlaintext(t *testing.T, dir string, words ...string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		for _, w := range words {
			if bytes.Contains(b, []byte(w)) {
				t.Errorf("%s holds %q in plaintext", strings.TrimPrefix(path, dir), w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d files checked", n)
	}
}

// TestRepairIndexSwapKilled: a repair killed after its new index was
// complete but before the swap is finished by the next writer; one killed
// while building leaves the old index in use.
func TestRepairIndexSwapKilled(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	want := chainRepo(t, dir, nil)
	// Make a complete rebuilt index as index.ready (a copy of one), with
	// index/ gone: the state after the first rename of the swap.
	if _, err := engine.RepairIndex(ctx, dir, engine.OpenOptions{}, engine.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "index"), filepath.Join(dir, "index.ready")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "index.rebuild"), 0o700)
	os.WriteFile(filepath.Join(dir, "index.rebuild", "000001.log"), []byte("half"), 0o600)
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	checkRestorePoints(t, r, want)
	r.Close()
	for _, left := range []string{"index.ready", "index.rebuild", "index.old"} {
		if _, err := os.Stat(filepath.Join(dir, left)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", left, err)
		}
	}
}
