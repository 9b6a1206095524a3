package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// TestChainREST: full, incremental after a 5% change, differential, and
// incremental again over REST image downloads (v3), each equal to the
// disks; the incremental reads only changed chunks; exactly one snapshot
// per VM stays on the cluster (two after a differential).
func TestChainREST(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	testChain(t, f, backup.PathREST)
}

// TestChainISCSI: the same over iSCSI (v4 API, volume groups cloned from
// disk recovery points, tgtd), the data path picked by auto.
func TestChainISCSI(t *testing.T) {
	f := newFixture(t, fixtureOptions{ISCSI: true, API: nutanix.APIV4})
	testChain(t, f, backup.PathAuto)
}

func testChain(t *testing.T, f *fixture, path backup.DataPath) {
	vm := f.vms[0]
	rep := f.run(backup.Options{DataPath: path})
	v := rep.VMs[0]
	if v.Level != engine.LevelFull || v.Consistency != "crash" {
		t.Fatalf("first backup: level %s consistency %s", v.Level, v.Consistency)
	}
	if path == backup.PathAuto && v.DataPath != backup.PathISCSI {
		t.Fatalf("auto picked %s, want iscsi", v.DataPath)
	}
	f.checkDisks(v, vm)
	f.assertClean(1)
	var cfg clusterjob.VMConfig
	rp, _ := f.repo.RestorePointByID(context.Background(), v.ID)
	if err := json.Unmarshal(rp.Config, &cfg); err != nil || cfg.UUID != vm.UUID || len(cfg.Disks) != 2 || len(cfg.NICs) != 1 ||
		cfg.MemoryBytes == 0 || cfg.NICs[0].SubnetName == "" || cfg.Disks[1].Disk != 1 {
		t.Fatalf("config %+v (%v)", cfg, err)
	}

	// ~5% of the first disk changes.
	guestWrite(t, vm.Disks[0], 3, 1)
	rep = f.run(backup.Options{DataPath: path})
	v = rep.VMs[0]
	if v.Level != engine.LevelIncremental {
		t.Fatalf("second backup: level %s (%v)", v.Level, v.Warnings)
	}
	f.checkDisks(v, vm)
	if total := int64(disk0Size + disk1Size); v.BytesRead > total/10 {
		t.Fatalf("incremental read %d bytes of %d", v.BytesRead, total)
	}
	if v.Disks[1].BytesRead != 0 {
		t.Fatalf("unchanged disk-1 read %d bytes", v.Disks[1].BytesRead)
	}
	f.assertClean(1)

	// A new full, then two differentials against it.
	full := f.run(backup.Options{DataPath: path, Level: backup.LevelFull}).VMs[0]
	if full.Level != engine.LevelFull {
		t.Fatalf("--level full gave %s", full.Level)
	}
	f.checkDisks(full, vm)
	for i := range 2 {
		guestWrite(t, vm.Disks[1], 1, uint64(10+i))
		rep = f.run(backup.Options{DataPath: path, Level: backup.LevelDifferential})
		v = rep.VMs[0]
		if v.Level != engine.LevelDifferential {
			t.Fatalf("differential %d: level %s (%v)", i, v.Level, v.Warnings)
		}
		f.checkDisks(v, vm)
		rp, _ = f.repo.RestorePointByID(context.Background(), v.ID)
		if rp.Parent != full.ID {
			t.Fatalf("differential's parent %s, want the full %s", rp.Parent, full.ID)
		}
		if v.Disks[1].BytesRead < int64(i+1)<<20 || v.Disks[0].BytesRead != 0 {
			t.Fatalf("differential %d read %d+%d bytes", i, v.Disks[0].BytesRead, v.Disks[1].BytesRead)
		}
		f.assertClean(2) // the differential exception: the full's snapshot is kept
	}

	guestWrite(t, vm.Disks[0], 1, 3)
	rep = f.run(backup.Options{DataPath: path})
	v = rep.VMs[0]
	if v.Level != engine.LevelIncremental {
		t.Fatalf("fourth backup: level %s", v.Level)
	}
	f.checkDisks(v, vm)
	f.assertClean(1)
	if vr, err := f.repo.Verify(context.Background(), engine.VerifyOptions{}); err != nil || !vr.OK() {
		t.Fatalf("verify: %v %+v", err, vr)
	}
}

