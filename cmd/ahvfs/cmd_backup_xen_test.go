package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// xenSim is an XCP-ng pool (the simulator, in this process) with VM
// "xen01" on two real ext4 disks, and the flags that reach it.
func xenSim(t *testing.T) (*xapisim.Sim, []string) {
	t.Helper()
	clearSiteEnv(t)
	s := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01",
		Files: []string{enginetest.Ext4Image(t, 48<<20, 1), enginetest.Ext4Image(t, 16<<20, 2)}}}})
	return s, []string{"--source", "xapi://" + s.Addr(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile()}
}

// sameAsXen compares each disk of restore point name with xen01's live
// disk files.
func sameAsXen(t *testing.T, s *xapisim.Sim, repo, name string) {
	t.Helper()
	for n := range 2 {
		file, err := s.DiskFile("xen01", n)
		if err != nil {
			t.Fatal(err)
		}
		sameDiskAsLive(t, repo, name, n, file)
	}
}

// xenSnapshots returns the snapshots on the pool, and the VDIs that no
// VM or snapshot uses and xen01's reference in repo does not name (what
// a job could leak).
func xenSnapshots(t *testing.T, s *xapisim.Sim, repo string) (snaps []xapisim.VMObject, orphans []string) {
	t.Helper()
	named := map[string]bool{}
	if ref, err := backup.LoadXenReference(openJournal(t, repo), s.VMs()[0].UUID); err != nil {
		t.Fatal(err)
	} else if ref != nil {
		for _, d := range ref.Disks {
			named[d.SnapshotVDI] = true
		}
	}
	inv := s.Inventory()
	for _, v := range inv.VMs {
		if v.IsSnapshot {
			snaps = append(snaps, v)
		}
	}
	for _, d := range inv.VDIs {
		if len(d.VMs) == 0 && !named[d.UUID] {
			orphans = append(orphans, d.UUID)
		}
	}
	return snaps, orphans
}

// TestXenBackupCLI: `ahvfs backup --source xapi://` makes a full and an
// incremental with each strategy, byte-exact (`ahvfs cat`); an AHV VM's
// restore points sit beside them in the same repository; bad sources get
// usage errors.
func TestXenBackupCLI(t *testing.T) {
	s, args := xenSim(t)
	ps, repo, pargs := backupSim(t)
	xargs := append([]string{"--repo", repo}, args...)
	for i, strategy := range []string{"cbt", "cbt", "xva", "xva"} {
		if i > 0 {
			overwrite(t, mustDisk(t, s, 0), int64(i)<<20, byte(i))
		}
		rep, errs, code := backupJSON(t, xargs, "--strategy", strategy)
		if code != 0 || len(rep.VMs) != 1 || rep.VMs[0].Err != "" {
			t.Fatalf("backup %d (%s): exit %d: %s %+v", i, strategy, code, errs, rep)
		}
		v := rep.VMs[0]
		wantLevel := []string{"full", "incremental", "full", "incremental"}[i]
		if v.Level != wantLevel {
			t.Fatalf("backup %d (%s): level %s, want %s (%v)", i, strategy, v.Level, wantLevel, v.Warnings)
		}
		sameAsXen(t, s, repo, v.RestorePoint)
		if snaps, orphans := xenSnapshots(t, s, repo); len(snaps) != 1 || len(orphans) != 0 {
			t.Fatalf("backup %d: %d snapshots and VDIs %v left on the pool, want the one reference", i, len(snaps), orphans)
		}
	}
	if rep, errs, code := backupJSON(t, pargs, "--vm", "web01"); code != 0 {
		t.Fatalf("AHV backup into the same repository: %d %s %+v", code, errs, rep)
	}
	sameAsLive(t, repo, ps, "web01")
	var list []struct{ VM, Level string }
	if err := json.Unmarshal([]byte(mustCLI(t, "list", "--json", "--repo", repo)), &list); err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, rp := range list {
		per[rp.VM]++
	}
	if per["xen01"] != 4 || per["web01"] != 1 {
		t.Fatalf("restore points per VM: %v, want xen01 4 and web01 1", per)
	}
	// An XCP-ng restore point exported for another hypervisor: its
	// paravirtual disks go on SCSI, byte-exact.
	out := t.TempDir() + "/export"
	js := mustCLI(t, "export", "--repo", repo, "--format", "qcow2", "--out", out, "--json", "xen01@latest")
	var res struct {
		Disks   []struct{ File string }
		Libvirt string
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || len(res.Disks) != 2 {
		t.Fatalf("export: %v: %s", err, js)
	}
	for n, d := range res.Disks {
		if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", mustDisk(t, s, n), d.File).CombinedOutput(); err != nil {
			t.Fatalf("exported disk-%d: qemu-img compare: %v %s", n, err, b)
		}
	}
	if xml, err := os.ReadFile(res.Libvirt); err != nil || !strings.Contains(string(xml), "bus='scsi'") && !strings.Contains(string(xml), `bus="scsi"`) {
		t.Fatalf("libvirt description (%v) puts the disks on no SCSI bus:\n%s", err, xml)
	}
	for _, bad := range [][]string{
		{"--source", "nfs://x"},
		{"--source", "xapi://" + s.Addr(), "--prism", "pc:9440"},
		{"--source", "xapi://" + s.Addr(), "--strategy", "tape"},
	} {
		_, errs, code := runCLI(t, "", append([]string{"backup", "--repo", repo, "--password-file", s.PasswordFile()}, bad...)...)
		if code != exitUsage {
			t.Fatalf("backup %v: exit %d (%s), want a usage error", bad, code, errs)
		}
	}
}

