package clusterjob_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// xenPool starts a simulated pool with one VM, xen01, and connects to it.
func xenPool(t *testing.T) (*xapisim.Sim, *xapi.Client, xapi.VM) {
	t.Helper()
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01", DiskSizes: []int64{1 << 20}}}})
	ctx := context.Background()
	xc, err := xapi.Connect(ctx, xapi.Options{URL: s.URL(), User: s.User(), Password: s.Password(), CAFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close(ctx) })
	vms, err := xc.VMsByName(ctx, "xen01")
	if err != nil || len(vms) != 1 {
		t.Fatalf("VM xen01: %v %v", vms, err)
	}
	return s, xc, vms[0]
}

// TestXenSnapshotAfterCancel: xapi goes on with a VM.snapshot past the
// task.cancel a cancelled job sends, and the snapshot appears after the
// job gave up on it. The job journaled the task as xapi accepted the
// call; its teardown waits for that task before it looks the name up,
// and destroys the snapshot: the pool keeps none, the journal is empty.
func TestXenSnapshotAfterCancel(t *testing.T) {
	s, xc, vm := xenPool(t)
	bg := context.Background()
	j := openJournal(t)
	jb, err := j.BeginXen(bg, "test", xc, clusterjob.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gate := s.Hold("VM.snapshot")
	ctx, cancel := context.WithCancel(bg)
	go func() {
		// Cancel once the task is journaled (the call has returned it),
		// and let the snapshot happen once the job has given up on it
		// (its task.cancel arrived).
		defer gate.Release()
		for deadline := time.Now().Add(30 * time.Second); !journalNamesTask(j.Dir()) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		cancel()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if slices.ContainsFunc(s.Inventory().Tasks, func(t xapisim.TaskObject) bool { return t.Status == "cancelling" }) {
				return
			}
		}
	}()
	_, _, err = jb.CreateXenSnapshot(ctx, vm, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("snapshot: %v, want the cancel", err)
	}
	if err := jb.Close(bg); err != nil {
		t.Fatal(err)
	}
	inv, err := xapisimtest.Inventory(bg, xapisimtest.RemoteOf(s))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range inv.VMs {
		if v.IsSnapshot {
			t.Errorf("snapshot %s (%s) left on the pool", v.Name, v.UUID)
		}
	}
	for _, d := range inv.VDIs {
		if d.IsSnapshot {
			t.Errorf("snapshot VDI %s left on the pool", d.UUID)
		}
	}
	if pending, _ := j.Pending(); len(pending) != 0 {
		t.Fatalf("journal: %v", pending)
	}
}

// TestSweepXenKnowsThePoolByUUID: a dead job recorded through another
// address of this pool (its master changed, say) is swept here, because
// its pool UUID is this pool's; a dead job of another pool is left alone
// even when recorded through this very address.
func TestSweepXenKnowsThePoolByUUID(t *testing.T) {
	s, xc, vm := xenPool(t)
	ctx := context.Background()
	pool, err := xc.PoolUUID(ctx)
	if err != nil || pool == "" {
		t.Fatalf("pool UUID %q: %v", pool, err)
	}
	j := openJournal(t)
	// deadJob leaves a dead job of the pool named by uuid, recorded
	// through endpoint, whose entry names a snapshot of xen01 (made when
	// make is set).
	deadJob := func(endpoint, uuid, name string, make bool) {
		t.Helper()
		if make {
			if _, err := xc.Snapshot(ctx, vm.Ref, name); err != nil {
				t.Fatal(err)
			}
		}
		o := clusterjob.Object{Kind: clusterjob.KindSnapshot, Name: name, VMUUID: vm.UUID, VM: "xen01", API: clusterjob.APIXen}
		if err := clusterjob.LeaveDeadXenJob(j, endpoint, uuid, o); err != nil {
			t.Fatal(err)
		}
	}
	deadJob("https://old-master.invalid:443", pool, "ahvfs-xen01-moved-master", true)
	deadJob(s.URL(), "0f0f0f0f-0000-4000-8000-000000000000", "ahvfs-xen01-other-pool", false)
	rep, err := clusterjob.SweepXen(ctx, j, xc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 1 || !strings.Contains(rep.Deleted[0], "moved-master") {
		t.Fatalf("deleted %v, want the snapshot recorded through the old master", rep.Deleted)
	}
	if len(rep.Elsewhere) != 1 || !strings.Contains(rep.Elsewhere[0], "0f0f0f0f") {
		t.Fatalf("left elsewhere %v, want the other pool's job", rep.Elsewhere)
	}
	if snaps, _ := xc.VMsByName(ctx, "ahvfs-xen01-moved-master"); len(snaps) != 0 {
		t.Fatalf("the old master's job's snapshot is still there: %v", snaps)
	}
}
