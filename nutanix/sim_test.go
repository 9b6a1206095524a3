package nutanix_test

// Client-against-simulator tests: the same conformance suite runs on the v3
// (+v2) and v4 backends of the client, each against prismsim.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

const simBlock = 64 << 10 // prismsim's default region block size

func startSim(t *testing.T, o prismsim.Options) *prismsim.Sim {
	t.Helper()
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	if o.TaskDelay == 0 {
		o.TaskDelay = time.Millisecond
	}
	s, err := prismsim.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func simOptions(s *prismsim.Sim, api nutanix.APIVersion) nutanix.Options {
	return nutanix.Options{
		Endpoint: s.URL(), User: s.User(), PasswordFile: s.PasswordFile(), CACertFile: s.CAFile(), API: api,
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: 20 * time.Millisecond,
		TaskPollInterval: time.Millisecond, TaskTimeout: 30 * time.Second, Timeout: 10 * time.Second, RateLimit: -1,
	}
}

func simClient(t *testing.T, s *prismsim.Sim, api nutanix.APIVersion) *nutanix.Client {
	t.Helper()
	c := newClient(t, simOptions(s, api))
	rep, err := c.Probe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if api != nutanix.APIAuto && rep.Selected != api {
		t.Fatalf("asked %s, got %s (%s)", api, rep.Selected, rep.Reason)
	}
	return c
}

// diskImage writes a disk file of size bytes with data in a few places
// (the rest is a hole / zeros).
func diskImage(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("disk-%d.raw", seed))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(seed, 1))
	for off := int64(0); off < size; off += size / 8 {
		buf := make([]byte, 100_000)
		for i := range buf {
			buf[i] = byte(r.UintN(255) + 1)
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// blockDiff is the oracle: block index → REGULAR/ZEROED for the blocks of
// newFile that differ from oldFile ("" oldFile: every block, as an
// allocation map, REGULAR when non-zero).
func blockDiff(t *testing.T, newFile, oldFile string) map[int64]nutanix.RegionKind {
	t.Helper()
	nb, err := os.ReadFile(newFile)
	if err != nil {
		t.Fatal(err)
	}
	var ob []byte
	if oldFile != "" {
		if ob, err = os.ReadFile(oldFile); err != nil {
			t.Fatal(err)
		}
	}
	out := map[int64]nutanix.RegionKind{}
	for i := int64(0); i*simBlock < int64(len(nb)); i++ {
		n := nb[i*simBlock : min(int64(len(nb)), (i+1)*simBlock)]
		if ob != nil && bytes.Equal(n, ob[i*simBlock:min(int64(len(ob)), (i+1)*simBlock)]) {
			continue
		}
		kind := nutanix.RegionZeroed
		if !bytes.Equal(n, make([]byte, len(n))) {
			kind = nutanix.RegionRegular
		}
		if ob == nil && kind == nutanix.RegionZeroed {
			continue // the allocation map may report zero blocks or not
		}
		out[i] = kind
	}
	return out
}

// walkBlocks runs ChangedRegions and returns the covered blocks, checking
// the contract (ascending, non-overlapping, in the window, block-aligned).
func walkBlocks(t *testing.T, c nutanix.Cluster, q nutanix.RegionQuery) (map[int64]nutanix.RegionKind, int) {
	t.Helper()
	got := map[int64]nutanix.RegionKind{}
	n := 0
	prev := q.Offset
	for r, err := range nutanix.Regions(ctxT(t), c, q) {
		if err != nil {
			t.Fatalf("changed regions: %v", err)
		}
		n++
		if r.Offset < prev || r.Length <= 0 || (q.Length > 0 && r.End() > q.Offset+q.Length) {
			t.Fatalf("region %+v breaks the contract (prev end %d, window %d+%d)", r, prev, q.Offset, q.Length)
		}
		prev = r.End()
		for b := r.Offset / simBlock; b*simBlock < r.End(); b++ {
			got[b] = r.Kind
		}
	}
	return got, n
}

func snapFile(t *testing.T, s *prismsim.Sim, snap nutanix.Snapshot, disk int) string {
	t.Helper()
	id := snap.ID
	if snap.API == nutanix.APIV4 {
		id = snap.VMRecoveryPointID
	}
	files, err := s.SnapshotDiskFiles(id)
	if err != nil {
		t.Fatal(err)
	}
	return files[disk]
}

func sameBlocks(t *testing.T, what string, got, want map[int64]nutanix.RegionKind, ignoreZeroed bool) {
	t.Helper()
	for b, k := range want {
		if got[b] != k {
			t.Errorf("%s: block %d (offset %d) is %q, want %q", what, b, b*simBlock, got[b], k)
		}
	}
	for b, k := range got {
		if _, ok := want[b]; !ok && !(ignoreZeroed && k == nutanix.RegionZeroed) {
			t.Errorf("%s: block %d (offset %d) reported %q but did not change", what, b, b*simBlock, k)
		}
	}
}

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

func TestSimAutoPicksV4(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	c := simClient(t, s, nutanix.APIAuto)
	rep := c.Report()
	if rep.Selected != nutanix.APIV4 || !strings.Contains(rep.Reason, "v4") || rep.V4["vmm"] == "" || rep.V4["dataprotection"] == "" {
		t.Fatalf("report %+v", rep)
	}
}

func TestSimAutoFallsBackToV3(t *testing.T) {
	s := startSim(t, prismsim.Options{V4Revisions: []string{"v4.9"}}) // no revision the client knows
	c := simClient(t, s, nutanix.APIAuto)
	rep := c.Report()
	if rep.Selected != nutanix.APIV3 || !rep.V2 || !rep.V3CBT || !strings.Contains(rep.Reason, "v4 not usable") {
		t.Fatalf("report %+v", rep)
	}
	// forcing v4 says why not
	c2 := newClient(t, simOptions(s, nutanix.APIV4))
	if _, err := c2.Probe(ctxT(t)); err == nil || !strings.Contains(err.Error(), "v4") {
		t.Fatalf("forced v4: %v", err)
	}
}

func TestSimFaults(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) {
			defer checkNoGoroutineLeak(t)()
			s := startSim(t, prismsim.Options{})
			ctx := ctxT(t)
			vm, err := s.AddVM(ctx, "f", []string{diskImage(t, 1<<20, 5)}, prismsim.VMOptions{Move: true})
			if err != nil {
				t.Fatal(err)
			}
			o := simOptions(s, api)
			o.Retries = 8
			c, err := nutanix.New(o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Probe(ctx); err != nil {
				t.Fatal(err)
			}

			// retries succeed: a third of all requests answered 429
			s.SetFaults(prismsim.Faults{Rate429: 0.3})
			for i := 0; i < 5 || (s.InjectedErrors(429) < 3 && i < 200); i++ {
				if _, err := c.ListVMs(ctx); err != nil {
					t.Fatalf("with 30%% 429s: %v", err)
				}
			}
			snap, err := c.CreateSnapshot(ctx, vm.UUID, "under-429", false)
			if err != nil {
				t.Fatalf("snapshot with 30%% 429s: %v", err)
			}
			if s.InjectedErrors(429) == 0 {
				t.Fatal("no 429 was injected")
			}

			// session expiry mid-run: re-auth
			s.SetFaults(prismsim.Faults{})
			s.ExpireSessions()
			if _, err := c.GetVM(ctx, vm.UUID); err != nil {
				t.Fatalf("after session expiry: %v", err)
			}

			// persistent failure: a clear error with the status and Prism's message
			s.SetFaults(prismsim.Faults{Rate500: 1})
			_, err = c.GetVM(ctx, vm.UUID)
			var ae *nutanix.APIError
			if !errors.As(err, &ae) || ae.Status != 500 || !strings.Contains(err.Error(), "Internal server error (injected)") {
				t.Fatalf("persistent 500: %v", err)
			}
			s.SetFaults(prismsim.Faults{Rate429: 1})
			_, err = c.GetVM(ctx, vm.UUID)
			if !errors.As(err, &ae) || ae.Status != 429 || ae.Attempts != 9 || !strings.Contains(err.Error(), "gave up after 9 attempts") {
				t.Fatalf("persistent 429: %v", err)
			}

			// timeouts: retried, then a clear error
			s.SetFaults(prismsim.Faults{Latency: 300 * time.Millisecond})
			o2 := simOptions(s, api)
			o2.Timeout, o2.Retries = 50*time.Millisecond, 2
			c2, err := nutanix.New(o2)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c2.ListVMs(ctx)
			if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
				t.Fatalf("timeouts: %v", err)
			}
			c2.Close()

			s.SetFaults(prismsim.Faults{})
			if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
				t.Fatal(err)
			}
			c.Close()
			s.Close()
		})
	}
}

