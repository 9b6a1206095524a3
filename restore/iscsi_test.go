package restore_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/ahvfs/ahvfs/restore"
)

func iscsiCluster(t *testing.T, s *prismsim.Sim, api nutanix.APIVersion) (*nutanix.Client, int) {
	t.Helper()
	c := connect(t, s, api)
	p, err := strconv.Atoi(s.ISCSIPortal()[strings.LastIndex(s.ISCSIPortal(), ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

// TestRestoreISCSI: the default data path writes blank volume group disks
// over iSCSI (only non-zero chunks) and creates the VM from them; the
// simulator's disk files equal the restore point byte for byte and the
// temporary volume group is gone. Then a task failure when creating the
// VM and dropped iSCSI connections during the writes: a failed restore
// leaves nothing behind, a recovered one is exact.
func TestRestoreISCSI(t *testing.T) {
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	rc, port := iscsiCluster(t, s, nutanix.APIV4)
	src := []string{enginetest.Ext4Image(t, 128<<20, 7), dataDisk(t, 64<<20, 8)}
	repo, rp := importVM(t, "web01", simConfig(t, rc, "9d1c0e8e-0000-4000-8000-00000000beef", 128<<20, 64<<20), src...)
	ctx := context.Background()
	res, err := restore.Restore(ctx, repo, rc, rp, restore.Options{Name: "web01-iscsi", TargetCluster: "cluster-b", Container: "default",
		NetworkMap: map[string]string{"vlan10": "vlan20"}, PowerOn: true, ISCSIPort: port})
	if err != nil {
		t.Fatal(err)
	}
	if res.DataPath != restore.DataPathISCSI || res.Written >= res.Bytes {
		t.Errorf("data path %s, wrote %d of %d bytes (zero chunks must be skipped)", res.DataPath, res.Written, res.Bytes)
	}
	vi, ok := s.VM("web01-iscsi")
	if !ok || len(vi.Disks) != 2 {
		t.Fatalf("VM %+v", vi)
	}
	for i := range src {
		sameFile(t, vi.Disks[i], src[i])
	}
	if v := findVM(t, rc, res.VMUUID); v.PowerState != nutanix.PowerOn || v.BootType != nutanix.BootUEFI || len(v.Disks) != 2 {
		t.Errorf("VM %+v", v)
	}
	assertClean(t, s, 1)

	// A task failure when the VM is created: the volume group is removed.
	s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"CreateVm"}})
	_, err = restore.Restore(ctx, repo, rc, rp, restore.Options{Name: "web01-fail", TargetCluster: "cluster-b",
		NetworkMap: map[string]string{"vlan10": "vlan20"}, ISCSIPort: port})
	s.SetFaults(prismsim.Faults{})
	if err == nil {
		t.Fatal("restore with a failing CreateVm task succeeded")
	}
	assertClean(t, s, 1)

	// Dropped iSCSI connections while writing: the initiator recovers
	// and the result is exact, or the restore fails and leaves nothing.
	var drops atomic.Int32
	dropCtx, stop := context.WithCancel(ctx)
	defer stop()
	_, err = restore.Restore(ctx, repo, rc, rp, restore.Options{Name: "web01-drop", ISCSIPort: port, Concurrency: 4,
		Progress: func(_ int, done, total int64) {
			if done > total/3 && drops.Add(1) <= 3 {
				go s.DropISCSIConnections(dropCtx)
			}
		}})
	if err != nil {
		t.Logf("restore with dropped connections failed: %v", err)
		assertClean(t, s, 1)
		return
	}
	vi, _ = s.VM("web01-drop")
	for i := range src {
		sameFile(t, vi.Disks[i], src[i])
	}
	assertClean(t, s, 2)
}

// TestRestoreISCSIV3: the same path on the v3 backend (v2.0 volume group
// with create_config, v3 VM disks cloned from the VG disks' vmdisk_uuid);
// a --container that does not exist is refused before anything exists
// (named by the caller's keys when it gives them), and a failing volume
// group task leaves nothing behind.
func TestRestoreISCSIV3(t *testing.T) {
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	c, port := iscsiCluster(t, s, nutanix.APIV3)
	src := []string{dataDisk(t, 32<<20, 3), dataDisk(t, 16<<20, 4)}
	repo, rp := importVM(t, "db01", simConfig(t, c, "9d1c0e8e-0000-4000-8000-00000000cafe", 32<<20, 16<<20), src...)
	ctx := context.Background()
	o := restore.Options{Name: "db01-v3", TargetCluster: "cluster-b", Container: "nope",
		NetworkMap: map[string]string{"vlan10": "vlan20"}, ISCSIPort: port}
	if _, err := restore.Restore(ctx, repo, c, rp, o); err == nil || !strings.Contains(err.Error(), `--container "nope"`) {
		t.Fatalf("unknown container: %v", err)
	}
	// A caller that is no CLI (a recovery plan) has the options named by
	// its own keys.
	keyed := o
	keyed.NetworkMap = map[string]string{"vlan10": "nosuch"}
	keyed.Keys = map[string]string{"--container": "container", "--network-map": "network_map"}
	_, err := restore.Restore(ctx, repo, c, rp, keyed)
	if err == nil || !strings.Contains(err.Error(), `container "nope"`) || !strings.Contains(err.Error(), "network_map vlan10=nosuch") ||
		strings.Contains(err.Error(), "--") {
		t.Fatalf("errors named by the caller's keys: %v", err)
	}
	assertClean(t, s, 0)

	s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"VolumeGroupCreate"}})
	o.Container = "default"
	_, err = restore.Restore(ctx, repo, c, rp, o)
	s.SetFaults(prismsim.Faults{})
	if err == nil {
		t.Fatal("restore with a failing volume group task succeeded")
	}
	assertClean(t, s, 0)

	res, err := restore.Restore(ctx, repo, c, rp, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.DataPath != restore.DataPathISCSI || res.Written >= res.Bytes {
		t.Errorf("data path %s, wrote %d of %d bytes", res.DataPath, res.Written, res.Bytes)
	}
	vi, ok := s.VM("db01-v3")
	if !ok || len(vi.Disks) != 2 {
		t.Fatalf("VM %+v", vi)
	}
	for i := range src {
		sameFile(t, vi.Disks[i], src[i])
	}
	assertClean(t, s, 1)
}
