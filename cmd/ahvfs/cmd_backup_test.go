package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/nutanix/prismsim"
	"github.com/ahvfs/ahvfs/nutanix/prismsim/simtest"
)

// backupSim starts a simulator with iSCSI and two VMs with real ext4
// disks: web01 (NGT with VSS) and db01 (no NGT). It returns the simulator,
// a fresh repository and the cluster arguments of ahvfs.
func backupSim(t *testing.T) (*prismsim.Sim, string, []string) {
	t.Helper()
	for _, k := range []string{"AHVFS_PASSWORD", "AHVFS_PASSWORD_FILE", "AHVFS_PRISM", "AHVFS_CA_CERT", "AHVFS_USER", "AHVFS_REPO"} {
		t.Setenv(k, "")
	}
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	img0 := enginetest.Ext4Image(t, 64<<20, 1)
	img1 := enginetest.Ext4Image(t, 32<<20, 2)
	for _, vm := range []struct {
		name string
		ngt  prismsim.NGT
	}{{"web01", prismsim.NGTVSS}, {"db01", prismsim.NGTAbsent}} {
		if _, err := s.AddVM(context.Background(), vm.name, []string{img0, img1}, prismsim.VMOptions{NGT: vm.ngt}); err != nil {
			t.Fatal(err)
		}
	}
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	_, port, _ := net.SplitHostPort(s.ISCSIPortal())
	return s, repo, []string{"--repo", repo, "--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile(),
		"--iscsi-port", port, "--initiator-iqn", "iqn.2026-11.io.ahvfs:cli-test"}
}

func backupJSON(t *testing.T, args []string, extra ...string) (*backup.Report, string, int) {
	t.Helper()
	out, errs, code := runCLI(t, "", append(append([]string{"backup", "--json"}, args...), extra...)...)
	var rep backup.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("backup --json: %v\nstdout: %s\nstderr: %s", err, out, errs)
	}
	return &rep, errs, code
}

