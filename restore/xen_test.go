package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

const eth0 = "Pool-wide network associated with eth0" // the simulator's first network

// xenPool starts an XCP-ng pool (the simulator) with vms and connects
// to it.
func xenPool(t *testing.T, vms ...xapisim.VMSpec) (*xapisim.Sim, *xapi.Client) {
	t.Helper()
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: vms})
	xc, err := xapi.Connect(context.Background(), xapi.Options{URL: s.URL(), User: s.User(), Password: s.Password(), CAFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xc.Close(context.Background()) })
	return s, xc
}

// writableRepo is an empty repository for a backup.
func writableRepo(t *testing.T) *engine.Repository {
	t.Helper()
	return enginetest.Open(t, enginetest.Init(t, engine.InitOptions{ChunkSize: 1 << 20}), engine.OpenOptions{Writable: true})
}

// xenBackup backs up the pool's VM vm and returns its restore point.
func xenBackup(t *testing.T, repo *engine.Repository, xc *xapi.Client, vm string) *engine.RestorePoint {
	t.Helper()
	ctx := context.Background()
	rep, err := backup.RunXen(ctx, repo, xc, backup.Options{VMs: []string{vm}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.VMs) != 1 || rep.VMs[0].Err != "" {
		t.Fatalf("backup of %s: %+v", vm, rep.VMs)
	}
	rp, err := repo.RestorePointByID(ctx, rep.VMs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// sameAsPoint fails unless each file holds disk n of rp (files[i] for
// disks[i]) byte for byte.
func sameAsPoint(t *testing.T, repo *engine.Repository, rp *engine.RestorePoint, disks []int, files []string) {
	t.Helper()
	if len(files) != len(disks) {
		t.Fatalf("%d disk files for %d disks", len(files), len(disks))
	}
	for i, n := range disks {
		dr, err := repo.OpenDisk(context.Background(), rp, n)
		if err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(io.NewSectionReader(dr, 0, dr.Size()))
		dr.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s (%d bytes) differs from disk-%d of %s (%d bytes)", files[i], len(got), n, rp.Name(), len(want))
		}
	}
}

// xenVMView is a restored VM as XAPI reads it: its disks (VBD and VDI in
// userdevice order) and network interfaces with their networks.
type xenVMView struct {
	vm    xapi.VM
	vbds  []xapi.VBD
	vdis  []xapi.VDI
	vifs  []xapi.VIF
	nets  []string // the VIFs' network names
	files []string // the VDIs' data files on the simulator
}

func readXenVM(t *testing.T, s *xapisim.Sim, xc *xapi.Client, uuid string) xenVMView {
	t.Helper()
	ctx := context.Background()
	v, err := xc.VMByUUID(ctx, uuid)
	if err != nil {
		t.Fatal(err)
	}
	out := xenVMView{vm: v}
	for _, ref := range v.VBDs {
		b, err := xc.VBD(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if b.Type != "Disk" {
			continue
		}
		d, err := xc.VDI(ctx, b.VDI)
		if err != nil {
			t.Fatal(err)
		}
		out.vbds, out.vdis = append(out.vbds, b), append(out.vdis, d)
	}
	for _, ref := range v.VIFs {
		f, err := xc.VIF(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		n, err := xc.Network(ctx, f.Network)
		if err != nil {
			t.Fatal(err)
		}
		out.vifs, out.nets = append(out.vifs, f), append(out.nets, n.NameLabel)
	}
	info, err := s.VM(uuid)
	if err != nil {
		t.Fatal(err)
	}
	out.files = info.Disks
	return out
}

func hasWarning(res *restore.Result, sub string) bool {
	for _, w := range res.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// noPending fails if the journal still records objects.
func noPending(t *testing.T, j *clusterjob.Journal) {
	t.Helper()
	p, err := j.Pending()
	if err != nil || len(p) != 0 {
		t.Fatalf("journal still records %+v (%v)", p, err)
	}
}

func repoJournal(t *testing.T, repo *engine.Repository) *clusterjob.Journal {
	t.Helper()
	j, err := clusterjob.RepositoryJournal(repo)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestRestoreXenToXen: an XCP-ng VM backed up from the simulator and
// restored beside the original under a new name: its VDIs' files equal
// the restore point byte for byte, the VM keeps firmware, secure boot,
// platform, vCPUs (max and at startup) and all four memory limits, its
// disks keep their userdevices (bootable on 0) and the VIF its network;
// the MAC is a new one while the original VM has it, and the recorded
// one once the original is gone. A name clash and a bad SR and network
// map are refused before anything exists.
func TestRestoreXenToXen(t *testing.T) {
	s, xc := xenPool(t, xapisim.VMSpec{Name: "xen01", Firmware: "uefi", SecureBoot: true, VCPUs: 4, MemoryBytes: 2 << 30,
		Files: []string{enginetest.Ext4Image(t, 32<<20, 11), enginetest.DataDisk(t, 16<<20, 12)}})
	repo := writableRepo(t)
	rp := xenBackup(t, repo, xc, "xen01")
	ctx := context.Background()
	orig, err := xc.VMsByName(ctx, "xen01")
	if err != nil || len(orig) != 1 {
		t.Fatalf("original VM: %v %v", orig, err)
	}
	origView := readXenVM(t, s, xc, orig[0].UUID)
	origMAC := origView.vifs[0].MAC

	before := s.Inventory()
	res, err := restore.RestoreXen(ctx, repo, xc, rp, restore.Options{Name: "xen01-r", PowerOn: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("result %+v", res)
	v := readXenVM(t, s, xc, res.VMUUID)
	sameAsPoint(t, repo, rp, []int{0, 1}, v.files)
	for i, f := range origView.files { // the guest has not written since
		sameFile(t, v.files[i], f)
	}
	if v.vm.NameLabel != "xen01-r" || v.vm.PowerState != "Running" || !res.PoweredOn || v.vm.Firmware() != "uefi" || !v.vm.SecureBoot() ||
		v.vm.Platform["device-model"] != "qemu-upstream-uefi" || v.vm.VCPUsMax != 4 || v.vm.VCPUsAtStartup != 4 ||
		v.vm.MemoryStaticMax != 2<<30 || v.vm.MemoryDynamicMax != 2<<30 || v.vm.MemoryDynamicMin != 2<<30 || v.vm.MemoryStaticMin != 512<<20 {
		t.Errorf("restored VM %+v", v.vm)
	}
	if len(v.vbds) != 2 || v.vbds[0].Userdevice != "0" || !v.vbds[0].Bootable || v.vbds[1].Userdevice != "1" || v.vbds[1].Bootable ||
		v.vdis[0].NameLabel != "xen01-r 0" || res.Disks[1].Address != "xvd.1" {
		t.Errorf("disks %+v %+v, result %+v", v.vbds, v.vdis, res.Disks)
	}
	if len(v.vifs) != 1 || v.nets[0] != eth0 || v.vifs[0].MAC == origMAC || res.KeptMACs || !hasWarning(res, "in use") {
		t.Errorf("VIFs %+v on %v; the original's MAC is %s; result %+v", v.vifs, v.nets, origMAC, res)
	}
	d := xapisim.Diff(before, s.Inventory())
	if len(d) != 3 { // the VM and its two VDIs
		t.Errorf("the pool changed by %d objects, want 3:\n%v", len(d), d)
	}
	noPending(t, repoJournal(t, repo))

	// Refused before anything exists: the name is taken, no such SR, a
	// network map entry no NIC uses.
	before = s.Inventory()
	_, err = restore.RestoreXen(ctx, repo, xc, rp, restore.Options{Name: "xen01-r", SR: "nope", NetworkMap: map[string]string{"nosuch": "vlan20"}})
	for _, want := range []string{`"xen01-r" already exists`, `--sr "nope"`, "--network-map nosuch"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	_, err = restore.RestoreXen(ctx, repo, xc, rp, restore.Options{Name: "xen01-x", TargetCluster: "cluster-a", Container: "c"})
	if err == nil || !strings.Contains(err.Error(), "--container is for AHV") || !strings.Contains(err.Error(), "--target-cluster is for AHV") {
		t.Errorf("AHV options: %v", err)
	}
	xapisimtest.RequireUnchanged(t, before, s.Inventory())

	// The original gone: disk-1 alone, on vlan20, keeps the recorded MAC
	// and its userdevice.
	if err := xc.HardShutdown(ctx, orig[0].Ref); err != nil {
		t.Fatal(err)
	}
	if err := xc.DestroyVM(ctx, orig[0].Ref); err != nil {
		t.Fatal(err)
	}
	res, err = restore.RestoreXen(ctx, repo, xc, rp, restore.Options{Name: "xen01-d1", Disks: []int{1}, SR: "Local storage",
		NetworkMap: map[string]string{eth0: "vlan20"}})
	if err != nil {
		t.Fatal(err)
	}
	v = readXenVM(t, s, xc, res.VMUUID)
	sameAsPoint(t, repo, rp, []int{1}, v.files)
	if len(v.vbds) != 1 || v.vbds[0].Userdevice != "1" || v.vm.PowerState != "Halted" || len(v.vifs) != 1 || v.nets[0] != "vlan20" ||
		v.vifs[0].MAC != origMAC || !res.KeptMACs || res.NICs[0] != "vlan20" {
		t.Errorf("selective restore: VM %+v, VBDs %+v, VIFs %+v on %v, result %+v", v.vm, v.vbds, v.vifs, v.nets, res)
	}
}

// TestRestoreAHVToXen: a VM backed up from the Prism simulator (secure
// boot, Q35, 2 sockets × 2 cores, an E1000 NIC on vlan10) restored onto
// the XCP-ng simulator: the VDIs equal the AHV VM's disks byte for byte
// on userdevices 0 and 1 (bootable on 0), firmware uefi with secure boot,
// 4 vCPUs as 2 cores per socket, the memory, vlan10 mapped to a pool
// network with the AHV MAC (no VM of the pool has it), and warnings for
// the machine type, the NIC model and the guest's devices. Without the
// map, the AHV subnet is refused.
func TestRestoreAHVToXen(t *testing.T) {
	ps := simtest.Start(t, simtest.Options{})
	files := []string{enginetest.Ext4Image(t, 32<<20, 13), enginetest.DataDisk(t, 16<<20, 14)}
	vm, err := ps.AddVM(context.Background(), "web01", files, prismsim.VMOptions{BootType: "SECURE_BOOT", MachineType: "Q35",
		Sockets: 2, VCPUs: 2, MemoryMiB: 1536, NICModel: "E1000"})
	if err != nil {
		t.Fatal(err)
	}
	cl := connect(t, ps, nutanix.APIV3) // the REST path reads v3 snapshots
	repo := writableRepo(t)
	ctx := context.Background()
	rep, err := backup.Run(ctx, repo, cl, backup.Options{VMs: []string{"web01"}, DataPath: backup.PathREST})
	if err != nil || len(rep.VMs) != 1 || rep.VMs[0].Err != "" {
		t.Fatalf("backup: %v %+v", err, rep)
	}
	rp, err := repo.RestorePointByID(ctx, rep.VMs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	ahv := findVM(t, cl, vm.UUID)

	s, xc := xenPool(t)
	before := s.Inventory()
	_, err = restore.RestoreXen(ctx, repo, xc, rp, restore.Options{})
	if err == nil || !strings.Contains(err.Error(), "AHV subnet vlan10 not found") || !strings.Contains(err.Error(), "--network-map vlan10=NETWORK") {
		t.Fatalf("unmapped AHV subnet: %v", err)
	}
	xapisimtest.RequireUnchanged(t, before, s.Inventory())

	res, err := restore.RestoreXen(ctx, repo, xc, rp, restore.Options{NetworkMap: map[string]string{"vlan10": "vlan20"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warnings: %q", res.Warnings)
	v := readXenVM(t, s, xc, res.VMUUID)
	sameAsPoint(t, repo, rp, []int{0, 1}, v.files)
	for i := range files {
		sameFile(t, v.files[i], vm.Disks[i])
	}
	if v.vm.NameLabel != "web01" || v.vm.Firmware() != "uefi" || !v.vm.SecureBoot() || v.vm.VCPUsMax != 4 || v.vm.VCPUsAtStartup != 4 ||
		v.vm.Platform["cores-per-socket"] != "2" || v.vm.MemoryStaticMax != 1536<<20 || v.vm.MemoryStaticMin != 1536<<20 || v.vm.DomainType != "hvm" {
		t.Errorf("restored VM %+v", v.vm)
	}
	if len(v.vbds) != 2 || v.vbds[0].Userdevice != "0" || !v.vbds[0].Bootable || v.vbds[1].Userdevice != "1" || v.vbds[1].Bootable {
		t.Errorf("VBDs %+v", v.vbds)
	}
	if len(v.vifs) != 1 || v.nets[0] != "vlan20" || !strings.EqualFold(v.vifs[0].MAC, ahv.NICs[0].MAC) || !res.KeptMACs {
		t.Errorf("VIFs %+v on %v, AHV NIC %+v, result %+v", v.vifs, v.nets, ahv.NICs, res)
	}
	for _, w := range []string{"machine type Q35", "model E1000", "restored from AHV"} {
		if !hasWarning(res, w) {
			t.Errorf("no warning about %q: %q", w, res.Warnings)
		}
	}
	noPending(t, repoJournal(t, repo))
}

// TestRestoreXenToAHV: an XCP-ng VM (UEFI) backed up from the XCP-ng
// simulator and restored onto the Prism simulator with restore.Restore:
// the AHV VM's disks equal the restore point byte for byte on SCSI 0 and
// 1, boot type UEFI, the pool network mapped to vlan10 with the VIF's
// MAC, and warnings for what AHV does not carry. Without the map, the
// pool's network is refused as a subnet.
func TestRestoreXenToAHV(t *testing.T) {
	s, xc := xenPool(t, xapisim.VMSpec{Name: "xen01", Firmware: "uefi", VCPUs: 2, MemoryBytes: 1 << 30,
		Files: []string{enginetest.Ext4Image(t, 32<<20, 15), enginetest.DataDisk(t, 16<<20, 16)}})
	repo := writableRepo(t)
	rp := xenBackup(t, repo, xc, "xen01")
	ctx := context.Background()
	xv, err := xc.VMsByName(ctx, "xen01")
	if err != nil || len(xv) != 1 {
		t.Fatal(xv, err)
	}
	xen := readXenVM(t, s, xc, xv[0].UUID)

	ps := simtest.Start(t, simtest.Options{})
	cl := connect(t, ps, nutanix.APIAuto)
	o := restore.Options{TargetCluster: "cluster-a", DataPath: restore.DataPathREST}
	_, err = restore.Restore(ctx, repo, cl, rp, o)
	if err == nil || !strings.Contains(err.Error(), "subnet "+eth0+" not found") || !strings.Contains(err.Error(), "--network-map") {
		t.Fatalf("unmapped pool network: %v", err)
	}
	o.NetworkMap = map[string]string{eth0: "vlan10"}
	res, err := restore.Restore(ctx, repo, cl, rp, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warnings: %q", res.Warnings)
	vi, ok := ps.VM("xen01")
	if !ok || len(vi.Disks) != 2 {
		t.Fatalf("AHV VM %+v", vi)
	}
	sameAsPoint(t, repo, rp, []int{0, 1}, vi.Disks)
	for i, f := range xen.files {
		sameFile(t, vi.Disks[i], f)
	}
	v := findVM(t, cl, res.VMUUID)
	if v.BootType != nutanix.BootUEFI || v.VCPUs != 2 || v.MemoryBytes != 1<<30 || len(v.Disks) != 2 || v.Disks[0].Bus != "SCSI" ||
		v.Disks[0].Index != 0 || v.Disks[1].Bus != "SCSI" || v.Disks[1].Index != 1 || res.Disks[0].Address != "scsi.0" {
		t.Errorf("AHV VM %+v, result %+v", v, res)
	}
	if len(v.NICs) != 1 || v.NICs[0].SubnetUUID != subnetUUID(t, cl, "vlan10", v.ClusterUUID) || !strings.EqualFold(v.NICs[0].MAC, xen.vifs[0].MAC) {
		t.Errorf("NICs %+v, the VIF's MAC %s", v.NICs, xen.vifs[0].MAC)
	}
	for _, w := range []string{"platform flags not carried", "/dev/xvda", "Nutanix Guest Tools"} {
		if !hasWarning(res, w) {
			t.Errorf("no warning about %q: %q", w, res.Warnings)
		}
	}
	assertClean(t, ps, 1)
}

// importedPoint is a small restore point of an AHV VM (two data disks, a
// NIC on a subnet named like the simulator's vlan20) in a fresh
// repository.
func importedPoint(t *testing.T) (*engine.Repository, *engine.RestorePoint) {
	t.Helper()
	cfg := map[string]any{"Name": "web01", "NumSockets": 1, "CoresPerSocket": 2, "VCPUs": 2, "MemoryBytes": 1 << 30,
		"BootType": "UEFI", "Disks": []map[string]any{{"Bus": "SCSI", "Index": 0, "SizeBytes": 16 << 20}, {"Bus": "SCSI", "Index": 1, "SizeBytes": 16 << 20}},
		"NICs": []map[string]any{{"SubnetName": "vlan20", "MAC": "50:6b:8d:aa:bb:02", "Model": "VIRTIO"}}}
	return importVM(t, "web01", cfg, dataDisk(t, 16<<20, 21), dataDisk(t, 16<<20, 22))
}

// TestRestoreXenFailureCleanup: a restore that fails at each step (VDI
// import, VM creation, a VIF), or is cancelled during an import, leaves
// the pool as it was and its journal empty; then one killed (SIGKILL)
// while XAPI creates its VM leaves journal entries that
// clusterjob.SweepXen turns into exactly the pool of before — the VM,
// whose answer never came, found by its unique name.
func TestRestoreXenFailureCleanup(t *testing.T) {
	repo, rp := importedPoint(t)
	s, xc := xenPool(t)
	ctx := context.Background()
	j, err := clusterjob.OpenJournal(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	o := restore.Options{Name: "web01-r", Journal: j}
	for _, method := range []string{"import_raw_vdi", "VM.create", "VIF.create"} {
		t.Run(method, func(t *testing.T) {
			failedRestoreUndone(t, s, j, method, "INTERNAL_ERROR", func() error {
				_, err := restore.RestoreXen(ctx, repo, xc, rp, o)
				return err
			})
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		before := s.Inventory()
		gate := s.Hold("import_raw_vdi")
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := restore.RestoreXen(cctx, repo, xc, rp, o)
			done <- err
		}()
		select {
		case <-gate.Arrived():
		case err := <-done:
			t.Fatalf("restore ended before its import: %v", err)
		}
		cancel()
		gate.Release()
		if err := <-done; err == nil {
			t.Fatal("a cancelled restore succeeded")
		}
		s.WaitTasks(30 * time.Second)
		xapisimtest.RequireUnchanged(t, before, s.Inventory())
		noPending(t, j)
	})
	t.Run("killed", func(t *testing.T) {
		before := s.Inventory()
		gate := s.Hold("VM.create")
		defer gate.Release()
		killXenRestoreAt(t, s, repo, j.Dir(), rp, gate, false, nil)
		gate.Release() // xapi finishes the call of a client that is gone
		var leftVM bool
		for deadline := time.Now().Add(30 * time.Second); !leftVM && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			for _, v := range s.Inventory().VMs {
				leftVM = leftVM || strings.HasPrefix(v.Name, "ahvfs-restore-web01-r-")
			}
		}
		if !leftVM {
			t.Fatalf("the killed restore's VM never appeared: %v", xapisim.Diff(before, s.Inventory()))
		}
		pending, err := j.Pending()
		if err != nil || len(pending) != 3 {
			t.Fatalf("journal after the kill: %+v %v; want 2 VDIs and a VM", pending, err)
		}
		rep, err := clusterjob.SweepXen(ctx, j, xc, nil)
		if err != nil {
			t.Fatalf("sweep: %v (%+v)", err, rep)
		}
		if len(rep.Deleted) != 3 {
			t.Errorf("sweep deleted %q, want the VM and its 2 VDIs", rep.Deleted)
		}
		xapisimtest.RequireUnchanged(t, before, s.Inventory())
		noPending(t, j)
	})
}

// failedRestoreUndone runs a restore whose next call of method fails: it
// must fail with want in its error, and leave the pool as it was and the
// journal j empty.
func failedRestoreUndone(t *testing.T, s *xapisim.Sim, j *clusterjob.Journal, method, want string, run func() error) {
	t.Helper()
	before := s.Inventory()
	s.FailNext(method, "INTERNAL_ERROR", "injected")
	if err := run(); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore with a failing %s: %v", method, err)
	}
	s.WaitTasks(30 * time.Second)
	xapisimtest.RequireUnchanged(t, before, s.Inventory())
	noPending(t, j)
}

// killXenRestoreAt runs the restore of rp (TestRestoreXenHelperProcess:
// under the name web01-r through journal, or overwriting the original
// through the repository's journal) in a child process and kills it
// (SIGKILL) once it waits at gate and ready, when set, holds.
func killXenRestoreAt(t *testing.T, s *xapisim.Sim, repo *engine.Repository, journal string, rp *engine.RestorePoint,
	gate *xapisim.Gate, overwrite bool, ready func() bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestoreXenHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "AHVFS_XEN_RESTORE_CHILD=1", "XEN_URL="+s.URL(), "XEN_CA="+s.CAFile(),
		"XEN_PASSWORD_FILE="+s.PasswordFile(), "XEN_REPO="+repo.Dir(), "XEN_JOURNAL="+journal, "XEN_POINT="+rp.Name(),
		fmt.Sprintf("XEN_OVERWRITE=%t", overwrite))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-gate.Arrived():
	case err := <-exited:
		t.Fatalf("the restore ended (%v) before its call was held:\n%s", err, out.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("the restore never made the call held:\n%s", out.String())
	}
	for deadline := time.Now().Add(time.Minute); ready != nil && !ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the restore never got ready to be killed:\n%s", out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// TestRestoreXenHelperProcess is the restore TestRestoreXenFailureCleanup
// and TestRestoreXenOverwrite kill: it runs only as their child.
func TestRestoreXenHelperProcess(t *testing.T) {
	if os.Getenv("AHVFS_XEN_RESTORE_CHILD") != "1" {
		return // only as the child process of TestRestoreXenFailureCleanup
	}
	ctx := context.Background()
	pw, err := os.ReadFile(os.Getenv("XEN_PASSWORD_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	xc, err := xapi.Connect(ctx, xapi.Options{URL: os.Getenv("XEN_URL"), User: "root", Password: strings.TrimSpace(string(pw)),
		CAFile: os.Getenv("XEN_CA")})
	if err != nil {
		t.Fatal(err)
	}
	repo := enginetest.Open(t, os.Getenv("XEN_REPO"), engine.OpenOptions{})
	rp, err := repo.Resolve(ctx, os.Getenv("XEN_POINT"))
	if err != nil {
		t.Fatal(err)
	}
	o := restore.Options{Overwrite: true} // the repository's journal
	if os.Getenv("XEN_OVERWRITE") != "true" {
		j, err := clusterjob.OpenJournal(os.Getenv("XEN_JOURNAL"))
		if err != nil {
			t.Fatal(err)
		}
		o = restore.Options{Name: "web01-r", Journal: j}
	}
	_, err = restore.RestoreXen(ctx, repo, xc, rp, o)
	fmt.Println("restore returned:", err) // only if the parent did not kill it
}
