package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// xenFixture is an XCP-ng pool (the simulator) with VM "xen01" on two
// real ext4 disks, an XAPI client and an empty repository.
type xenFixture struct {
	t    *testing.T
	sim  *xapisim.Sim
	xc   *xapi.Client
	repo *engine.Repository
}

func newXenFixture(t *testing.T, spec xapisim.VMSpec) *xenFixture {
	t.Helper()
	spec.Files = []string{enginetest.Ext4Image(t, disk0Size, 1), enginetest.Ext4Image(t, disk1Size, 2)}
	if spec.Name == "" {
		spec.Name = "xen01"
	}
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{spec}})
	xc, err := xapi.Connect(context.Background(), xapi.Options{URL: s.URL(), User: s.User(), Password: s.Password(), CAFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close(context.Background()) })
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 1 << 20})
	return &xenFixture{t: t, sim: s, xc: xc, repo: enginetest.Open(t, dir, engine.OpenOptions{Writable: true})}
}

func (f *xenFixture) run(o backup.Options) backup.VMReport {
	f.t.Helper()
	rep, err := backup.RunXen(context.Background(), f.repo, f.xc, o)
	if err != nil {
		f.t.Fatalf("backup: %v", err)
	}
	if len(rep.VMs) != 1 {
		f.t.Fatalf("%d VMs backed up, want 1", len(rep.VMs))
	}
	v := rep.VMs[0]
	f.t.Logf("backup %s: %s %s via %s, read %d, new %d, warnings %q", v.VM, v.Level, v.Consistency, v.DataPath, v.BytesRead, v.BytesNew, v.Warnings)
	if v.Err != "" {
		f.t.Fatalf("backup of %s: %s", v.VM, v.Err)
	}
	return v
}

