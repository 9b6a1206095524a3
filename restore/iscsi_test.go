package restore_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/nutanix/prismsim"
	"github.com/ahvfs/ahvfs/nutanix/prismsim/simtest"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/restore/restoretest"
)

func iscsiCluster(t *testing.T, s *prismsim.Sim) (*restoretest.Cluster, int) {
	t.Helper()
	c := connect(t, s, nutanix.APIV4)
	rc, err := restoretest.New(c, s.URL(), s.User(), s.Password(), s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(s.ISCSIPortal(), ":")
	if i := strings.LastIndex(s.ISCSIPortal(), ":"); i >= 0 {
		port = s.ISCSIPortal()[i+1:]
	}
	p, _ := strconv.Atoi(port)
	return rc, p
}

// TestRestoreISCSI: the default data path writes blank volume group disks
// over iSCSI (only non-zero chunks) and creates the VM from them; the
// simulator's disk files equal the restore point byte for byte and the
// temporary volume group is gone. Then a task failure when creating the
// VM and dropped iSCSI connections during the writes: a failed restore
// leaves nothing behind, a recovered one is exact.
func TestRestoreISCSI(t *testing.T) {
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	rc, port := iscsiCluster(t, s)
	src := []string{enginetest.Ext4Image(t, 128<<20, 7), dataDisk(t, 64<<20, 8)}
	repo, rp := importVM(t, "web01", simConfig(t, rc, "9d1c0e8e-0000-4000-8000-00000000beef", 128<<20, 64<<20), src...)
	ctx := context.Background()
	res, err := restore.Restore(ctx, repo, rc, rp, restore.Options{Name: "web01-iscsi", TargetCluster: "cluster-b",
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
	res, err = restore.Restore(ctx, repo, rc, rp, restore.Options{Name: "web01-drop", ISCSIPort: port, Concurrency: 4,
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
