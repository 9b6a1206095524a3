package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestForgetKeepsChildrenAndStaysGone forgets the full restore point an
// incremental was taken against, and a VM's only point: the incremental
// still reads back byte-exact (every point is self-contained), the
// forgotten ones are gone from the list, their record files are gone, the
// VM without points is gone from the VM list, a writer opening later does
// not bring them back, and verify passes.
func TestForgetKeepsChildrenAndStaysGone(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	want := chainRepo(t, dir, nil)
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	var gone []*engine.RestorePoint
	for _, name := range []string{"web01@2026-11-30T01:00:00Z", "x/y@z@2026-11-30T03:00:00Z"} {
		rp, err := w.Resolve(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		gone = append(gone, rp)
		delete(want, name)
	}
	if err := w.Forget(ctx, gone); err != nil {
		t.Fatal(err)
	}
	checkRestorePoints(t, w, want)
	vms, err := w.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if vm.Name == "x/y@z" {
			t.Fatalf("VM x/y@z is still listed with %d restore points", vm.RestorePoints)
		}
	}
	for _, rp := range gone {
		if _, err := os.Stat(filepath.Join(dir, "records", "rp", rp.ID+".rec")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("record file of %s: %v, want it deleted", rp.Name(), err)
		}
	}
	if files := repoFiles(t, dir, "records/forget"); len(files) != 0 {
		t.Fatalf("tombstones left: %v", files)
	}
	w.Close()

	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	checkRestorePoints(t, w, want)
	v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !v.OK() || len(v.Pending) > 0 {
		t.Fatalf("verify after forget: %+v %v", v, err)
	}
	w.Close()
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	defer r.Close()
	checkRestorePoints(t, r, want)
}

