package clusterjob

import (
	"context"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// TestSweepXenKnowsThePoolByUUID: a dead job recorded through another
// address of this pool (its master changed, say) is swept here, because
// its pool UUID is this pool's; a dead job of another pool is left alone
// even when recorded through this very address.
func TestSweepXenKnowsThePoolByUUID(t *testing.T) {
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01", DiskSizes: []int64{1 << 20}}}})
	ctx := context.Background()
	xc, err := xapi.Connect(ctx, xapi.Options{URL: s.URL(), User: s.User(), Password: s.Password(), CAFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close(ctx) })
	pool, err := xc.PoolUUID(ctx)
	if err != nil || pool == "" {
		t.Fatalf("pool UUID %q: %v", pool, err)
	}
	vms, err := xc.VMsByName(ctx, "xen01")
	if err != nil || len(vms) != 1 {
		t.Fatalf("xen01: %v %v", vms, err)
	}
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// deadJob leaves a dead job of the pool named by uuid, recorded
	// through endpoint, whose entry names a snapshot of xen01 (made when
	// make is set).
	deadJob := func(endpoint, uuid, name string, make bool) {
		t.Helper()
		d, err := j.newJobDir("backup", jobInfo{Prism: endpoint, Hypervisor: HypervisorXen, Pool: uuid})
		if err != nil {
			t.Fatal(err)
		}
		o := Object{Kind: KindSnapshot, Name: name, VMUUID: vms[0].UUID, VM: "xen01", API: APIXen}
		if make {
			if _, err := xc.Snapshot(ctx, vms[0].Ref, name); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.put(o); err != nil {
			t.Fatal(err)
		}
		d.release()
	}
	deadJob("https://old-master.invalid:443", pool, "ahvfs-xen01-moved-master", true)
	deadJob(s.URL(), "0f0f0f0f-0000-4000-8000-000000000000", "ahvfs-xen01-other-pool", false)
	rep, err := SweepXen(ctx, j, xc, nil)
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
