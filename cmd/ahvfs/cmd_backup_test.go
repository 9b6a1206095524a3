package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
)

// backupSim starts a simulator with iSCSI and two VMs with real ext4
// disks: web01 (NGT with VSS) and db01 (no NGT). It returns the simulator,
// a fresh repository and the cluster arguments of ahvfs.
func backupSim(t *testing.T) (*prismsim.Sim, string, []string) {
	t.Helper()
	clearSiteEnv(t)
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
	out := mustCLI(t, append([]string{"backup", "--vm", "web*", "--lock-for", "7d"}, args...)...)
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
		// Only the incremental was backed up with --lock-for 7d.
		until, _ := e["locked_until"].(string)
		if incr := e["level"] == "incremental"; incr != (until != "") {
			t.Fatalf("list: %s %s locked until %q", e["name"], e["level"], until)
		} else if incr {
			at, _ := time.Parse(time.RFC3339, e["time"].(string))
			if want := engine.FormatTime(at.AddDate(0, 0, 7)); until != want {
				t.Fatalf("list: %s locked until %s, want %s (7 days after its time)", e["name"], until, want)
			}
		}
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
// NGT fails, the other is backed up, and the exit code says some VMs
// failed (7).
func TestBackupCLIOneFails(t *testing.T) {
	s, repo, args := backupSim(t)
	rep, errs, code := backupJSON(t, args, "--consistency", "app-required", "--data-path", "rest", "--api", "v3")
	if code != exitSomeFailed || !strings.Contains(errs, "1 of 2 VMs failed") {
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
		s.WaitIdle(30*time.Second, 0) // the cluster serves what the dead process sent
		out, errs, code := runCLI(t, "", append([]string{"cleanup", "--json"}, args[:len(args)-4]...)...)
		var cr clusterjob.Report
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
		j := openJournal(t, repo)
		for _, vm := range []prismsim.VMInfo{web, db} {
			r, _ := backup.LoadReference(j, vm.UUID)
			want := 1
			if r != nil && r.Full != nil && r.Full.Snapshot.ID != r.Last.Snapshot.ID {
				want = 2 // the differential exception
			}
			if per[vm.UUID] != want {
				t.Fatalf("kill %d: VM %s has %d ahvfs snapshots, want %d", i, vm.Name, per[vm.UUID], want)
			}
		}
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

// openJournal opens the repository's journal for the test's checks.
func openJournal(t *testing.T, repo string) *clusterjob.Journal {
	t.Helper()
	j, err := clusterjob.OpenJournal(filepath.Join(repo, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// clusterState counts the ahvfs snapshots per VM UUID and the volume
// groups and images on the simulator, and returns what the repository's
// journal still records (what a job still owes the cluster).
func clusterState(t *testing.T, s *prismsim.Sim, repo string) (snaps map[string]int, vgsImages int, ledger []clusterjob.Object) {
	t.Helper()
	cl, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: s.URL(), PasswordFile: s.PasswordFile(), CACertFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	list, err := cl.ListSnapshots(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	snaps = map[string]int{}
	for _, sn := range list {
		if strings.HasPrefix(sn.Name, "ahvfs-") {
			snaps[sn.VMUUID]++
		}
	}
	ledger, err = openJournal(t, repo).Pending()
	if err != nil {
		t.Fatal(err)
	}
	return snaps, countEntries(filepath.Join(s.StateDir(), "vgs")) + countEntries(filepath.Join(s.StateDir(), "images")), ledger
}

// sameDiskAsLive compares disk-n of restore point name with a live disk
// file.
func sameDiskAsLive(t *testing.T, repoDir, name string, n int, file string) {
	t.Helper()
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := mustCLI(t, "cat", "--repo", repoDir, name, fmt.Sprintf("disk-%d", n))
	if !bytes.Equal([]byte(got), want) {
		t.Fatalf("%s disk-%d (%d bytes) differs from the live disk %s (%d bytes)", name, n, len(got), file, len(want))
	}
}

// TestBackupCLIExcludeDisk: `--exclude-disk scsi.1` stores only the other
// disk of a two-disk VM, byte for byte, under its own number; the summary
// names the excluded disk and the restore point's configuration marks it;
// the cluster keeps only the reference snapshot. A later job without the
// exclusion reads that disk in full (new to the reference) while
// `VMGLOB:ADDR` excludes scsi.0 of the other VM only, which keeps disk-1
// as its number.
func TestBackupCLIExcludeDisk(t *testing.T) {
	s, repo, args := backupSim(t)
	web, _ := s.VM("web01")
	db, _ := s.VM("db01")
	rep, errs, code := backupJSON(t, args, "--vm", "web01", "--exclude-disk", "scsi.1")
	if code != 0 || len(rep.VMs) != 1 || rep.VMs[0].Err != "" {
		t.Fatalf("backup: exit %d: %s %+v", code, errs, rep)
	}
	v := rep.VMs[0]
	if len(v.Disks) != 1 || v.Disks[0].Disk != "disk-0" || v.Disks[0].Address != "scsi.0" || v.Size != 64<<20 {
		t.Fatalf("disks %+v (size %d), want only disk-0 (scsi.0)", v.Disks, v.Size)
	}
	if len(v.ExcludedDisks) != 1 || v.ExcludedDisks[0] != "scsi.1" {
		t.Fatalf("excluded disks reported: %q, want [scsi.1]", v.ExcludedDisks)
	}
	r, err := engine.Open(context.Background(), repo, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rp, err := r.Resolve(context.Background(), v.RestorePoint)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Disks) != 1 || rp.Disks[0].Index != 0 {
		t.Fatalf("restore point %s holds %+v, want disk-0 only", rp.Name(), rp.Disks)
	}
	var cfg clusterjob.VMConfig
	if err := json.Unmarshal(rp.Config, &cfg); err != nil || len(cfg.Disks) != 2 {
		t.Fatalf("config %s: %v", rp.Config, err)
	}
	if d := cfg.Disks[1]; !d.Excluded || d.Disk != -1 || d.Bus != "scsi" || d.Index != 1 {
		t.Fatalf("config of the excluded disk %+v", d)
	}
	if d := cfg.Disks[0]; d.Excluded || d.Disk != 0 {
		t.Fatalf("config of the stored disk %+v", d)
	}
	sameDiskAsLive(t, repo, v.RestorePoint, 0, web.Disks[0])
	if _, errs, code := runCLI(t, "", "cat", "--repo", repo, v.RestorePoint, "disk-1"); code == 0 || !strings.Contains(errs, "disk-1") {
		t.Fatalf("cat of the excluded disk: exit %d: %s", code, errs)
	}
	// A pattern that names no disk is a typo: refused before any snapshot.
	if _, errs, code := runCLI(t, "", append([]string{"backup", "--vm", "web01", "--exclude-disk", "scsi.9"}, args...)...); code == 0 ||
		!strings.Contains(errs, "scsi.9") {
		t.Fatalf("--exclude-disk scsi.9: exit %d: %s", code, errs)
	}
	snaps, leftovers, ledger := clusterState(t, s, repo)
	if snaps[web.UUID] != 1 || snaps[db.UUID] != 0 || leftovers != 0 || len(ledger) != 0 {
		t.Fatalf("cluster: snapshots %v, %d volume groups/images, ledger %v", snaps, leftovers, ledger)
	}
	out := mustCLI(t, append([]string{"backup", "--vm", "web01", "--exclude-disk", "scsi.1", "--estimate"}, args...)...)
	if !strings.Contains(out, "web01: scsi.1") {
		t.Fatalf("the text summary does not name the excluded disk:\n%s", out)
	}

	// Both VMs, scsi.0 excluded on db* only.
	rep, errs, code = backupJSON(t, args, "--exclude-disk", "db*:scsi.0")
	if code != 0 || len(rep.VMs) != 2 {
		t.Fatalf("second backup: exit %d: %s %+v", code, errs, rep)
	}
	for _, v := range rep.VMs {
		switch v.VM {
		case "web01":
			if v.Level != "incremental" || len(v.Disks) != 2 || len(v.ExcludedDisks) != 0 ||
				v.Disks[1].Reason == "" || v.Disks[1].BytesRead == 0 || v.Disks[0].BytesRead != 0 {
				t.Fatalf("web01 without the exclusion: %+v", v)
			}
			sameDiskAsLive(t, repo, v.RestorePoint, 0, web.Disks[0])
			sameDiskAsLive(t, repo, v.RestorePoint, 1, web.Disks[1])
		case "db01":
			if len(v.Disks) != 1 || v.Disks[0].Disk != "disk-1" || v.Disks[0].Address != "scsi.1" ||
				len(v.ExcludedDisks) != 1 || v.ExcludedDisks[0] != "scsi.0" {
				t.Fatalf("db01 with db*:scsi.0 excluded: %+v", v)
			}
			sameDiskAsLive(t, repo, v.RestorePoint, 1, db.Disks[1])
			if _, errs, code := runCLI(t, "", "cat", "--repo", repo, v.RestorePoint, "disk-0"); code == 0 {
				t.Fatalf("cat of db01's excluded disk-0: exit 0: %s", errs)
			}
		}
	}
	snaps, leftovers, ledger = clusterState(t, s, repo)
	if snaps[web.UUID] != 1 || snaps[db.UUID] != 1 || leftovers != 0 || len(ledger) != 0 {
		t.Fatalf("cluster: snapshots %v, %d volume groups/images, ledger %v", snaps, leftovers, ledger)
	}
	mustCLI(t, "verify", "--repo", repo)
}

// TestBackupCLIHooks: --pre-snapshot and --post-snapshot run on this host
// around each VM's snapshot, with the VM in the environment (AHVFS_VM,
// AHVFS_VM_UUID, AHVFS_HOOK). A failing pre-snapshot hook fails its VM
// with the hook's exit status and last stderr line, before anything is
// created, and without the post-snapshot hook; the other VM of the job
// completes. A failing post-snapshot hook is a warning.
func TestBackupCLIHooks(t *testing.T) {
	s, repo, args := backupSim(t)
	web, _ := s.VM("web01")
	db, _ := s.VM("db01")
	dir := t.TempDir()
	logFile := filepath.Join(dir, "hooks.log")
	snapDir := filepath.Join(s.StateDir(), "snapshots")
	// Each hook logs its phase, the VM and how many snapshots the cluster
	// holds at that moment.
	logLine := `echo "$AHVFS_HOOK $AHVFS_VM $AHVFS_VM_UUID $(ls '` + snapDir + `' 2>/dev/null | wc -l | tr -d ' ')" >> '` + logFile + `'`
	readLog := func() [][]string {
		t.Helper()
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(logFile)
		var out [][]string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			out = append(out, strings.Fields(l))
		}
		return out
	}

	// db01's pre-snapshot hook fails.
	pre := logLine + `; if [ "$AHVFS_VM" = db01 ]; then echo "starting the freeze" >&2; echo "$AHVFS_VM: database not quiesced" >&2; exit 3; fi`
	rep, errs, code := backupJSON(t, args, "--pre-snapshot", pre, "--post-snapshot", logLine)
	if code != exitSomeFailed || !strings.Contains(errs, "1 of 2 VMs failed") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, v := range rep.VMs {
		switch v.VM {
		case "db01":
			want := "pre-snapshot hook: exit status 3: db01: database not quiesced"
			if v.Err != want || v.RestorePoint != "" {
				t.Fatalf("db01: error %q, want %q (restore point %q)", v.Err, want, v.RestorePoint)
			}
		case "web01":
			if v.Err != "" || v.RestorePoint == "" {
				t.Fatalf("web01: %+v", v)
			}
		}
	}
	sameAsLive(t, repo, s, "web01")
	got := map[string]bool{}
	for _, f := range readLog() {
		if len(f) != 4 {
			t.Fatalf("hook log line %q", f)
		}
		got[f[0]+" "+f[1]+" "+f[2]] = true
	}
	for line, want := range map[string]bool{
		"pre-snapshot web01 " + web.UUID: true, "post-snapshot web01 " + web.UUID: true,
		"pre-snapshot db01 " + db.UUID: true, "post-snapshot db01 " + db.UUID: false,
	} {
		if got[line] != want {
			t.Errorf("hook %q ran: %v, want %v (log %v)", line, got[line], want, got)
		}
	}
	snaps, leftovers, ledger := clusterState(t, s, repo)
	if snaps[db.UUID] != 0 || snaps[web.UUID] != 1 || leftovers != 0 || len(ledger) != 0 {
		t.Fatalf("cluster: snapshots %v (db01 %s, web01 %s), %d volume groups/images, ledger %v", snaps, db.UUID, web.UUID, leftovers, ledger)
	}
	r, err := engine.Open(context.Background(), repo, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rps, err := r.ListRestorePoints(context.Background(), "db01")
	r.Close()
	if err != nil || len(rps) != 0 {
		t.Fatalf("db01 restore points %v (%v)", rps, err)
	}

	// One VM at a time: each VM's pre-snapshot hook runs before its
	// snapshot exists, its post-snapshot hook right after. web01's
	// post-snapshot hook fails: a warning.
	post := logLine + `; if [ "$AHVFS_VM" = web01 ]; then echo "thaw failed" >&2; exit 1; fi`
	rep, errs, code = backupJSON(t, args, "--concurrent-vms", "1", "--pre-snapshot", logLine, "--post-snapshot", post)
	if code != 0 || rep.Failed() != 0 {
		t.Fatalf("exit %d: %s %+v", code, errs, rep)
	}
	for _, v := range rep.VMs {
		want := []string(nil)
		if v.VM == "web01" {
			want = []string{"post-snapshot hook: exit status 1: thaw failed"}
		}
		if strings.Join(v.Warnings, "|") != strings.Join(want, "|") {
			t.Errorf("%s: warnings %q, want %q", v.VM, v.Warnings, want)
		}
	}
	lines := readLog()
	if len(lines) != 4 {
		t.Fatalf("hook log %v, want 4 lines", lines)
	}
	uuid := map[string]string{"web01": web.UUID, "db01": db.UUID}
	for i := 0; i < 4; i += 2 {
		p, q := lines[i], lines[i+1]
		if len(p) != 4 || len(q) != 4 || p[0] != "pre-snapshot" || q[0] != "post-snapshot" || p[1] != q[1] || p[2] != uuid[p[1]] || q[2] != p[2] {
			t.Fatalf("hook log %v: want pre-snapshot then post-snapshot of each VM in turn, with its UUID", lines)
		}
		if before, _ := strconv.Atoi(p[3]); q[3] != strconv.Itoa(before+1) {
			t.Errorf("%s: %s snapshots before the pre-snapshot hook, %s at the post-snapshot hook, want one more", p[1], p[3], q[3])
		}
	}
	if lines[0][1] == lines[2][1] {
		t.Fatalf("hook log %v: the same VM twice", lines)
	}
	sameAsLive(t, repo, s, "web01")
	sameAsLive(t, repo, s, "db01")
	snaps, leftovers, ledger = clusterState(t, s, repo)
	if snaps[db.UUID] != 1 || snaps[web.UUID] != 1 || leftovers != 0 || len(ledger) != 0 {
		t.Fatalf("cluster: snapshots %v, %d volume groups/images, ledger %v", snaps, leftovers, ledger)
	}
}

// TestBackupCategoryCLI: `backup --category Env:prod` backs up only the VM
// carrying that category (the --vm union with it too); a category no VM
// carries fails the run (exit 1) naming it; a malformed --category is a
// usage error (exit 2) before anything runs; `vms` shows the categories.
func TestBackupCategoryCLI(t *testing.T) {
	s, repo, args := backupSim(t)
	if err := s.SetVMCategories(context.Background(), "db01", map[string][]string{"Env": {"prod", "qa"}}); err != nil {
		t.Fatal(err)
	}
	rep, errs, code := backupJSON(t, args, "--category", "Env:prod")
	if code != 0 || len(rep.VMs) != 1 || rep.VMs[0].VM != "db01" || rep.VMs[0].Err != "" {
		t.Fatalf("backup --category Env:prod: exit %d, report %+v: %s", code, rep.VMs, errs)
	}
	sameAsLive(t, repo, s, "db01")

	// Comma-separated and repeated, with --vm: either selects.
	_, errs, code = runCLI(t, "", append([]string{"backup", "--category", "Env:dev,Env:qa", "--vm", "web01", "--level", "copy"}, args...)...)
	if code != 1 || !strings.Contains(errs, "no VM matches category Env:dev") {
		t.Fatalf("a category no VM carries: exit %d: %s", code, errs)
	}
	rep, errs, code = backupJSON(t, args, "--category", "Env:qa", "--category", "Env:prod", "--vm", "web01", "--level", "copy")
	if code != 0 || len(rep.VMs) != 2 {
		t.Fatalf("--category and --vm: exit %d, %+v: %s", code, rep.VMs, errs)
	}
	rep, errs, code = backupJSON(t, args, "--category", "Env:qa", "--exclude", "db*", "--vm", "web01", "--level", "copy")
	if code != 0 || len(rep.VMs) != 1 || rep.VMs[0].VM != "web01" {
		t.Fatalf("--category with --exclude: exit %d, %+v: %s", code, rep.VMs, errs)
	}

	for _, bad := range []string{"Env", "Env:", ":prod"} {
		_, errs, code := runCLI(t, "", append([]string{"backup", "--category", bad}, args...)...)
		if code != exitUsage || !strings.Contains(errs, "--category") || !strings.Contains(errs, "KEY:VALUE") {
			t.Errorf("--category %q: exit %d: %s", bad, code, errs)
		}
	}

	out := mustCLI(t, append([]string{"vms"}, args[2:len(args)-4]...)...)
	if !strings.Contains(out, "CATEGORIES") || !strings.Contains(out, "Env:prod,Env:qa") {
		t.Errorf("vms output lacks the categories:\n%s", out)
	}
}