// TestVanishedReference: the reference snapshot deleted behind our back
// turns the next backup into a full one that says why.
func TestVanishedReference(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	rep := f.run(backup.Options{DataPath: backup.PathREST})
	ref, err := backup.LoadReference(f.journal(), f.vms[0].UUID)
	if err != nil || ref == nil {
		t.Fatalf("reference: %v %v", ref, err)
	}
	if ref.Last.RestorePoint != rep.VMs[0].ID {
		t.Fatalf("reference names restore point %s, want %s", ref.Last.RestorePoint, rep.VMs[0].ID)
	}
	if err := f.sim.DeleteSnapshotBehindBack(ref.Last.Snapshot.ID); err != nil {
		t.Fatal(err)
	}
	guestWrite(t, f.vms[0].Disks[0], 1, 9)
	rep = f.run(backup.Options{DataPath: backup.PathREST})
	v := rep.VMs[0]
	if v.Level != engine.LevelFull || len(v.Warnings) == 0 || !strings.Contains(v.Warnings[0], "vanished") {
		t.Fatalf("after the reference vanished: level %s warnings %v", v.Level, v.Warnings)
	}
	rp, _ := f.repo.RestorePointByID(context.Background(), v.ID)
	if !strings.Contains(rp.Disks[0].Reason, "vanished") {
		t.Fatalf("disk reason %q", rp.Disks[0].Reason)
	}
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}

// TestForgottenReference: when the restore point the reference snapshot
// belongs to is forgotten (prune), the next backup still works: a full that
// says why, and the reference snapshot it replaces is released.
func TestForgottenReference(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	rep := f.run(backup.Options{DataPath: backup.PathREST})
	rp, err := f.repo.RestorePointByID(ctx, rep.VMs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Forget(ctx, []*engine.RestorePoint{rp}); err != nil {
		t.Fatal(err)
	}
	guestWrite(t, f.vms[0].Disks[0], 1, 10)
	rep = f.run(backup.Options{DataPath: backup.PathREST})
	v := rep.VMs[0]
	if v.Level != engine.LevelFull || len(v.Warnings) == 0 || !strings.Contains(v.Warnings[0], "no longer in the repository") {
		t.Fatalf("after the reference's restore point was forgotten: level %s warnings %v", v.Level, v.Warnings)
	}
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}

// TestConsistency: what the cluster delivers for each NGT state and mode.
func TestConsistency(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3, VMs: []string{"absent", "installed", "vss"},
		NGT: []prismsim.NGT{prismsim.NGTAbsent, prismsim.NGTInstalled, prismsim.NGTVSS}})
	type want struct{ consistency, err string }
	for _, tc := range []struct {
		mode backup.Consistency
		want map[string]want
	}{
		{backup.Crash, map[string]want{"absent": {"crash", ""}, "installed": {"crash", ""}, "vss": {"crash", ""}}},
		{backup.App, map[string]want{"absent": {"crash", ""}, "installed": {"crash", ""}, "vss": {"app", ""}}},
		{backup.AppRequired, map[string]want{"absent": {"", "application-consistent"}, "installed": {"", "application-consistent"}, "vss": {"app", ""}}},
	} {
		rep, err := backup.Run(context.Background(), f.repo, f.cl, f.opts(backup.Options{Consistency: tc.mode, DataPath: backup.PathREST, Estimate: true}))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range rep.VMs {
			w := tc.want[v.VM]
			if w.err != "" {
				if !strings.Contains(v.Err, w.err) {
					t.Errorf("%s %s: error %q, want %q", tc.mode, v.VM, v.Err, w.err)
				}
				continue
			}
			if v.Err != "" || v.Consistency != w.consistency {
				t.Errorf("%s %s: consistency %q err %q, want %q", tc.mode, v.VM, v.Consistency, v.Err, w.consistency)
			}
			if tc.mode == backup.App && w.consistency == "crash" && len(v.Warnings) == 0 {
				t.Errorf("%s %s: no warning for the crash-consistent fallback", tc.mode, v.VM)
			}
		}
	}
	f.assertClean(0) // estimates leave nothing behind
}

