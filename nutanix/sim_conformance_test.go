package nutanix_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// TestSimConformance runs the same conformance suite on the v3 (+v2) and v4
// backends of the client, each against prismsim.
func TestSimConformance(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) { conformance(t, api) })
	}
}

func conformance(t *testing.T, api nutanix.APIVersion) {
	s := startSim(t, prismsim.Options{MaxRegionsPerPage: 3})
	ctx := ctxT(t)
	const diskSize = 4 << 20
	var vms []prismsim.VMInfo
	for i := range 5 {
		files := []string{diskImage(t, diskSize, uint64(i*2+1))}
		if i == 0 {
			files = append(files, diskImage(t, diskSize/2, 99))
		}
		ngt := prismsim.NGTAbsent
		if i == 0 {
			ngt = prismsim.NGTVSS
		}
		vm, err := s.AddVM(ctx, fmt.Sprintf("vm-%d", i), files, prismsim.VMOptions{NGT: ngt, Move: true})
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	defer nutanix.SetPageSizes(2, 2)() // 5 VMs → 3 pages
	c := simClient(t, s, api)

	t.Run("inventory", func(t *testing.T) {
		got, err := c.ListVMs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]nutanix.VM{}
		for _, v := range got {
			names[v.Name] = v
		}
		for _, want := range vms {
			v, ok := names[want.Name]
			if !ok || v.UUID != want.UUID {
				t.Fatalf("ListVMs over pages lacks %s: %+v", want.Name, got)
			}
		}
		vm, err := c.GetVM(ctx, vms[0].UUID)
		if err != nil {
			t.Fatal(err)
		}
		if len(vm.BackupDisks()) != 2 || vm.Disks[0].SizeBytes != diskSize || vm.Disks[1].SizeBytes != diskSize/2 ||
			vm.Disks[0].Bus == "" || vm.VCPUs < 1 || vm.MemoryBytes <= 0 || vm.ClusterUUID == "" {
			t.Errorf("GetVM %+v", vm)
		}
		if len(vm.NICs) != 1 || vm.NICs[0].SubnetUUID == "" || vm.NICs[0].MAC == "" {
			t.Errorf("NICs %+v", vm.NICs)
		}
		if !vm.NGT.Installed || !vm.NGT.Enabled || !vm.NGT.VSSCapable {
			t.Errorf("NGT of a VSS VM: %+v", vm.NGT)
		}
		if _, err := c.GetVM(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, nutanix.ErrNotFound) {
			t.Errorf("GetVM unknown: %v, want ErrNotFound", err)
		}
		cls, err := c.ListClusters(ctx)
		if err != nil || len(cls) == 0 {
			t.Fatalf("clusters %v %v", cls, err)
		}
		found := false
		for _, cl := range cls {
			found = found || cl.UUID == vm.ClusterUUID
			if cl.DataServicesIP != s.DataServicesIP() || cl.Portal() != s.DataServicesIP()+":3260" {
				t.Errorf("cluster %+v: DSIP want %s", cl, s.DataServicesIP())
			}
		}
		if !found {
			t.Errorf("the VM's cluster %s is not listed: %+v", vm.ClusterUUID, cls)
		}
		subs, err := c.ListSubnets(ctx)
		if err != nil || len(subs) == 0 {
			t.Fatalf("subnets %v %v", subs, err)
		}
		ok := false
		for _, sn := range subs {
			ok = ok || sn.UUID == vm.NICs[0].SubnetUUID
		}
		if !ok {
			t.Errorf("the VM's subnet is not listed")
		}
	})

	var snap1, snap2 nutanix.Snapshot
	t.Run("snapshots", func(t *testing.T) {
		var err error
		snap1, err = c.CreateSnapshot(ctx, vms[0].UUID, "bk-1", false)
		if err != nil {
			t.Fatal(err)
		}
		if snap1.Consistency != nutanix.CrashConsistent || snap1.API != api || len(snap1.Disks) != 2 {
			t.Fatalf("snapshot %+v", snap1)
		}
		vm, _ := c.GetVM(ctx, vms[0].UUID)
		for i, d := range vm.BackupDisks() {
			if _, ok := snap1.Disk(d.UUID); !ok {
				t.Errorf("snapshot disk %d not mapped to VM disk %s: %+v", i, d.UUID, snap1.Disks)
			}
		}
		// app-consistent on a VSS-capable powered-on VM is delivered as such
		app, err := c.CreateSnapshot(ctx, vms[0].UUID, "bk-app", true)
		if err != nil {
			t.Fatal(err)
		}
		if app.Consistency != nutanix.ApplicationConsistent {
			t.Errorf("app-consistent on VSS VM: got %s", app.Consistency)
		}
		// without NGT the cluster falls back; the client says so
		fb, err := c.CreateSnapshot(ctx, vms[1].UUID, "bk-fallback", true)
		if err != nil {
			t.Fatal(err)
		}
		if fb.Consistency != nutanix.CrashConsistent {
			t.Errorf("app-consistent without NGT: got %s, want the delivered CRASH_CONSISTENT", fb.Consistency)
		}
		got, err := c.GetSnapshot(ctx, snap1.ID)
		if err != nil || got.ID != snap1.ID || got.VMUUID != vms[0].UUID || len(got.Disks) != 2 {
			t.Errorf("GetSnapshot %+v %v", got, err)
		}
		list, err := c.ListSnapshots(ctx, vms[0].UUID)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, l := range list {
			ids[l.ID] = true
			if l.VMUUID != vms[0].UUID {
				t.Errorf("ListSnapshots(vm0) returned %+v", l)
			}
		}
		if !ids[snap1.ID] || !ids[app.ID] || ids[fb.ID] {
			t.Errorf("ListSnapshots %v", ids)
		}
		for _, id := range []string{app.ID, fb.ID} {
			if err := c.DeleteSnapshot(ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteSnapshot(ctx, id); err != nil {
				t.Errorf("second delete: %v (want idempotent)", err)
			}
			if _, err := c.GetSnapshot(ctx, id); !errors.Is(err, nutanix.ErrNotFound) {
				t.Errorf("GetSnapshot after delete: %v", err)
			}
		}
	})

	t.Run("changed-regions", func(t *testing.T) {
		vm, _ := c.GetVM(ctx, vms[0].UUID)
		disk := vm.BackupDisks()[0]
		// full: the allocation map covers every non-zero block
		full, n := walkBlocks(t, c, nutanix.RegionQuery{Snapshot: snap1, DiskUUID: disk.UUID})
		sameBlocks(t, "full", full, blockDiff(t, snapFile(t, s, snap1, 0), ""), true)
		if n <= 3 {
			t.Errorf("%d regions: paging (3 per page) not exercised", n)
		}
		// change the live disk in several places, including across a
		// block boundary, a block made all-zero, and the last byte
		live := vms[0].Disks[0]
		writeAt(t, live, 3*simBlock-10, bytes.Repeat([]byte{0xAB}, 20))
		writeAt(t, live, 10*simBlock+5, []byte("changed"))
		writeAt(t, live, 0, make([]byte, simBlock)) // ZEROED now
		writeAt(t, live, 40*simBlock, []byte{1})
		writeAt(t, live, diskSize-1, []byte{0x7f})
		var err error
		snap2, err = c.CreateSnapshot(ctx, vms[0].UUID, "bk-2", false)
		if err != nil {
			t.Fatal(err)
		}
		want := blockDiff(t, snapFile(t, s, snap2, 0), snapFile(t, s, snap1, 0))
		if len(want) != 6 {
			t.Fatalf("oracle: %d changed blocks, want 6", len(want))
		}
		q := nutanix.RegionQuery{Snapshot: snap2, DiskUUID: disk.UUID, Reference: &snap1}
		if api == nutanix.APIV4 {
			q.BlockSize = simBlock
		}
		got, _ := walkBlocks(t, c, q)
		sameBlocks(t, "incremental", got, want, false)
		// a window: only the blocks inside it, clipped
		q.Offset, q.Length = 2*simBlock+100, 9*simBlock
		win, _ := walkBlocks(t, c, q)
		for b := range win {
			if b < 2 || b > 11 {
				t.Errorf("window: block %d outside", b)
			}
		}
		if win[2] != nutanix.RegionRegular || win[10] != nutanix.RegionRegular || win[0] != "" {
			t.Errorf("window blocks %v", win)
		}
		// the second disk did not change
		d2, _ := walkBlocks(t, c, nutanix.RegionQuery{Snapshot: snap2, DiskUUID: vm.BackupDisks()[1].UUID, Reference: &snap1})
		if len(d2) != 0 {
			t.Errorf("unchanged disk reports %v", d2)
		}
		// unknown disk
		err = c.ChangedRegions(ctx, nutanix.RegionQuery{Snapshot: snap2, DiskUUID: "nope"}, func(nutanix.Region) error { return nil })
		if !errors.Is(err, nutanix.ErrNotFound) {
			t.Errorf("unknown disk: %v", err)
		}
		// fn's error stops the walk and comes back as is
		stop := errors.New("stop")
		err = c.ChangedRegions(ctx, nutanix.RegionQuery{Snapshot: snap1, DiskUUID: disk.UUID}, func(nutanix.Region) error { return stop })
		if err != stop {
			t.Errorf("callback error: %v", err)
		}
	})

	t.Run("volume-group-iscsi", func(t *testing.T) {
		vm, _ := c.GetVM(ctx, vms[0].UUID)
		disk := vm.BackupDisks()[0]
		vg, err := c.CreateVolumeGroupFromSnapshotDisk(ctx, snap2, disk.UUID, "ahvfs-tmp-1")
		if err != nil {
			t.Fatal(err)
		}
		if vg.UUID == "" || len(vg.Disks) != 1 || vg.Disks[0].SizeBytes != diskSize {
			t.Errorf("VG %+v", vg)
		}
		files, err := s.VolumeGroupDiskFiles(vg.UUID)
		if err != nil || len(files) != 1 {
			t.Fatalf("sim VG files %v %v", files, err)
		}
		a, _ := os.ReadFile(files[0])
		b, _ := os.ReadFile(snapFile(t, s, snap2, 0))
		if !bytes.Equal(a, b) {
			t.Errorf("VG disk is not a clone of the snapshot disk")
		}
		const iqn = "iqn.2026-01.io.ahvfs:test"
		tgt, err := c.AttachISCSIClient(ctx, vg.UUID, iqn)
		if err != nil {
			t.Fatal(err)
		}
		if tgt.TargetIQN == "" || tgt.Portal != s.DataServicesIP()+":3260" || tgt.VolumeGroupUUID != vg.UUID {
			t.Errorf("target %+v", tgt)
		}
		if _, err := c.AttachISCSIClient(ctx, vg.UUID, iqn); err != nil {
			t.Errorf("second attach: %v", err)
		}
		if err := c.DetachISCSIClient(ctx, vg.UUID, iqn); err != nil {
			t.Fatal(err)
		}
		if err := c.DetachISCSIClient(ctx, vg.UUID, iqn); err != nil {
			t.Errorf("second detach: %v", err)
		}
		if err := c.DeleteVolumeGroup(ctx, vg.UUID); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteVolumeGroup(ctx, vg.UUID); err != nil {
			t.Errorf("second delete: %v", err)
		}
	})

	t.Run("images-and-restore", func(t *testing.T) {
		data := make([]byte, 3<<20+123)
		rand.Read(data)
		im, err := c.CreateImage(ctx, nutanix.ImageSpec{Name: "restore-disk-0", Type: nutanix.DiskImage})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.UploadImage(ctx, im.UUID, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		got, err := c.GetImage(ctx, im.UUID)
		if err != nil || got.SizeBytes != int64(len(data)) {
			t.Errorf("image after upload %+v %v", got, err)
		}
		for _, rg := range [][2]int64{{0, 0}, {1000, 5000}, {int64(len(data)) - 10, 10}} {
			rc, err := c.DownloadImage(ctx, im.UUID, rg[0], rg[1])
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			end := int64(len(data))
			if rg[1] > 0 {
				end = rg[0] + rg[1]
			}
			if err != nil || !bytes.Equal(b, data[rg[0]:end]) {
				t.Errorf("download %v: %d bytes, err %v", rg, len(b), err)
			}
		}
		vm0, _ := c.GetVM(ctx, vms[0].UUID)
		id, err := c.CreateVM(ctx, nutanix.VMSpec{Name: "restored", ClusterUUID: vm0.ClusterUUID, NumSockets: 2, CoresPerSocket: 1,
			MemoryBytes: 1 << 30, BootType: nutanix.BootUEFI,
			Disks: []nutanix.DiskSpec{{Bus: "SCSI", Index: 0, ImageUUID: im.UUID}},
			NICs:  []nutanix.NICSpec{{SubnetUUID: vm0.NICs[0].SubnetUUID}}})
		if err != nil {
			t.Fatal(err)
		}
		rv, err := c.GetVM(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rv.Name != "restored" || rv.VCPUs != 2 || rv.BootType != nutanix.BootUEFI || len(rv.Disks) != 1 ||
			rv.Disks[0].SizeBytes < int64(len(data)) || rv.PowerState != nutanix.PowerOff || len(rv.NICs) != 1 {
			t.Errorf("restored VM %+v", rv)
		}
		for _, st := range []nutanix.PowerState{nutanix.PowerOn, nutanix.PowerOn, nutanix.PowerOff} {
			if err := c.SetPowerState(ctx, id, st); err != nil {
				t.Fatal(err)
			}
			if rv, _ := c.GetVM(ctx, id); rv.PowerState != st {
				t.Errorf("power %s: VM is %s", st, rv.PowerState)
			}
		}
		if err := c.DeleteVM(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteVM(ctx, id); err != nil {
			t.Errorf("second delete: %v", err)
		}
		if _, err := c.GetVM(ctx, id); !errors.Is(err, nutanix.ErrNotFound) {
			t.Errorf("GetVM after delete: %v", err)
		}
		if err := c.DeleteImage(ctx, im.UUID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("blank-volume-group", func(t *testing.T) { blankVolumeGroup(t, s, c, vms[0]) })

	t.Run("failed-task", func(t *testing.T) {
		if err := s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"snapshot", "recovery"}}); err != nil {
			t.Fatal(err)
		}
		defer s.SetFaults(prismsim.Faults{})
		_, err := c.CreateSnapshot(ctx, vms[2].UUID, "doomed", false)
		var te *nutanix.TaskError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("err = %v, want a *TaskError with the task's message", err)
		}
	})

	for _, sn := range []nutanix.Snapshot{snap1, snap2} {
		if err := c.DeleteSnapshot(ctx, sn.ID); err != nil {
			t.Errorf("delete %s: %v", sn.ID, err)
		}
	}
}
