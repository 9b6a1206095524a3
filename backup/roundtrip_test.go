package backup_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/restore"
)

// TestRestoreFromBackup backs up a VM of an unusual shape (2 sockets × 3
// cores, 3 GiB, UEFI, Q35, an E1000 NIC, a SCSI and a SATA disk) over
// iSCSI, so the restore point carries the VMConfig the backup writes, and
// restores it with restore.Restore to cluster-b under a new name, over
// iSCSI: the new VM has the same shape, its NIC on the mapped subnet, and
// disks equal to the source disks byte for byte; nothing temporary stays.
// Every value differs from restore's defaults (1 vCPU, 2 GiB, LEGACY, PC,
// VIRTIO, SCSI), so a field the backup stops recording, or records under a
// key restore's tolerant decoder does not read, fails the test.
func TestRestoreFromBackup(t *testing.T) {
	f := newFixture(t, fixtureOptions{ISCSI: true, API: nutanix.APIV4, Shape: prismsim.VMOptions{Sockets: 2, VCPUs: 3, MemoryMiB: 3072,
		BootType: "UEFI", MachineType: "Q35", NICModel: "E1000", Buses: []string{"SCSI", "SATA"}}})
	ctx := context.Background()
	src := f.vms[0]
	orig, err := f.cl.GetVM(ctx, src.UUID)
	if err != nil {
		t.Fatal(err)
	}
	// The simulator built what was asked for (else the checks below prove
	// nothing).
	if orig.NumSockets != 2 || orig.CoresPerSocket != 3 || orig.MemoryBytes != 3<<30 || orig.BootType != nutanix.BootUEFI ||
		orig.MachineType != "Q35" || len(orig.NICs) != 1 || orig.NICs[0].Model != "E1000" || len(orig.Disks) != 2 ||
		orig.Disks[0].Address() != "scsi.0" || orig.Disks[1].Address() != "sata.0" {
		t.Fatalf("source VM %+v", orig)
	}

	v := f.run(backup.Options{DataPath: backup.PathISCSI}).VMs[0]
	f.checkDisks(v, src)
	rp, err := f.repo.RestorePointByID(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	var cfg clusterjob.VMConfig
	if err := json.Unmarshal(rp.Config, &cfg); err != nil || cfg.Version != 1 || cfg.UUID != src.UUID {
		t.Fatalf("restore point config %s (%v)", rp.Config, err)
	}

	res, err := restore.Restore(ctx, f.repo, f.cl, rp, restore.Options{Name: "vm1-restored", TargetCluster: "cluster-b",
		NetworkMap: map[string]string{"vlan10": "vlan20"}, DataPath: restore.DataPathISCSI, ISCSIPort: f.port,
		InitiatorIQN: "iqn.2026-11.io.ahvfs:test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.DataPath != restore.DataPathISCSI || res.Cluster != "cluster-b" || len(res.Disks) != 2 {
		t.Fatalf("result %+v", res)
	}
	got, err := f.cl.GetVM(ctx, res.VMUUID)
	if err != nil {
		t.Fatal(err)
	}
	var clusterB, vlan20 string
	cls, err := f.cl.ListClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cls {
		if c.Name == "cluster-b" {
			clusterB = c.UUID
		}
	}
	sns, err := f.cl.ListSubnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sns {
		if s.Name == "vlan20" && s.ClusterUUID == clusterB {
			vlan20 = s.UUID
		}
	}
	if clusterB == "" || vlan20 == "" {
		t.Fatalf("no cluster-b (%q) or vlan20 on it (%q)", clusterB, vlan20)
	}
	if got.Name != "vm1-restored" || got.ClusterUUID != clusterB {
		t.Errorf("restored VM %q on cluster %s, want vm1-restored on cluster-b %s", got.Name, got.ClusterUUID, clusterB)
	}
	if got.NumSockets != orig.NumSockets || got.CoresPerSocket != orig.CoresPerSocket || got.VCPUs != orig.VCPUs {
		t.Errorf("CPU %d×%d = %d vCPUs, want %d×%d = %d", got.NumSockets, got.CoresPerSocket, got.VCPUs,
			orig.NumSockets, orig.CoresPerSocket, orig.VCPUs)
	}
	if got.MemoryBytes != orig.MemoryBytes {
		t.Errorf("memory %d, want %d", got.MemoryBytes, orig.MemoryBytes)
	}
	if got.BootType != orig.BootType || got.MachineType != orig.MachineType {
		t.Errorf("boot %s machine %s, want %s %s", got.BootType, got.MachineType, orig.BootType, orig.MachineType)
	}
	if len(got.Disks) != len(orig.Disks) {
		t.Fatalf("%d disks, want %d: %+v", len(got.Disks), len(orig.Disks), got.Disks)
	}
	for i, d := range got.Disks {
		o := orig.Disks[i]
		if d.Address() != o.Address() || d.SizeBytes != o.SizeBytes || d.IsCDROM {
			t.Errorf("disk %d: %s %d bytes (CD-ROM %v), want %s %d bytes", i, d.Address(), d.SizeBytes, d.IsCDROM, o.Address(), o.SizeBytes)
		}
	}
	if len(got.NICs) != 1 || got.NICs[0].SubnetUUID != vlan20 || got.NICs[0].Model != orig.NICs[0].Model {
		t.Errorf("NICs %+v, want one %s NIC on vlan20 of cluster-b (%s)", got.NICs, orig.NICs[0].Model, vlan20)
	}
	// The MAC is the cluster's choice: the original VM still exists.
	if len(got.NICs) == 1 && (got.NICs[0].MAC == orig.NICs[0].MAC || res.KeptMACs) {
		t.Errorf("MAC %s kept (%v) although the original VM exists", got.NICs[0].MAC, res.KeptMACs)
	}

	vi, ok := f.sim.VM("vm1-restored")
	if !ok || len(vi.Disks) != len(src.Disks) {
		t.Fatalf("simulator VM %+v", vi)
	}
	for i := range src.Disks {
		sameFileBytes(t, vi.Disks[i], src.Disks[i])
	}
	f.assertClean(1) // the source's reference snapshot; no volume group or image
}

// sameFileBytes fails the test unless the two files hold the same bytes.
func sameFileBytes(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if n := diffCount(a, b); n != 0 {
		t.Errorf("%s differs from %s: %d bytes (-1: sizes %d and %d)", got, want, n, len(a), len(b))
	}
}