// TestOneOfTwoFails: one VM failing does not stop the other.
func TestOneOfTwoFails(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3, VMs: []string{"good", "bad"},
		NGT: []prismsim.NGT{prismsim.NGTVSS, prismsim.NGTAbsent}})
	rep, err := backup.Run(context.Background(), f.repo, f.cl, f.opts(backup.Options{Consistency: backup.AppRequired, DataPath: backup.PathREST}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != 1 {
		t.Fatalf("%d failed, want 1: %+v", rep.Failed(), rep.VMs)
	}
	for _, v := range rep.VMs {
		if v.VM == "good" {
			if v.Err != "" || v.Consistency != "app" {
				t.Fatalf("good: %+v", v)
			}
			f.checkDisks(v, f.vms[0])
		}
	}
	snaps, vgs, images := f.clusterObjects()
	if snaps[f.vms[0].UUID] != 1 || snaps[f.vms[1].UUID] != 0 || vgs+images != 0 {
		t.Fatalf("cluster objects: snapshots %v, %d VGs, %d images", snaps, vgs, images)
	}
}

// TestFaults: 429/500 storms are ridden out by the client's retries; a
// failing snapshot task fails the VM cleanly and the next run is correct.
func TestFaults(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	// A 429 storm on every call: the client waits and retries.
	if err := f.sim.SetFaults(prismsim.Faults{Rate429: 0.2, Paths: []string{"/api/"}}); err != nil {
		t.Fatal(err)
	}
	v := f.run(backup.Options{DataPath: backup.PathREST}).VMs[0]
	f.checkDisks(v, f.vms[0])
	// A 500 storm on reads (VMs, changed regions, image downloads): the
	// client's one retry policy repeats them; the job repeats nothing.
	f.sim.SetFaults(prismsim.Faults{Rate429: 0.1, Rate500: 0.2, Paths: []string{"vms/list", "/vms/", "changed_regions", "/file"}})
	guestWrite(t, f.vms[0].Disks[0], 2, 4)
	v = f.run(backup.Options{DataPath: backup.PathREST}).VMs[0]
	if v.Level != engine.LevelIncremental {
		t.Fatalf("level %s under a storm", v.Level)
	}
	f.checkDisks(v, f.vms[0])
	t.Logf("injected: %d × 429, %d × 500", f.sim.InjectedErrors(429), f.sim.InjectedErrors(500))
	if f.sim.InjectedErrors(429) == 0 {
		t.Fatalf("no faults injected")
	}
	f.sim.SetFaults(prismsim.Faults{})
	// Deletions that failed under the storm stay in the journal until a sweep.
	if _, err := f.sweep(); err != nil {
		t.Fatal(err)
	}
	f.assertClean(1)

	for i, op := range []string{"SnapshotCreate", "ImageCreate", "SnapshotDelete"} {
		guestWrite(t, f.vms[0].Disks[0], 1, uint64(20+i))
		f.sim.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{op}})
		rep, err := backup.Run(context.Background(), f.repo, f.cl, f.opts(backup.Options{DataPath: backup.PathREST}))
		f.sim.SetFaults(prismsim.Faults{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("failing %s task: error %q, warnings %q", op, rep.VMs[0].Err, rep.VMs[0].Warnings)
		if op == "SnapshotDelete" {
			// The old reference could not be deleted: the journal keeps it
			// for the next sweep.
			if rep.VMs[0].Err != "" || len(rep.VMs[0].Warnings) == 0 {
				t.Fatalf("failing %s: %+v", op, rep.VMs[0])
			}
			cr, err := f.sweep()
			if err != nil || len(cr.Deleted) != 1 {
				t.Fatalf("cleanup: %+v %v", cr, err)
			}
		} else if rep.VMs[0].Err == "" {
			t.Fatalf("failing %s: no error", op)
		}
		f.assertClean(1)
	}
	guestWrite(t, f.vms[0].Disks[1], 1, 5)
	v = f.run(backup.Options{DataPath: backup.PathREST}).VMs[0]
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}

// TestISCSIDrop: connections dropped mid-disk are recovered by the
// initiator; the restore point is still exact.
func TestISCSIDrop(t *testing.T) {
	f := newFixture(t, fixtureOptions{ISCSI: true, API: nutanix.APIV3})
	var dropped atomic.Int32
	pr := &dropper{f: f, dropped: &dropped}
	v := f.run(backup.Options{DataPath: backup.PathISCSI, Progress: pr, ReadWorkers: 2, ReadSize: 1 << 20}).VMs[0]
	if dropped.Load() == 0 {
		t.Fatal("no connection dropped")
	}
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}

type dropper struct {
	f       *fixture
	dropped *atomic.Int32
	mu      sync.Mutex
}

// DiskStart drops the connections once disk-0 is a third read, and again
// on later progress until a drop lands (a session may be between two
// logins when the first try comes).
func (d *dropper) DiskStart(vm, disk string, size, read int64) func(int64) {
	return func(done int64) {
		if disk != "disk-0" || done <= size/3 || done >= size*9/10 || d.dropped.Load() > 0 {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.dropped.Load() > 0 {
			return
		}
		n, err := d.f.sim.DropISCSIConnections(context.Background())
		if err != nil {
			d.f.t.Errorf("drop: %v", err)
		}
		d.dropped.Add(int32(max(n, 0)))
	}
}
func (d *dropper) DiskDone(string, string, error) {}
func (d *dropper) VMDone(backup.VMReport)         {}

// TestCancel: a job cancelled mid-disk (SIGINT) deletes what it created
// before returning; the next run is correct.
func TestCancel(t *testing.T) {
	f := newFixture(t, fixtureOptions{ISCSI: true, API: nutanix.APIV3})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr := &canceller{cancel: cancel}
	_, err := backup.Run(ctx, f.repo, f.cl, f.opts(backup.Options{DataPath: backup.PathISCSI, Progress: pr, ReadWorkers: 2, ReadSize: 1 << 20}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	f.assertClean(0)
	rps, _ := f.repo.ListRestorePoints(context.Background(), f.vms[0].Name)
	if len(rps) != 0 {
		t.Fatalf("%d restore points after a cancelled run", len(rps))
	}
	v := f.run(backup.Options{DataPath: backup.PathISCSI}).VMs[0]
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}

type canceller struct {
	cancel context.CancelFunc
	once   sync.Once
}

func (c *canceller) DiskStart(vm, disk string, size, read int64) func(int64) {
	return func(done int64) {
		if done > size/4 {
			c.once.Do(c.cancel)
		}
	}
}
func (c *canceller) DiskDone(string, string, error) {}
func (c *canceller) VMDone(backup.VMReport)         {}

// TestSelect: globs, UUIDs and exclusions; a pattern that matches nothing
// is an error.
func TestSelect(t *testing.T) {
	vms := []nutanix.VM{{UUID: "u1", Name: "web01"}, {UUID: "u2", Name: "web02"}, {UUID: "u3", Name: "db01"}}
	names := func(vs []nutanix.VM) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		in, ex    []string
		want      string
		unmatched int
	}{
		{nil, nil, "db01,web01,web02", 0},
		{[]string{"web*"}, nil, "web01,web02", 0},
		{[]string{"web*"}, []string{"web02"}, "web01", 0},
		{[]string{"U3"}, nil, "db01", 0},
		{[]string{"nope*", "db01"}, nil, "db01", 1},
	} {
		got, un := backup.SelectVMs(vms, tc.in, tc.ex)
		if names(got) != tc.want || len(un) != tc.unmatched {
			t.Errorf("SelectVMs(%v, %v) = %s, unmatched %v; want %s", tc.in, tc.ex, names(got), un, tc.want)
		}
	}
}

// TestResizedAndNewDisk: after a disk grows and a disk is added, the next
// backup reads those two disks in full (the reason recorded on each), the
// unchanged disk incrementally, and every disk equals the live one.
func TestResizedAndNewDisk(t *testing.T) {
	f := newFixture(t, fixtureOptions{API: nutanix.APIV3})
	f.run(backup.Options{DataPath: backup.PathREST})
	if err := f.sim.ResizeDisk(f.vms[0].UUID, 0, disk0Size+8<<20); err != nil {
		t.Fatal(err)
	}
	info, err := f.sim.AddDisk(f.vms[0].UUID, enginetest.Ext4Image(t, disk1Size, 3))
	if err != nil {
		t.Fatal(err)
	}
	f.vms[0] = info
	rep := f.run(backup.Options{DataPath: backup.PathREST})
	v := rep.VMs[0]
	if v.Level != engine.LevelIncremental {
		t.Fatalf("level %s, want incremental (only two disks need a full read)", v.Level)
	}
	rp, err := f.repo.RestorePointByID(context.Background(), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Disks) != 3 {
		t.Fatalf("%d disks stored, want 3", len(rp.Disks))
	}
	if rp.Disks[0].Size != disk0Size+8<<20 || rp.Disks[0].Reason == "" || rp.Disks[0].Stats.UnchangedBytes != 0 {
		t.Fatalf("resized disk: size %d, reason %q, unchanged %d", rp.Disks[0].Size, rp.Disks[0].Reason, rp.Disks[0].Stats.UnchangedBytes)
	}
	if rp.Disks[2].Reason == "" || rp.Disks[2].Stats.UnchangedBytes != 0 {
		t.Fatalf("new disk: reason %q, unchanged %d", rp.Disks[2].Reason, rp.Disks[2].Stats.UnchangedBytes)
	}
	if rp.Disks[1].Reason != "" || rp.Disks[1].Stats.UnchangedBytes != disk1Size {
		t.Fatalf("untouched disk: reason %q, unchanged %d of %d", rp.Disks[1].Reason, rp.Disks[1].Stats.UnchangedBytes, disk1Size)
	}
	t.Logf("reasons: %q, %q", rp.Disks[0].Reason, rp.Disks[2].Reason)
	f.checkDisks(v, f.vms[0])
	f.assertClean(1)
}
