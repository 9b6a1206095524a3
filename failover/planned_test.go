package failover_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/failover"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// twoSites is a production site with VMs backed up into a source
// repository, synced once to a DR repository, and a DR site.
type twoSites struct {
	prod, drs       *prismsim.Sim
	srcRepo, drRepo string
	planFile        string
	vms             []string
	sourceDisk      map[string]string // VM → its live disk file at the source
	sizes           map[string]int64
}

// newTwoSites makes the sites, backs db01 (NGT), web01 (no NGT) and
// web02 (NGT, hung guest) up and syncs them to DR; then changes their
// disks at the source, so that only a final backup holds the changes.
func newTwoSites(t *testing.T) *twoSites {
	ctx := context.Background()
	ts := &twoSites{prod: simtest.Start(t, simtest.Options{}), drs: simtest.Start(t, simtest.Options{}),
		vms: []string{"db01", "web01", "web02"}, sourceDisk: map[string]string{}, sizes: map[string]int64{}}
	for i, n := range ts.vms {
		ngt := prismsim.NGTInstalled
		if n == "web01" {
			ngt = prismsim.NGTAbsent
		}
		v, err := ts.prod.AddVM(ctx, n, []string{enginetest.Ext4Image(t, 16<<20, uint64(i+1))}, prismsim.VMOptions{NGT: ngt})
		if err != nil {
			t.Fatal(err)
		}
		ts.sourceDisk[n] = v.Disks[0]
	}
	if err := ts.prod.SetGuestHung("web02", true); err != nil {
		t.Fatal(err)
	}
	ts.srcRepo = enginetest.Init(t, engine.InitOptions{})
	ts.drRepo = enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, ts.srcRepo, engine.OpenOptions{Writable: true})
	if rep, err := backup.Run(ctx, w, connect(t, ts.prod), backup.Options{DataPath: backup.PathREST}); err != nil || rep.Failed() > 0 {
		t.Fatalf("backup: %v %+v", err, rep)
	}
	d := enginetest.Open(t, ts.drRepo, engine.OpenOptions{Writable: true})
	if _, err := dr.Sync(ctx, &dr.Local{R: w}, &dr.Local{R: d}, dr.Options{}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	d.Close()
	for i, n := range ts.vms {
		f, err := os.OpenFile(ts.sourceDisk[n], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(0xa0 + i)}, 300<<10), int64(i+3)<<20); err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		ts.sizes[n] = st.Size()
		f.Close()
	}
	ts.planFile = filepath.Join(t.TempDir(), "move.toml")
	os.WriteFile(ts.planFile, []byte(fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
source_repository = %q
data_path = "rest"
network_map = ["vlan10=vlan20"]
shutdown_timeout = "1s"
[[stage]]
vms = ["db01"]
[[stage]]
vms = ["web*"]
`, ts.drRepo, ts.srcRepo)+siteTable("prod", ts.prod)+siteTable("dr", ts.drs)), 0o600)
	return ts
}

func (ts *twoSites) plan(t *testing.T) *failover.Plan {
	p, err := failover.Load(ts.planFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkMoved: every source VM is off, every DR VM on under its own name
// on the production subnet, its disk byte-exact to the source's.
func (ts *twoSites) checkMoved(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	src, err := connect(t, ts.prod).ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vms, err := connect(t, ts.drs).ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ts.vms {
		if i := slices.IndexFunc(src, func(v nutanix.VM) bool { return v.Name == n }); i < 0 || src[i].PowerState != nutanix.PowerOff {
			t.Fatalf("source %s: %+v, want off", n, src)
		}
		i := slices.IndexFunc(vms, func(v nutanix.VM) bool { return v.Name == n })
		if i < 0 || vms[i].PowerState != nutanix.PowerOn || vms[i].NICs[0].SubnetName != "vlan20" || vms[i].ClusterName != "cluster-b" {
			t.Fatalf("%s at DR: %+v", n, vms)
		}
		info, _ := ts.drs.VM(vms[i].UUID)
		got, _ := os.ReadFile(info.Disks[0])
		want, _ := os.ReadFile(ts.sourceDisk[n])
		if len(want) == 0 || !bytes.Equal(got, want) {
			t.Fatalf("%s: the DR disk differs from the source disk at shutdown", n)
		}
	}
}

// TestPlannedFailover: the source VMs are shut down (through NGT, by
// ACPI, and a hung guest powered off after the timeout), backed up last
// (incrementals) and synced; the DR VMs come up on the production subnet
// with disks byte-exact to the source at shutdown. A second run is
// refused; undo (forced) removes the DR VMs and powers the source back on.
func TestPlannedFailover(t *testing.T) {
	ctx := context.Background()
	ts := newTwoSites(t)
	plan := ts.plan(t)
	o := failover.Options{TuneCluster: tune}
	st, err := failover.Planned(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	ts.checkMoved(t)
	how := map[string]string{}
	for _, v := range st.VMs {
		how[v.VM] = v.Shutdown
		if !v.SourceWasOn || v.Status != failover.VMOn || v.PointTime.IsZero() {
			t.Errorf("state of %s: %+v", v.VM, v)
		}
	}
	if how["db01"] != "guest" || how["web01"] != "acpi" || how["web02"] != "hard" {
		t.Errorf("shutdowns %v: want db01 guest, web01 acpi, web02 hard", how)
	}
	r := enginetest.Open(t, ts.drRepo, engine.OpenOptions{})
	var full int64
	for _, v := range st.VMs {
		rp, err := r.Resolve(ctx, v.Point)
		if err != nil || rp.Level != string(backup.LevelIncremental) {
			t.Fatalf("final point %s at DR: %+v %v, want an incremental", v.Point, rp, err)
		}
		full += ts.sizes[v.VM]
	}
	r.Close()
	if !st.Synced || st.BytesSent <= 0 || st.BytesSent > full/4 {
		t.Errorf("sync sent %d bytes of %d: want only what changed", st.BytesSent, full)
	}
	if _, err := failover.Planned(ctx, plan, o); err == nil || !strings.Contains(err.Error(), "undo first") {
		t.Fatalf("a second planned failover: %v", err)
	}
	if _, err := failover.Undo(ctx, plan, failover.Options{TuneCluster: tune, Force: true}); err != nil {
		t.Fatal(err)
	}
	src, _ := connect(t, ts.prod).ListVMs(ctx)
	drVMs, _ := connect(t, ts.drs).ListVMs(ctx)
	for _, n := range ts.vms {
		if i := slices.IndexFunc(src, func(v nutanix.VM) bool { return v.Name == n }); i < 0 || src[i].PowerState != nutanix.PowerOn {
			t.Errorf("after undo, source %s is not on", n)
		}
		if slices.ContainsFunc(drVMs, func(v nutanix.VM) bool { return v.Name == n }) {
			t.Errorf("after undo, %s is still at DR", n)
		}
	}
}

// TestPermanentAndFailback: after a planned failover, permanent backs the
// DR VMs up at DR as incrementals on the points they were restored from;
// undo is refused; the DR VMs change; failback sends only what changed
// (the bytes are in the state), brings the VMs up at the source on the
// source subnet byte-exact to their DR disks at shutdown, removes the old
// source VMs and the DR VMs, and the source chain continues: the next
// backup at the source is an incremental. A failback that could not
// delete the DR VMs' reference snapshots, run again, deletes them.
func TestPermanentAndFailback(t *testing.T) {
	ctx := context.Background()
	ts := newTwoSites(t)
	plan := ts.plan(t)
	o := failover.Options{TuneCluster: tune}
	if _, err := failover.Planned(ctx, plan, o); err != nil {
		t.Fatal(err)
	}
	st, err := failover.Permanent(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	r := enginetest.Open(t, ts.drRepo, engine.OpenOptions{})
	for _, v := range st.VMs {
		rp, err := r.Resolve(ctx, v.DRPoint)
		parent, _ := r.Resolve(ctx, v.Point)
		if err != nil || rp.Level != string(backup.LevelIncremental) || parent == nil || rp.Parent != parent.ID {
			t.Fatalf("first DR backup of %s: %+v %v; want an incremental on %s", v.VM, rp, err, v.Point)
		}
	}
	r.Close()
	if _, err := failover.Undo(ctx, plan, failover.Options{TuneCluster: tune, Force: true}); err == nil || !strings.Contains(err.Error(), "permanent") {
		t.Fatalf("undo of a permanent failover: %v", err)
	}
	// The VMs work at DR: their disks change.
	drc := connect(t, ts.drs)
	drDisk := map[string]string{}
	var total int64
	for i, n := range ts.vms {
		info, _ := ts.drs.VM(n)
		drDisk[n] = info.Disks[0]
		f, err := os.OpenFile(info.Disks[0], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(bytes.Repeat([]byte{byte(0x50 + i)}, 200<<10), int64(i+7)<<20)
		f.Close()
		total += ts.sizes[n]
	}
	oldSource := map[string]string{}
	for _, v := range st.VMs {
		oldSource[v.VM] = v.SourceUUID
	}
	want := map[string][]byte{}
	var order []string
	ob := failover.Options{TuneCluster: tune, Progress: func(v failover.VMState) {
		if v.Back != nil && v.Back.Status == failover.VMStopped {
			want[v.VM], _ = os.ReadFile(drDisk[v.VM]) // the DR disk at shutdown
		}
		if v.Back != nil && v.Back.Status == failover.VMRestoring {
			order = append(order, v.VM)
		}
		if v.Back != nil && v.Back.Status == failover.VMOn {
			// The DR site refuses to delete snapshots from now on: the DR
			// VMs' reference snapshots stay in the DR journal, which the
			// failback run again must sweep.
			if err := ts.drs.SetFaults(prismsim.Faults{FailTasks: 1000, FailOps: []string{"SnapshotDelete", "DeleteRecoveryPoint"}}); err != nil {
				t.Error(err)
			}
		}
	}}
	if _, err := failover.Failback(ctx, plan, ob); err == nil || !strings.Contains(err.Error(), "DR site") {
		t.Fatalf("failback with the DR site refusing deletions: %v", err)
	}
	if err := ts.drs.SetFaults(prismsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	st, err = failover.Failback(ctx, plan, ob)
	if err != nil {
		t.Fatal(err)
	}
	if !inStageOrder(order) {
		t.Errorf("failback restore order %v", order)
	}
	if st.Back.BytesSent <= 0 || st.Back.BytesSent > total/4 {
		t.Errorf("failback sent %d bytes of %d: want only what changed at DR", st.Back.BytesSent, total)
	}
	t.Logf("failback sent %d bytes for %d bytes of disks", st.Back.BytesSent, total)
	src, _ := connect(t, ts.prod).ListVMs(ctx)
	drVMs, _ := drc.ListVMs(ctx)
	for _, n := range ts.vms {
		var mine []nutanix.VM
		for _, v := range src {
			if v.Name == n {
				mine = append(mine, v)
			}
		}
		if len(mine) != 1 || mine[0].UUID == oldSource[n] || mine[0].PowerState != nutanix.PowerOn || mine[0].NICs[0].SubnetName != "vlan10" {
			t.Fatalf("%s at the source after failback: %+v (old UUID %s)", n, mine, oldSource[n])
		}
		info, _ := ts.prod.VM(mine[0].UUID)
		got, _ := os.ReadFile(info.Disks[0])
		if len(want[n]) == 0 || !bytes.Equal(got, want[n]) {
			t.Fatalf("%s: the source disk after failback is not the DR disk at shutdown", n)
		}
		if slices.ContainsFunc(drVMs, func(v nutanix.VM) bool { return v.Name == n }) {
			t.Errorf("%s is still at the DR site", n)
		}
	}
	if s, err := failover.PlanStatus(ctx, plan, o); err != nil || s.State != nil {
		t.Fatalf("status after failback: %+v %v", s, err)
	}
	ts.drs.WaitTasks(time.Minute)
	if d := ts.drs.Objects(); len(d.Snapshots)+len(d.RecoveryPoints) != 0 || len(d.VolumeGroups) != 0 {
		t.Errorf("DR site keeps %d snapshots, %d recovery points, %d volume groups", len(d.Snapshots), len(d.RecoveryPoints), len(d.VolumeGroups))
	}
	// The chain continues at the source.
	w := enginetest.Open(t, ts.srcRepo, engine.OpenOptions{Writable: true})
	defer w.Close()
	rep, err := backup.Run(ctx, w, connect(t, ts.prod), backup.Options{DataPath: backup.PathREST})
	if err != nil || rep.Failed() > 0 {
		t.Fatalf("backup after failback: %v %+v", err, rep)
	}
	for _, vr := range rep.VMs {
		if vr.Level != string(backup.LevelIncremental) || vr.BytesRead > 1<<20 {
			t.Errorf("backup of %s after failback: level %s, %d bytes read; want a small incremental", vr.VM, vr.Level, vr.BytesRead)
		}
	}
	ts.prod.WaitTasks(time.Minute)
	if p := ts.prod.Objects(); len(p.Snapshots)+len(p.RecoveryPoints) != len(ts.vms) || len(p.VolumeGroups) != 0 || len(p.Images) != 0 {
		t.Errorf("source site keeps %d snapshots, %d recovery points (want one reference per VM), %d volume groups, %d images",
			len(p.Snapshots), len(p.RecoveryPoints), len(p.VolumeGroups), len(p.Images))
	}
}
