package clusterjob_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// TestXenSnapshotAfterCancel: xapi goes on with a VM.snapshot past the
// task.cancel a cancelled job sends, and the snapshot appears after the
// job gave up on it. The job journaled the task as xapi accepted the
// call; its teardown waits for that task before it looks the name up,
// and destroys the snapshot: the pool keeps none, the journal is empty.
func TestXenSnapshotAfterCancel(t *testing.T) {
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01", DiskSizes: []int64{1 << 20}}}})
	bg := context.Background()
	xc, err := xapi.Connect(bg, xapi.Options{URL: s.URL(), User: s.User(), Password: s.Password(), CAFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close(bg) })
	vms, err := xc.VMsByName(bg, "xen01")
	if err != nil || len(vms) != 1 {
		t.Fatalf("VM xen01: %v %v", vms, err)
	}
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
	_, _, err = jb.CreateXenSnapshot(ctx, vms[0], false)
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
