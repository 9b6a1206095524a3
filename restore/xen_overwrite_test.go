package restore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// TestRestoreXenOverwrite: --overwrite on an XCP-ng pool replaces the
// running original xen01, whose disk 1 the VM xen02 also uses.
//   - Refused before anything exists: a --replace UUID not on the pool.
//   - The original's power-off failing: the pool as it was.
//   - Killed during the power-off (before the commit), swept while the
//     shutdown task still runs: the new VM and its VDIs deleted, the
//     original running again.
//   - Killed while the original is destroyed (after the commit): the
//     sweep finishes the overwrite — the original and its own disk gone,
//     the shared disk kept, the new xen01 holding the restore point.
//   - Overwriting that VM in turn, its destroy failing once: a warning,
//     and the job's teardown finishes it; the new VM keeps the MAC and
//     starts.
func TestRestoreXenOverwrite(t *testing.T) {
	s, xc := xenPool(t,
		xapisim.VMSpec{Name: "xen01", Files: []string{enginetest.Ext4Image(t, 32<<20, 31), enginetest.DataDisk(t, 16<<20, 32)}},
		xapisim.VMSpec{Name: "xen02", Halted: true, DiskSizes: []int64{8 << 20}})
	repo := writableRepo(t)
	rp := xenBackup(t, repo, xc, "xen01")
	ctx := context.Background()
	vmNamed := func(name string) xenVMView {
		t.Helper()
		vms, err := xc.VMsByName(ctx, name)
		if err != nil || len(vms) != 1 {
			t.Fatalf("VM %s: %v %v", name, vms, err)
		}
		return readXenVM(t, s, xc, vms[0].UUID)
	}
	orig, xen02 := vmNamed("xen01"), vmNamed("xen02")
	origMAC := orig.vifs[0].MAC
	if _, err := xc.CreateVBD(ctx, xapi.VBDSpec{VM: xen02.vm.Ref, VDI: orig.vdis[1].Ref, Userdevice: "1"}); err != nil {
		t.Fatal(err)
	}
	// The guest writes after the backup: the restore brings back the point.
	if err := os.WriteFile(orig.files[0], make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// The repository's journal: it keeps the backup's reference snapshot.
	j := repoJournal(t, repo)
	o := restore.Options{Overwrite: true}

	t.Run("refused", func(t *testing.T) {
		before := s.Inventory()
		_, err := restore.RestoreXen(ctx, repo, xc, rp, restore.Options{Overwrite: true, Replace: "00000000-0000-0000-0000-000000000000"})
		if err == nil || !strings.Contains(err.Error(), "to replace is not on the pool") {
			t.Fatalf("unknown --replace: %v", err)
		}
		_, err = restore.RestoreXen(ctx, repo, xc, rp, restore.Options{})
		if err == nil || !strings.Contains(err.Error(), "or --overwrite to replace the original") {
			t.Fatalf("name clash: %v", err)
		}
		xapisimtest.RequireUnchanged(t, before, s.Inventory())
	})
	t.Run("power-off fails", func(t *testing.T) {
		failedRestoreUndone(t, s, j, "VM.hard_shutdown", "power off the original VM", func() error {
			_, err := restore.RestoreXen(ctx, repo, xc, rp, o)
			return err
		})
	})
	t.Run("killed before the commit", func(t *testing.T) {
		before := s.Inventory()
		gate := s.Hold("VM.hard_shutdown")
		defer gate.Release()
		// Killed once the shutdown's task is in the journal.
		killXenRestoreAt(t, s, repo, "", rp, gate, true, func() bool {
			p, _ := j.Pending()
			for _, e := range p {
				if e.Replaces != nil && len(e.Tasks) > 0 {
					return true
				}
			}
			return false
		})
		// The shutdown goes on after the kill, and ends only once the
		// sweep has deleted the new VM: the sweep waits for it before it
		// starts the original again.
		go func() {
			defer gate.Release()
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				n := 0
				for _, v := range s.Inventory().VMs {
					if v.Name == "xen01" && !v.IsSnapshot {
						n++
					}
				}
				if n == 1 {
					return
				}
			}
		}()
		rep, err := clusterjob.SweepXen(ctx, j, xc, nil)
		if err != nil {
			t.Fatalf("sweep: %v (%+v)", err, rep)
		}
		if len(rep.Deleted) != 3 {
			t.Errorf("sweep deleted %q, want the new VM and its 2 VDIs", rep.Deleted)
		}
		s.WaitTasks(30 * time.Second)
		xapisimtest.RequireUnchanged(t, before, s.Inventory())
		noPending(t, j)
	})
	t.Run("killed after the commit", func(t *testing.T) {
		gate := s.Hold("VM.destroy")
		defer gate.Release()
		killXenRestoreAt(t, s, repo, "", rp, gate, true, nil)
		gate.Release()
		s.WaitTasks(30 * time.Second)
		rep, err := clusterjob.SweepXen(ctx, j, xc, nil)
		if err != nil {
			t.Fatalf("sweep: %v (%+v)", err, rep)
		}
		if len(rep.Finished) != 1 {
			t.Errorf("sweep report %+v: want the overwrite finished", rep)
		}
		noPending(t, j)
		if _, err := xc.VMByUUID(ctx, orig.vm.UUID); !errors.Is(err, xapi.ErrNotFound) {
			t.Errorf("the original VM: %v", err)
		}
		if _, err := xc.VDIByUUID(ctx, orig.vdis[0].UUID); !errors.Is(err, xapi.ErrNotFound) {
			t.Errorf("the original's own disk: %v", err)
		}
		if _, err := xc.VDIByUUID(ctx, orig.vdis[1].UUID); err != nil {
			t.Errorf("the disk xen02 shares was destroyed: %v", err)
		}
		// The backup's reference snapshot of the original went with it.
		if ref, err := backup.LoadXenReference(j, orig.vm.UUID); err != nil || ref != nil {
			t.Errorf("the original's reference is still kept: %+v %v", ref, err)
		}
		for _, v := range s.Inventory().VMs {
			if v.IsSnapshot {
				t.Errorf("snapshot %s of %s left on the pool", v.Name, v.SnapshotOf)
			}
		}
		v := vmNamed("xen01")
		sameAsPoint(t, repo, rp, []int{0, 1}, v.files)
		if v.vm.PowerState != "Halted" || len(v.vifs) != 1 || v.vifs[0].MAC != origMAC {
			t.Errorf("new VM %+v, VIFs %+v; the original's MAC %s", v.vm, v.vifs, origMAC)
		}
	})
	t.Run("replaced again", func(t *testing.T) {
		prev := vmNamed("xen01")
		s.FailNext("VM.destroy", "INTERNAL_ERROR", "injected")
		o := o
		o.PowerOn = true
		res, err := restore.RestoreXen(ctx, repo, xc, rp, o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Replaced != prev.vm.UUID || !res.KeptMACs || !res.PoweredOn || !hasWarning(res, "delete the original VM") {
			t.Errorf("result %+v", res)
		}
		noPending(t, j)
		for _, d := range prev.vdis {
			if _, err := xc.VDIByUUID(ctx, d.UUID); !errors.Is(err, xapi.ErrNotFound) {
				t.Errorf("the replaced VM's disk %s: %v", d.UUID, err)
			}
		}
		v := vmNamed("xen01")
		sameAsPoint(t, repo, rp, []int{0, 1}, v.files)
		if v.vm.UUID != res.VMUUID || v.vm.PowerState != "Running" || v.vifs[0].MAC != origMAC {
			t.Errorf("new VM %+v, VIFs %+v; the original's MAC %s", v.vm, v.vifs, origMAC)
		}
	})
}
