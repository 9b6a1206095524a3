package engine_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestJobs: job records are written through a reader, listed in start
// order, survive an encrypted repository's sealing, show damage rather
// than hide it, and PruneJobs removes exactly the history older than the
// restore points kept.
func TestJobs(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{Password: []byte("pw")})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Password: []byte("pw")})
	img := enginetest.DataDisk(t, 1<<20, 3)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if _, err := enginetest.ImportFiles(ctx, w, "db01", t0.Add(time.Duration(i)*time.Hour), img); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enginetest.ImportFiles(ctx, w, "web01", t0.Add(2*time.Hour), img); err != nil {
		t.Fatal(err)
	}
	r := enginetest.Open(t, dir, engine.OpenOptions{Password: []byte("pw")})
	add := func(start time.Time, vms ...string) engine.Job {
		t.Helper()
		j := engine.Job{Kind: "backup", Policy: "gold", Start: start, End: start.Add(time.Minute), Result: engine.JobOK}
		for _, v := range vms {
			j.VMs = append(j.VMs, engine.JobVM{VM: v, Result: engine.JobOK})
		}
		j, err := r.AddJob(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	// Added out of order: the listing sorts by start.
	late := add(t0.Add(2*time.Hour-time.Minute), "db01", "web01") // ends with web01's first point
	early := add(t0.Add(-time.Hour), "db01")
	mid := add(t0.Add(30*time.Minute), "db01")
	sync := add(t0.Add(-2 * time.Hour))
	never := add(t0.Add(-time.Hour), "ghost")
	if _, err := r.AddJob(ctx, engine.Job{Kind: "backup"}); err == nil {
		t.Fatal("a job without start and result was recorded")
	}
	jobs, err := r.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	want := []string{sync.ID, early.ID, never.ID, mid.ID, late.ID}
	if len(ids) != 5 || ids[0] != want[0] || ids[1] != want[1] && ids[1] != want[2] || ids[3] != want[3] || ids[4] != want[4] {
		t.Fatalf("jobs %v, want start order %v", ids, want)
	}
	if jobs[4].Policy != "gold" || len(jobs[4].VMs) != 2 || !jobs[4].Start.Equal(late.Start) {
		t.Fatalf("job read back as %+v", jobs[4])
	}
	// The record is sealed: the VM name is not in the file.
	b, err := os.ReadFile(filepath.Join(dir, "records/job", late.ID+".rec"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("web01")) {
		t.Fatal("job record of an encrypted repository holds a VM name in clear")
	}
	// Damage is shown, with the start time the ID carries.
	bad := filepath.Join(dir, "records/job", mid.ID+".rec")
	orig, _ := os.ReadFile(bad)
	b = append([]byte{}, orig...)
	b[len(b)/2] ^= 1
	os.WriteFile(bad, b, 0o644)
	jobs, err = r.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if jobs[3].Result != engine.JobDamaged || jobs[3].Error == "" || !jobs[3].Start.Equal(mid.Start) {
		t.Fatalf("damaged record listed as %+v", jobs[3])
	}
	os.WriteFile(bad, orig, 0o644)

	// Oldest points: db01 at t0, web01 at t0+2h. early (db01, ends before
	// t0) and sync (no VM, before t0) go; mid (db01, after t0) stays; late
	// names web01, whose oldest point is after its end... it ends at
	// t0+2h, not before: stays. ghost has no point: kept until OrphanJobAge.
	n, err := r.PruneJobs(ctx, t0.Add(24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneJobs removed %d (%v), want 2", n, err)
	}
	left := map[string]bool{}
	jobs, _ = r.Jobs(ctx)
	for _, j := range jobs {
		left[j.ID] = true
	}
	if left[early.ID] || left[sync.ID] || !left[mid.ID] || !left[late.ID] || !left[never.ID] {
		t.Fatalf("after PruneJobs: %v", left)
	}
	if n, err := r.PruneJobs(ctx, t0.Add(engine.OrphanJobAge)); err != nil || n != 1 {
		t.Fatalf("PruneJobs after OrphanJobAge removed %d (%v), want the ghost's job", n, err)
	}
}