// overwrite writes 1 MiB of other bytes into a live disk (the guest).
func overwrite(t *testing.T, file string, off int64, seed byte) {
	t.Helper()
	fh, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// sameAsLive compares every disk of the VM's latest restore point with
// its live disks.
func sameAsLive(t *testing.T, repoDir string, s *prismsim.Sim, vm string) {
	t.Helper()
	r, err := engine.Open(context.Background(), repoDir, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rp, err := r.Resolve(context.Background(), vm+"@latest")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.VM(vm)
	for i, f := range info.Disks {
		want, _ := os.ReadFile(f)
		d, err := r.OpenDisk(context.Background(), rp, i)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(io.NewSectionReader(d, 0, d.Size()))
		d.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s disk-%d differs from the live disk", rp.Name(), i)
		}
	}
}

// TestBackupCLI: full then incremental over iSCSI from the command line;
// app consistency where NGT allows it; list shows levels and consistencies;
// verify passes.
func TestBackupCLI(t *testing.T) {
	s, repo, args := backupSim(t)
	rep, errs, code := backupJSON(t, args, "--consistency", "app")
	if code != 0 || len(rep.VMs) != 2 {
		t.Fatalf("backup: exit %d: %s", code, errs)
	}
	cons := map[string]string{}
	for _, v := range rep.VMs {
		cons[v.VM] = v.Consistency
		if v.Level != "full" || v.DataPath != backup.PathISCSI {
			t.Fatalf("%s: level %s path %s", v.VM, v.Level, v.DataPath)
		}
	}
	if cons["web01"] != "app" || cons["db01"] != "crash" {
		t.Fatalf("consistencies %v", cons)
	}
	sameAsLive(t, repo, s, "web01")
	web, _ := s.VM("web01")
	overwrite(t, web.Disks[0], 5<<20+123, 1)
	out := mustCLI(t, append([]string{"backup", "--vm", "web*"}, args...)...)
	if !strings.Contains(out, "incremental") || !strings.Contains(out, "web01@") || strings.Contains(out, "db01") {
		t.Fatalf("incremental output:\n%s", out)
	}
	sameAsLive(t, repo, s, "web01")
	out = mustCLI(t, "list", "--repo", repo, "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range list {
		got[e["vm"].(string)+" "+e["level"].(string)+" "+e["consistency"].(string)]++
	}
	if got["web01 full app"] != 1 || got["web01 incremental crash"] != 1 || got["db01 full crash"] != 1 {
		t.Fatalf("list: %v", got)
	}
	mustCLI(t, "verify", "--repo", repo)
	out = mustCLI(t, append([]string{"cleanup"}, args[:len(args)-4]...)...)
	if !strings.Contains(out, "nothing to clean up") {
		t.Fatalf("cleanup after clean runs: %s", out)
	}
}

// TestBackupCLIOneFails: with --consistency app-required the VM without
// NGT fails, the other is backed up, and the exit code is non-zero.
func TestBackupCLIOneFails(t *testing.T) {
	s, repo, args := backupSim(t)
	rep, errs, code := backupJSON(t, args, "--consistency", "app-required", "--data-path", "rest", "--api", "v3")
	if code != 1 || !strings.Contains(errs, "1 of 2 VMs failed") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, v := range rep.VMs {
		if (v.VM == "web01") != (v.Err == "") {
			t.Fatalf("%s: %q", v.VM, v.Err)
		}
	}
	sameAsLive(t, repo, s, "web01")
}

// TestBackupKill kills a real `ahvfs backup` process with SIGKILL at
// random moments; after each, `ahvfs cleanup` leaves exactly one ahvfs
// snapshot per VM and no volume groups or images, the repository verifies,
// and the final backup is exact.
func TestBackupKill(t *testing.T) {
	s, repo, args := backupSim(t)
	if rep, errs, code := backupJSON(t, args); code != 0 {
		t.Fatalf("first backup: %d %s %+v", code, errs, rep)
	}
	cl, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: s.URL(), PasswordFile: s.PasswordFile(), CACertFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	web, _ := s.VM("web01")
	db, _ := s.VM("db01")
	// How long a run takes, to spread the kills over it.
	start := time.Now()
	overwrite(t, web.Disks[0], 1<<20, 9)
	mustCLI(t, append([]string{"backup"}, args...)...)
	span := time.Since(start)
	t.Logf("an incremental run takes %v", span)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := 0; i < 10; i++ {
		overwrite(t, web.Disks[0], rnd.Int64N(60)<<20, byte(i))
		overwrite(t, db.Disks[1], rnd.Int64N(30)<<20, byte(i))
		level := []string{"auto", "full", "differential"}[i%3]
		cmd := exec.Command(ahvfsBin, append([]string{"backup", "--level", level}, args...)...)
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
		s.WaitTasks(10 * time.Second) // the cluster finishes what the dead process started
		out, errs, code := runCLI(t, "", append([]string{"cleanup", "--json"}, args[:len(args)-4]...)...)
		var cr backup.CleanupReport
		json.Unmarshal([]byte(out), &cr)
		t.Logf("kill %d (%s) after %v: cleanup %s", i, level, delay.Round(time.Millisecond), cr.Summary())
		if code != 0 {
			t.Fatalf("cleanup: exit %d: %s %+v", code, errs, cr)
		}
		snaps, err := cl.ListSnapshots(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		for _, sn := range snaps {
			if strings.HasPrefix(sn.Name, "ahvfs-") {
				per[sn.VMUUID]++
			}
		}
		st := openState(t, repo)
		for _, vm := range []prismsim.VMInfo{web, db} {
			r, _ := backup.LoadReference(context.Background(), st, vm.UUID)
			want := 1
			if r != nil && r.Full != nil && r.Full.Snapshot.ID != r.Last.Snapshot.ID {
				want = 2 // the differential exception
			}
			if per[vm.UUID] != want {
				st.Close()
				t.Fatalf("kill %d: VM %s has %d ahvfs snapshots, want %d", i, vm.Name, per[vm.UUID], want)
			}
		}
		st.Close()
		if n := countEntries(filepath.Join(s.StateDir(), "vgs")) + countEntries(filepath.Join(s.StateDir(), "images")); n != 0 {
			t.Fatalf("kill %d: %d volume groups/images left", i, n)
		}
		mustCLI(t, "verify", "--repo", repo)
	}
	overwrite(t, web.Disks[1], 3<<20, 99)
	if rep, errs, code := backupJSON(t, args); code != 0 {
		t.Fatalf("backup after the kills: %d %s %+v", code, errs, rep)
	}
	sameAsLive(t, repo, s, "web01")
	sameAsLive(t, repo, s, "db01")
}

func countEntries(d string) int {
	es, _ := os.ReadDir(d)
	return len(es)
}

// openState opens the repository read-only for the test's checks.
func openState(t *testing.T, dir string) *engine.Repository {
	t.Helper()
	r, err := engine.Open(context.Background(), dir, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