// checkDisks asserts that the restore point holds the VM's live disks
// byte for byte.
func (f *xenFixture) checkDisks(vr backup.VMReport) *engine.RestorePoint {
	f.t.Helper()
	ctx := context.Background()
	rp, err := f.repo.RestorePointByID(ctx, vr.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(rp.Disks) != 2 {
		f.t.Fatalf("%s: %d disks stored, want 2", rp.Name(), len(rp.Disks))
	}
	for i := range 2 {
		file, err := f.sim.DiskFile("xen01", i)
		if err != nil {
			f.t.Fatal(err)
		}
		want, err := os.ReadFile(file)
		if err != nil {
			f.t.Fatal(err)
		}
		dr, err := f.repo.OpenDisk(ctx, rp, i)
		if err != nil {
			f.t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(dr, 0, dr.Size()))
		dr.Close()
		if err != nil {
			f.t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			f.t.Fatalf("%s disk-%d (%s): %d bytes differ from the live disk (%d bytes)", rp.Name(), i, rp.Level, diffCount(got, want), len(want))
		}
	}
	return rp
}

// snapshots returns the VM's snapshots on the pool and the VDIs of each.
func (f *xenFixture) snapshots() []xapisim.VMObject {
	var out []xapisim.VMObject
	for _, v := range f.sim.Inventory().VMs {
		if v.IsSnapshot {
			out = append(out, v)
		}
	}
	return out
}

func (f *xenFixture) vdi(uuid string) xapisim.VDIObject {
	for _, d := range f.sim.Inventory().VDIs {
		if d.UUID == uuid {
			return d
		}
	}
	f.t.Fatalf("no VDI %s on the pool", uuid)
	return xapisim.VDIObject{}
}

// reference is xen01's reference as the repository's journal keeps it.
func (f *xenFixture) reference() *backup.XenReference {
	f.t.Helper()
	j, err := clusterjob.RepositoryJournal(f.repo)
	if err != nil {
		f.t.Fatal(err)
	}
	ref, err := backup.LoadXenReference(j, f.sim.VMs()[0].UUID)
	if err != nil || ref == nil {
		f.t.Fatalf("reference: %+v, %v", ref, err)
	}
	return ref
}

// noStrayVDIs fails the test when a VDI is on the pool that no VM or
// snapshot uses and the reference does not name.
func (f *xenFixture) noStrayVDIs() {
	f.t.Helper()
	named := map[string]bool{}
	for _, d := range f.reference().Disks {
		named[d.SnapshotVDI] = true
	}
	for _, d := range f.sim.Inventory().VDIs {
		if len(d.VMs) == 0 && !named[d.UUID] {
			f.t.Fatalf("stray VDI %s (%s) on the pool", d.UUID, d.Type)
		}
	}
}

// write overwrites a few ranges of the VM's disk-0 as the guest would.
func (f *xenFixture) write(seed uint64) {
	f.t.Helper()
	file, err := f.sim.DiskFile("xen01", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	guestWrite(f.t, file, 3, seed)
}

func TestXenCBTFullThenIncremental(t *testing.T) {
	f := newXenFixture(t, xapisim.VMSpec{})
	o := backup.Options{Strategy: backup.StrategyCBT, VMs: []string{"xen01"}}

	full := f.run(o)
	if full.Level != engine.LevelFull || full.DataPath != backup.PathNBD {
		t.Fatalf("first backup: level %s via %s, want full via nbd", full.Level, full.DataPath)
	}
	rp := f.checkDisks(full)
	var cfg clusterjob.VMConfig
	if err := json.Unmarshal(rp.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Hypervisor != clusterjob.HypervisorXen || cfg.Xen == nil || cfg.Xen.Strategy != "cbt" || len(cfg.Disks) != 2 ||
		cfg.Disks[0].Bus != "xvd" || len(cfg.NICs) != 1 || cfg.NICs[0].MAC == "" {
		t.Fatalf("configuration record: %+v", cfg)
	}
	snaps := f.snapshots()
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots on the pool after the full, want the one reference", len(snaps))
	}
	ref := f.reference()
	if ref.Snapshot != snaps[0].UUID || !ref.DataDestroyed || len(ref.Disks) != 2 {
		t.Fatalf("reference %+v, the pool's snapshot %s", ref, snaps[0].UUID)
	}
	for _, rd := range ref.Disks {
		if d := f.vdi(rd.SnapshotVDI); d.HasData || d.Type != "cbt_metadata" {
			t.Fatalf("reference VDI %s: type %s, has data %v; want its data destroyed", rd.SnapshotVDI, d.Type, d.HasData)
		}
	}
	f.noStrayVDIs()

	f.write(7)
	inc := f.run(o)
	if inc.Level != engine.LevelIncremental {
		t.Fatalf("second backup: level %s, want incremental", inc.Level)
	}
	// guestWrite touches 3 ranges of 1 MiB: at most 2 chunks each.
	if inc.BytesRead == 0 || inc.BytesRead > 6<<20 {
		t.Fatalf("incremental read %d bytes, want the changed chunks only (0 < n ≤ 6 MiB)", inc.BytesRead)
	}
	if inc.Disks[1].BytesRead != 0 {
		t.Fatalf("the unchanged disk-1 read %d bytes", inc.Disks[1].BytesRead)
	}
	f.checkDisks(inc)
	after := f.snapshots()
	if len(after) != 1 || after[0].UUID == snaps[0].UUID {
		t.Fatalf("snapshots after the incremental: %+v; want only the new reference", after)
	}
	for _, rd := range ref.Disks {
		for _, d := range f.sim.Inventory().VDIs {
			if d.UUID == rd.SnapshotVDI {
				t.Fatalf("VDI %s of the old reference is still on the pool", d.UUID)
			}
		}
	}
	f.noStrayVDIs()
}

func TestXenCBTOverHTTPExport(t *testing.T) {
	f := newXenFixture(t, xapisim.VMSpec{})
	o := backup.Options{Strategy: backup.StrategyCBT, DataPath: backup.PathREST}
	full := f.run(o)
	if full.DataPath != backup.PathREST {
		t.Fatalf("data path %s, want rest", full.DataPath)
	}
	f.checkDisks(full)
	f.write(8)
	inc := f.run(o)
	if inc.Level != engine.LevelIncremental {
		t.Fatalf("level %s, want incremental", inc.Level)
	}
	f.checkDisks(inc)
}

func TestXenXVAFullThenIncremental(t *testing.T) {
	f := newXenFixture(t, xapisim.VMSpec{})
	o := backup.Options{Strategy: backup.StrategyXVA, VMs: []string{"xen01"}}
	full := f.run(o)
	if full.Level != engine.LevelFull || full.DataPath != "xva" {
		t.Fatalf("first backup: level %s via %s, want full via xva", full.Level, full.DataPath)
	}
	f.checkDisks(full)
	snaps := f.snapshots()
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots after the full, want 1", len(snaps))
	}
	for _, rd := range f.reference().Disks {
		if !f.vdi(rd.SnapshotVDI).HasData {
			t.Fatalf("reference VDI %s lost its data: the delta VHD needs it", rd.SnapshotVDI)
		}
	}
	f.noStrayVDIs()
	f.write(9)
	inc := f.run(o)
	if inc.Level != engine.LevelIncremental || inc.DataPath != "vhd" {
		t.Fatalf("second backup: level %s via %s, want incremental via vhd", inc.Level, inc.DataPath)
	}
	// Delta VHD blocks are 2 MiB: 3 written ranges touch at most 6 blocks.
	if inc.BytesRead == 0 || inc.BytesRead > 12<<20 {
		t.Fatalf("incremental read %d bytes, want the changed blocks only", inc.BytesRead)
	}
	f.checkDisks(inc)
	if after := f.snapshots(); len(after) != 1 || after[0].UUID == snaps[0].UUID {
		t.Fatalf("snapshots after the incremental: %+v; want only the new reference", after)
	}
}

func TestXenStrategyChangeIsFull(t *testing.T) {
	f := newXenFixture(t, xapisim.VMSpec{})
	f.run(backup.Options{Strategy: backup.StrategyXVA})
	f.write(10)
	v := f.run(backup.Options{Strategy: backup.StrategyCBT})
	if v.Level != engine.LevelFull {
		t.Fatalf("level %s after a strategy change, want full", v.Level)
	}
	f.checkDisks(v)
}

func TestXenExcludeDiskAndQuiesce(t *testing.T) {
	f := newXenFixture(t, xapisim.VMSpec{Quiesce: true})
	v := f.run(backup.Options{ExcludeDisks: []string{"xvd.1"}, Consistency: backup.App})
	if v.Consistency != "app" {
		t.Fatalf("consistency %s, want app (the guest tools quiesce)", v.Consistency)
	}
	if len(v.ExcludedDisks) != 1 || v.ExcludedDisks[0] != "xvd.1" || len(v.Disks) != 1 {
		t.Fatalf("excluded %v, stored %d disks", v.ExcludedDisks, len(v.Disks))
	}
	g := newXenFixture(t, xapisim.VMSpec{Name: "noquiesce"})
	_, err := backup.RunXen(context.Background(), g.repo, g.xc, backup.Options{VMs: []string{"missing"}})
	if err == nil {
		t.Fatal("a --vm that selects nothing passed")
	}
	rep, err := backup.RunXen(context.Background(), g.repo, g.xc, backup.Options{Consistency: backup.AppRequired})
	if err != nil {
		t.Fatal(err)
	}
	if rep.VMs[0].Err == "" {
		t.Fatal("app-required passed on a VM whose guest tools cannot quiesce")
	}
	if n := len(g.snapshots()); n != 0 {
		t.Fatalf("%d snapshots left after a refused backup", n)
	}
}

// A backup cancelled while it reads leaves no snapshot behind: the job's
// teardown deletes it, and the reference stays the previous one.
func TestXenCancelLeavesNothing(t *testing.T) {
	f := newXenFixture(t, xapisim.VMSpec{})
	f.run(backup.Options{Strategy: backup.StrategyCBT})
	before := f.snapshots()
	gate := f.sim.Hold("VDI.list_changed_blocks")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := backup.RunXen(ctx, f.repo, f.xc, backup.Options{Strategy: backup.StrategyCBT})
		done <- err
	}()
	select {
	case <-gate.Arrived():
	case <-time.After(2 * time.Minute):
		t.Fatal("the backup never asked for changed blocks")
	}
	cancel()
	gate.Release()
	<-done
	after := f.snapshots()
	if len(after) != 1 || after[0].UUID != before[0].UUID {
		t.Fatalf("snapshots after a cancelled backup: %+v, want only the reference %s", after, before[0].UUID)
	}
	f.write(11)
	v := f.run(backup.Options{Strategy: backup.StrategyCBT})
	if v.Level != engine.LevelIncremental {
		t.Fatalf("level %s after a cancelled backup, want incremental against the old reference", v.Level)
	}
	f.checkDisks(v)
}