func mustDisk(t *testing.T, s *xapisim.Sim, n int) string {
	t.Helper()
	f, err := s.DiskFile("xen01", n)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestXenBackupKill kills a real `ahvfs backup --source xapi://` with
// SIGKILL at random moments, with both strategies; after each,
// `ahvfs cleanup --source` leaves exactly the reference snapshot and no
// stray VDI on the pool, the repository verifies, and the next backup is
// exact.
func TestXenBackupKill(t *testing.T) {
	s, args := xenSim(t)
	repo := t.TempDir() + "/repo"
	mustCLI(t, "init", "--repo", repo)
	args = append([]string{"--repo", repo}, args...)
	if rep, errs, code := backupJSON(t, args); code != 0 {
		t.Fatalf("first backup: %d %s %+v", code, errs, rep)
	}
	start := time.Now()
	overwrite(t, mustDisk(t, s, 0), 1<<20, 9)
	mustCLI(t, append([]string{"backup", "--strategy", "xva", "--level", "full"}, args...)...)
	span := time.Since(start)
	t.Logf("a full XVA run takes %v", span)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for i := range 8 {
		overwrite(t, mustDisk(t, s, 0), rnd.Int64N(40)<<20, byte(i))
		overwrite(t, mustDisk(t, s, 1), rnd.Int64N(12)<<20, byte(i))
		strategy := []string{"cbt", "xva"}[i%2]
		cmd := exec.Command(ahvfsBin, append([]string{"backup", "--strategy", strategy}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rnd.Int64N(int64(span) * 5 / 4))
		time.Sleep(delay)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		s.WaitTasks(30 * time.Second) // the pool finishes what the dead process asked
		out, errs, code := runCLI(t, "", append([]string{"cleanup", "--json"}, args...)...)
		var cr clusterjob.Report
		json.Unmarshal([]byte(out), &cr)
		t.Logf("kill %d (%s) after %v: cleanup %s", i, strategy, delay.Round(time.Millisecond), cr.Summary())
		if code != 0 {
			t.Fatalf("cleanup: exit %d: %s %+v", code, errs, cr)
		}
		snaps, orphans := xenSnapshots(t, s, repo)
		if len(snaps) != 1 || len(orphans) != 0 {
			t.Fatalf("kill %d: %d snapshots (want the one reference) and stray VDIs %v on the pool", i, len(snaps), orphans)
		}
		ref, err := backup.LoadXenReference(openJournal(t, repo), s.VMs()[0].UUID)
		if err != nil || ref == nil || ref.Snapshot != snaps[0].UUID {
			t.Fatalf("kill %d: the pool keeps snapshot %s, the reference names %+v (%v)", i, snaps[0].UUID, ref, err)
		}
		mustCLI(t, "verify", "--repo", repo)
	}
	overwrite(t, mustDisk(t, s, 1), 3<<20, 99)
	rep, errs, code := backupJSON(t, args)
	if code != 0 {
		t.Fatalf("backup after the kills: %d %s %+v", code, errs, rep)
	}
	sameAsXen(t, s, repo, rep.VMs[0].RestorePoint)
}