// blankVolumeGroup is the restore's iSCSI path on the client: a named
// storage container, a volume group of blank disks in order, listed by
// name, written (here straight into the simulator's files, as an
// initiator would), then a VM whose disks are clones of the VG disks; a
// failing disk or group task leaves no group behind; images by name.
func blankVolumeGroup(t *testing.T, s *prismsim.Sim, c nutanix.Cluster, src prismsim.VMInfo) {
	ctx := ctxT(t)
	vm0, err := c.GetVM(ctx, src.UUID)
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := c.ListStorageContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ctr, other nutanix.StorageContainer
	for _, x := range ctrs {
		switch {
		case x.UUID == "" || x.Name == "" || x.ClusterUUID == "":
			t.Errorf("storage container %+v lacks a field", x)
		case x.ClusterUUID == vm0.ClusterUUID && x.Name == "default":
			ctr = x
		case x.ClusterUUID != vm0.ClusterUUID:
			other = x
		}
	}
	if ctr.UUID == "" || other.UUID == "" {
		t.Fatalf("containers %+v: want a default one on %s and one elsewhere", ctrs, vm0.ClusterUUID)
	}
	sizes := []int64{3 << 20, 1 << 20}
	name := "ahvfs-restore-blank-" + string(c.API())
	if _, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name}); err == nil {
		t.Error("a volume group without disks was created")
	}
	// v4 names the cluster (v2 has no cluster field: the container's wins).
	if vg, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name, ClusterUUID: vm0.ClusterUUID,
		ContainerUUID: other.UUID, DiskSizes: sizes}); c.API() == nutanix.APIV4 && err == nil {
		t.Errorf("volume group on another cluster's container: %+v", vg)
	} else if err == nil {
		c.DeleteVolumeGroup(ctx, vg.UUID)
	}
	if l, err := c.ListVolumeGroups(ctx, name); err != nil || len(l) != 0 {
		t.Fatalf("after refused creates: %+v %v", l, err)
	}
	vg, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name, Description: "test", ClusterUUID: vm0.ClusterUUID,
		ContainerUUID: ctr.UUID, DiskSizes: sizes})
	if err != nil {
		t.Fatal(err)
	}
	if vg.UUID == "" || len(vg.Disks) != 2 {
		t.Fatalf("volume group %+v", vg)
	}
	for i, d := range vg.Disks {
		if d.UUID == "" || d.Index != i || d.SizeBytes != sizes[i] {
			t.Errorf("disk %d: %+v, want index %d size %d", i, d, i, sizes[i])
		}
	}
	l, err := c.ListVolumeGroups(ctx, name)
	if err != nil || len(l) != 1 || l[0].UUID != vg.UUID || len(l[0].Disks) != 2 || l[0].Disks[1].UUID != vg.Disks[1].UUID {
		t.Fatalf("ListVolumeGroups(%q) = %+v, %v", name, l, err)
	}
	files, err := s.VolumeGroupDiskFiles(vg.UUID)
	if err != nil || len(files) != 2 {
		t.Fatalf("VG files %v %v", files, err)
	}
	data := [][]byte{make([]byte, 100_000), make([]byte, 4096)}
	for i, b := range data {
		rand.Read(b)
		writeAt(t, files[i], int64(i)*65536+512, b)
	}
	// VM disks in the opposite order: disk i of the VM is VG disk 1-i.
	id, err := c.CreateVM(ctx, nutanix.VMSpec{Name: name + "-vm", ClusterUUID: vm0.ClusterUUID, MemoryBytes: 1 << 30,
		Disks: []nutanix.DiskSpec{{Bus: "SCSI", Index: 0, VolumeDiskUUID: vg.Disks[1].UUID, ContainerUUID: ctr.UUID},
			{Bus: "SCSI", Index: 1, VolumeDiskUUID: vg.Disks[0].UUID, SizeBytes: sizes[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVM(ctx, nutanix.VMSpec{Name: name + "-bad", ClusterUUID: vm0.ClusterUUID, MemoryBytes: 1 << 30,
		Disks: []nutanix.DiskSpec{{VolumeDiskUUID: vg.Disks[0].UUID, ImageUUID: vg.Disks[1].UUID}}}); err == nil {
		t.Error("a disk with two sources was accepted")
	}
	if err := c.DeleteVolumeGroup(ctx, vg.UUID); err != nil {
		t.Fatal(err)
	}
	rv, err := c.GetVM(ctx, id)
	if err != nil || len(rv.Disks) != 2 || rv.Disks[0].SizeBytes != sizes[1] || rv.Disks[1].SizeBytes != sizes[0] {
		t.Fatalf("VM %+v %v", rv, err)
	}
	vi, _ := s.VM(id)
	for i, f := range vi.Disks {
		want := make([]byte, sizes[1-i])
		copy(want[int64(1-i)*65536+512:], data[1-i])
		if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got, want) {
			t.Errorf("VM disk %d differs from VG disk %d (%v)", i, 1-i, err)
		}
	}
	if err := c.DeleteVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	if l, err := c.ListVolumeGroups(ctx, name); err != nil || len(l) != 0 {
		t.Errorf("after delete: %+v %v", l, err)
	}

	// A failing task (v4: the second disk's, v2: the group's) leaves no
	// group behind.
	if err := s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"CreateVolumeDisk", "VolumeGroupCreate"}}); err != nil {
		t.Fatal(err)
	}
	vg, err = c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name + "-fail", DiskSizes: sizes})
	s.SetFaults(prismsim.Faults{})
	var te *nutanix.TaskError
	if !errors.As(err, &te) {
		t.Errorf("failing create: %+v %v, want a *TaskError", vg, err)
	}
	if err := c.DeleteVolumeGroup(ctx, vg.UUID); vg.UUID != "" && err != nil {
		t.Errorf("delete after failure: %v", err)
	}
	if l, err := c.ListVolumeGroups(ctx, name+"-fail"); err != nil || len(l) != 0 {
		t.Errorf("failed create left %+v %v", l, err)
	}

	// Images by name.
	imName := "ahvfs-restore-image-" + string(c.API())
	im, err := c.CreateImage(ctx, nutanix.ImageSpec{Name: imName})
	if err != nil {
		t.Fatal(err)
	}
	defer c.DeleteImage(ctx, im.UUID)
	if got, err := c.ListImages(ctx, imName); err != nil || len(got) != 1 || got[0].UUID != im.UUID || got[0].Name != imName {
		t.Errorf("ListImages(%q) = %+v, %v", imName, got, err)
	}
	if got, err := c.ListImages(ctx, imName+"-none"); err != nil || len(got) != 0 {
		t.Errorf("ListImages(none) = %+v, %v", got, err)
	}
	if all, err := c.ListImages(ctx, ""); err != nil || len(all) == 0 {
		t.Errorf("ListImages() = %+v, %v", all, err)
	}
}
