package clusterjob_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestExternalRepositoryHeldByVM: a job whose VM could not be deleted
// keeps its external repository in the journal (the VM may read from
// it); once the VM goes, the sweep deletes both and reports the
// repository deleted. A repository already gone is reported absent,
// never deleted.
func TestExternalRepositoryHeldByVM(t *testing.T) {
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{V4Revisions: []string{"v4.0", "v4.1", "v4.2"}}})
	j := openJournal(t)
	cl, err := nutanix.Connect(context.Background(), clientOptions(s.URL(), s.CAFile(), s.PasswordFile(), nutanix.APIV4))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	jb, err := j.Begin("restore", cl, clusterjob.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo, _, err := jb.CreateExternalRepository(ctx, nutanix.ExternalRepository{Name: jb.Name("nfs", "test"), ExportName: "/", Host: "127.0.0.1", Port: 2049})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := jb.CreateVM(ctx, nutanix.VMSpec{Name: "held", MemoryBytes: 1 << 30, Disks: []nutanix.DiskSpec{{SizeBytes: 1 << 20}}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFaults(prismsim.Faults{FailTasks: 10, FailOps: []string{"DeleteVm"}}); err != nil {
		t.Fatal(err)
	}
	err = jb.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "while the job's VM remains") {
		t.Fatalf("close: %v", err)
	}
	if l, _ := cl.ListExternalRepositories(ctx, ""); len(l) != 1 || l[0].ID != repo.ID {
		t.Fatalf("repositories after a close that could not delete the VM: %+v", l)
	}
	pending, _ := j.Pending()
	if len(pending) != 2 {
		t.Fatalf("journal %v, want the VM and the repository", pending)
	}
	// The sweep meets the same refusal: both stay.
	if _, err := clusterjob.Sweep(ctx, j, clusterjob.Only(cl), nil); err == nil {
		t.Fatal("a sweep that could not delete the VM reported success")
	}
	if pending, _ := j.Pending(); len(pending) != 2 {
		t.Fatalf("journal after a refused sweep: %v", pending)
	}
	// The cluster deletes VMs again: both go.
	if err := s.SetFaults(prismsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	rep, err := clusterjob.Sweep(ctx, j, clusterjob.Only(cl), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 2 || !strings.Contains(strings.Join(rep.Deleted, "|"), "external repository") {
		t.Fatalf("deleted %v", rep.Deleted)
	}
	if l, _ := cl.ListExternalRepositories(ctx, ""); len(l) != 0 {
		t.Fatalf("repositories left: %+v", l)
	}
	if pending, _ := j.Pending(); len(pending) != 0 {
		t.Fatalf("journal: %v", pending)
	}
}

// TestSweepKeepsRepositoryOfResult: an instant restore killed after its
// VM became the result but before it forgot its external repository
// leaves the repository in the journal. The VM's disk is hydrated (no
// data source left); its description still names the repository, so
// the sweep keeps it for the VM's finish and forgets the entry.
func TestSweepKeepsRepositoryOfResult(t *testing.T) {
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{V4Revisions: []string{"v4.0", "v4.1", "v4.2"}}})
	vm, err := s.AddVM(context.Background(), "web01", []string{enginetest.DataDisk(t, 4<<20, 1)}, prismsim.VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, sim: s, j: openJournal(t), vm: vm}
	e.crash("instant-result", nutanix.APIV4)
	cl := e.client(nutanix.APIV4)
	ir := cl.(nutanix.InstantRecovery)
	ctx := context.Background()
	if l, _ := ir.ListExternalRepositories(ctx, ""); len(l) != 1 {
		t.Fatalf("repositories after the kill: %+v", l)
	}
	if pending, _ := e.j.Pending(); len(pending) != 1 {
		t.Fatalf("journal after the kill: %v, want the repository", pending)
	}
	rep, err := e.sweep(clusterjob.Only(cl))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 0 {
		t.Fatalf("the sweep deleted %v", rep.Deleted)
	}
	l, _ := ir.ListExternalRepositories(ctx, "")
	if _, ok := s.VM("restored"); !ok || len(l) != 1 {
		t.Fatalf("after the sweep: VM kept %v, repositories %+v", ok, l)
	}
	if pending, _ := e.j.Pending(); len(pending) != 0 {
		t.Fatalf("journal after the sweep: %v", pending)
	}
}