// TestRetentionLocks: a point committed with a lock, or locked later,
// cannot be forgotten (and a forget naming it removes nothing), a lock
// cannot be shortened or set in the past, a lock file removed by hand is
// written again, and a rebuilt index keeps every lock.
func TestRetentionLocks(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	img := enginetest.DataDisk(t, 1<<20, 7)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	until := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	locked, err := enginetest.Import(ctx, w, engine.RestorePointSpec{VM: "db01", Time: t0, Level: engine.LevelImport, LockUntil: until}, img)
	if err != nil {
		t.Fatal(err)
	}
	if !locked.LockedUntil.Equal(until) {
		t.Fatalf("committed with lock until %v, LockedUntil %v", until, locked.LockedUntil)
	}
	free, err := enginetest.ImportFiles(ctx, w, "db01", t0.Add(time.Hour), img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enginetest.Import(ctx, w, engine.RestorePointSpec{VM: "db01", Time: t0.Add(2 * time.Hour), LockUntil: time.Now().Add(-time.Hour)}, img); err == nil {
		t.Fatal("a restore point committed with a lock in the past")
	}

	err = w.Forget(ctx, []*engine.RestorePoint{free, locked})
	if !errors.Is(err, engine.ErrRetentionLocked) || !strings.Contains(err.Error(), locked.Name()) || !strings.Contains(err.Error(), engine.FormatTime(until)) {
		t.Fatalf("forget of a locked point: %v, want ErrRetentionLocked naming %s and its lock", err, locked.Name())
	}
	if rps, _ := w.ListRestorePoints(ctx, "db01"); len(rps) != 2 {
		t.Fatalf("a refused forget removed something: %d restore points left", len(rps))
	}

	// Locks only grow.
	if err := w.LockRestorePoint(ctx, locked, until.Add(-time.Hour)); !errors.Is(err, engine.ErrRetentionLocked) {
		t.Fatalf("shorter lock: %v, want ErrRetentionLocked", err)
	}
	if err := w.LockRestorePoint(ctx, free, time.Now().Add(-time.Minute)); err == nil {
		t.Fatal("a lock in the past was accepted")
	}
	if err := w.LockRestorePoint(ctx, locked, until); err != nil {
		t.Fatalf("the same lock again: %v", err)
	}
	longer := until.Add(24 * time.Hour)
	if err := w.LockRestorePoint(ctx, locked, longer); err != nil {
		t.Fatal(err)
	}
	if err := w.LockRestorePoint(ctx, free, until); err != nil {
		t.Fatal(err)
	}
	w.Close()

	// Removing the lock files by hand unlocks nothing.
	locks := repoFiles(t, dir, "records/lock")
	if len(locks) != 3 {
		t.Fatalf("lock files %v, want 3", locks)
	}
	for _, f := range locks {
		os.Remove(filepath.Join(dir, f))
	}
	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if again := repoFiles(t, dir, "records/lock"); len(again) != 3 {
		t.Fatalf("lock files after the writer opened: %v, want 3 written again", again)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{free}); !errors.Is(err, engine.ErrRetentionLocked) {
		t.Fatalf("forget after the lock files were removed: %v, want ErrRetentionLocked", err)
	}
	if err := w.LockRestorePoint(ctx, free, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Fatal("a lock past the last time a record can hold was accepted")
	}
	w.Close()

	// A tombstone made by hand (empty, or not sealed for this repository)
	// removes nothing, and neither does one naming a locked point.
	os.MkdirAll(filepath.Join(dir, "records", "forget"), 0o700)
	for _, id := range []string{free.ID, locked.ID} {
		if err := os.WriteFile(filepath.Join(dir, "records", "forget", id+".rec"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if rps, err := w.ListRestorePoints(ctx, "db01"); err != nil || len(rps) != 2 {
		t.Fatalf("after forged tombstones: %d restore points (%v), want 2", len(rps), err)
	}
	if left := repoFiles(t, dir, "records/forget"); len(left) != 0 {
		t.Fatalf("forged tombstones left in place: %v", left)
	}
	w.Close()

	// Nor does a rebuild of the index lose a lock whose file is gone: it
	// writes the file again from the old index before it replaces it.
	for _, f := range repoFiles(t, dir, "records/lock") {
		os.Remove(filepath.Join(dir, f))
	}
	if _, err := engine.RepairIndex(ctx, dir, engine.OpenOptions{}, engine.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	if again := repoFiles(t, dir, "records/lock"); len(again) != 3 {
		t.Fatalf("lock files after repair index: %v, want 3 written again", again)
	}

	// A rebuilt index has every lock.
	for _, sub := range []string{"index", "snapshots"} {
		os.RemoveAll(filepath.Join(dir, sub))
	}
	if _, err := engine.RepairIndex(ctx, dir, engine.OpenOptions{}, engine.RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	defer r.Close()
	rps, err := r.ListRestorePoints(ctx, "db01")
	if err != nil || len(rps) != 2 {
		t.Fatalf("after repair: %d restore points, %v", len(rps), err)
	}
	for _, rp := range rps {
		want := until
		if rp.ID == locked.ID {
			want = longer
		}
		if !rp.LockedUntil.Equal(want) {
			t.Errorf("%s locked until %v after repair, want %v", rp.Name(), rp.LockedUntil, want)
		}
	}
}

// TestForgetAfterLockExpires: an expired lock no longer protects its
// point, and goes with it.
func TestForgetAfterLockExpires(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	defer w.Close()
	img := enginetest.DataDisk(t, 1<<20, 8)
	rp, err := enginetest.Import(ctx, w, engine.RestorePointSpec{VM: "app", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		LockUntil: time.Now().Add(2 * time.Second)}, img)
	if err != nil {
		t.Fatal(err)
	}
	// (TestRetentionLocks checks the refusal under a lock; this one runs
	// no clock race: it only waits for the lock to end.)
	time.Sleep(time.Until(rp.LockedUntil) + 10*time.Millisecond)
	if err := w.Forget(ctx, []*engine.RestorePoint{rp}); err != nil {
		t.Fatalf("forget once the lock expired: %v", err)
	}
	if files := repoFiles(t, dir, "records"); len(files) != 0 {
		t.Fatalf("files left under records/: %v", files)
	}
}
