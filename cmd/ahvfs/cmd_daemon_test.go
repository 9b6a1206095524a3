package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// daemonConfig is a configuration for the simulator s with policies.
func daemonConfig(s *prismsim.Sim, repo, policies string) string {
	_, port, _ := net.SplitHostPort(s.ISCSIPortal())
	return fmt.Sprintf(`repository = %q
shutdown_timeout = "1s"
[log]
format = "json"
[http]
listen = "127.0.0.1:0"
[[cluster]]
name = "prod"
prism = %q
user = "admin"
password_file = %q
ca_cert = %q
iscsi_port = %s
initiator_iqn = "iqn.2026-11.io.ahvfs:daemon-test"
concurrency = 2
`, repo, s.Addr(), s.PasswordFile(), s.CAFile(), port) + policies
}

// jobsOf reads `ahvfs jobs --json`.
func jobsOf(t *testing.T, repo string, args ...string) []engine.Job {
	t.Helper()
	out := mustCLI(t, append([]string{"jobs", "--json", "--repo", repo}, args...)...)
	var doc struct{ Jobs []engine.Job }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("jobs --json: %v\n%s", err, out)
	}
	return doc.Jobs
}

// waitJob waits until the history holds a job of policy that ended.
func waitJob(t *testing.T, repo, policy string, errs fmt.Stringer) engine.Job {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, j := range jobsOf(t, repo, "--policy", policy, "--kind", "backup") {
			return j
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no job of policy %s; daemon log:\n%s", policy, errs)
	return engine.Job{}
}

// TestDaemonCommand drives `ahvfs daemon` as a process: config check, a
// first backup at start, /metrics and /healthz, SIGHUP adding a policy,
// and SIGTERM in the middle of a backup — the job is cancelled, the
// cluster is left with no volume group or new snapshot, the repository
// verifies, the history shows the cancelled job, and the exit code is 0.
func TestDaemonCommand(t *testing.T) {
	clearSiteEnv(t)
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	img := enginetest.Ext4Image(t, 64<<20, 1)
	for _, n := range []string{"app01", "app02", "big01"} {
		if _, err := s.AddVM(context.Background(), n, []string{img}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCLI(t, "init", "--repo", repo)
	cfgFile := filepath.Join(dir, "ahvfs.toml")
	write := func(policies string) {
		if err := os.WriteFile(cfgFile, []byte(daemonConfig(s, repo, policies)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	first := `
[[policy]]
name = "apps"
vms = ["app01"]
every = "1h"
keep_last = 5
`
	write(first + "\n[[policy]]\nname = \"bad\"\nevery = \"soon\"\n")
	if out, errs, code := runCLI(t, "", "config", "check", cfgFile); code != exitUsage || !strings.Contains(errs, `duration "soon"`) ||
		!strings.Contains(errs, "selects no VM") {
		t.Fatalf("config check of a bad file: exit %d\n%s%s", code, out, errs)
	}
	write(first)
	if out := mustCLI(t, "config", "check", cfgFile); !strings.Contains(out, "configuration OK") || !strings.Contains(out, "policy apps on prod: app01; every 1h0m0s (RPO 1h30m)") {
		t.Fatalf("config check: %s", out)
	}

	errs := logFile(filepath.Join(dir, "daemon.log"))
	cmd := exec.Command(ahvfsBin, "daemon", "--config", cfgFile)
	cmd.Env = append(os.Environ(), "AHVFS_REPO_PASSWORD_FILE=")
	lf, err := os.Create(string(errs))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := waitListening(t, errs)
	j := waitJob(t, repo, "apps", errs)
	if j.Result != engine.JobOK || j.Trigger != "start" || len(j.VMs) != 1 || j.VMs[0].VM != "app01" {
		t.Fatalf("first job: %+v", j)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	if !strings.Contains(metrics, `ahvfs_backup_last_result{policy="apps",vm="app01"} 1`) || !strings.Contains(metrics, "ahvfs_repository_stored_bytes ") {
		t.Fatalf("metrics after the first backup:\n%s", metrics)
	}
	if h := httpGet(t, "http://"+addr+"/healthz"); !strings.Contains(h, `"status":"ok"`) {
		t.Fatalf("healthz: %s", h)
	}

	// SIGHUP: a new policy runs at once.
	write(first + `
[[policy]]
name = "more"
vms = ["app02"]
every = "1h"
`)
	cmd.Process.Signal(syscall.SIGHUP)
	if j := waitJob(t, repo, "more", errs); j.Result != engine.JobOK || j.VMs[0].VM != "app02" {
		t.Fatalf("job of the reloaded policy: %+v", j)
	}

	// A slow backup (2 MiB/s over 64 MiB), stopped by SIGTERM while it
	// reads: its volume group is on the cluster then.
	write(first + `
[[policy]]
name = "slow"
vms = ["big01"]
every = "1h"
bwlimit = "2MiB"
`)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(2 * time.Minute)
	for len(s.Objects().VolumeGroups) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the slow backup never attached a volume group; log:\n%s", errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := terminate(t, cmd); code != 0 {
		t.Fatalf("daemon exit code %d after SIGTERM; log:\n%s", code, errs)
	}
	if !s.WaitTasks(time.Minute) {
		t.Fatal("simulator tasks still running")
	}
	o := s.Objects()
	if len(o.VolumeGroups) > 0 || len(o.Images) > 0 {
		t.Fatalf("cluster left with volume groups %v, images %v", o.VolumeGroups, o.Images)
	}
	for _, sn := range o.Snapshots {
		if strings.Contains(sn.VMName, "big01") {
			t.Fatalf("snapshot of the cancelled backup left: %+v", sn)
		}
	}
	mustCLI(t, "verify", "--repo", repo)
	failed := jobsOf(t, repo, "--failed")
	if len(failed) != 1 || failed[0].Policy != "slow" || failed[0].Result != engine.JobCancelled {
		t.Fatalf("failed jobs: %+v", failed)
	}
	if !strings.Contains(errs.String(), `"msg":"job ended"`) || !strings.Contains(errs.String(), `"job":"`) {
		t.Fatalf("the log is not JSON with job IDs:\n%s", errs)
	}
	if out := mustCLI(t, "jobs", "--repo", repo, "--vm", "app*"); !strings.Contains(out, "apps") || !strings.Contains(out, "more") || strings.Contains(out, "slow") {
		t.Fatalf("jobs --vm app*:\n%s", out)
	}
}

// logFile is a log a process writes, read as a whole when printed.
type logFile string

func (f logFile) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

// waitListening reads the daemon's log until it says where it serves.
func waitListening(t *testing.T, errs fmt.Stringer) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(errs.String()))
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Msg, "serving /metrics") {
				return line.Addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the daemon never served HTTP; log:\n%s", errs)
	return ""
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// TestDaemonKilled: the daemon killed with SIGKILL at moments of its
// backups (6 times), then run once more to the end: the cluster holds
// no volume group or image and one reference snapshot per VM at most, the
// repository verifies, and every VM backup the history records as ok has
// its restore point.
func TestDaemonKilled(t *testing.T) {
	clearSiteEnv(t)
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	img := enginetest.Ext4Image(t, 32<<20, 2)
	for _, n := range []string{"k01", "k02"} {
		if _, err := s.AddVM(context.Background(), n, []string{img}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCLI(t, "init", "--repo", repo)
	cfgFile := filepath.Join(dir, "ahvfs.toml")
	os.WriteFile(cfgFile, []byte(daemonConfig(s, repo, `
[[policy]]
name = "k"
vms = ["k*"]
every = "1h"
bwlimit = "16MiB"
`)), 0o600)
	start := func() *exec.Cmd {
		cmd := exec.Command(ahvfsBin, "daemon", "--config", cfgFile)
		cmd.Env = append(os.Environ(), "AHVFS_REPO_PASSWORD_FILE=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 18))
	// Kill points, in turn: soon after the start; once the backup's
	// snapshot exists; once it reads through a volume group; a moment
	// into the reading.
	snapshots := func() map[string]bool {
		m := map[string]bool{}
		for _, sn := range s.Objects().Snapshots {
			m[sn.UUID] = true
		}
		return m
	}
	newSnapshot := func(before map[string]bool) bool {
		for id := range snapshots() {
			if !before[id] {
				return true
			}
		}
		return false
	}
	for trial := range 6 {
		before := snapshots()
		cmd := start()
		var why string
		deadline := time.Now().Add(2 * time.Minute)
		switch trial % 3 {
		case 0:
			time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
			why = "soon after the start"
		case 1:
			for !newSnapshot(before) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			why = "with a new snapshot"
		case 2:
			for len(s.Objects().VolumeGroups) == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			why = "while reading"
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		o := s.Objects()
		t.Logf("trial %d: killed %s; cluster: %d VGs, %d snapshots", trial, why, len(o.VolumeGroups), len(o.Snapshots))
	}
	// The last run, of a policy renamed so that it runs at start whatever
	// the killed ones recorded, then SIGTERM.
	os.WriteFile(cfgFile, []byte(daemonConfig(s, repo, `
[[policy]]
name = "last"
vms = ["k*"]
every = "1h"
`)), 0o600)
	cmd := start()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		jobs := jobsOf(t, repo, "--kind", "backup", "--policy", "last")
		if len(jobs) > 0 && jobs[0].Result == engine.JobOK {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no good backup after the kills: %+v", jobs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code := terminate(t, cmd); code != 0 {
		t.Fatalf("exit %d", code)
	}
	s.WaitTasks(time.Minute)
	o := s.Objects()
	if len(o.VolumeGroups) > 0 || len(o.Images) > 0 || len(o.Snapshots) > 2 {
		t.Fatalf("cluster after the kills: %d volume groups, %d images, %d snapshots (want at most one reference per VM)", len(o.VolumeGroups), len(o.Images), len(o.Snapshots))
	}
	mustCLI(t, "verify", "--repo", repo)
	have := mustCLI(t, "list", "--repo", repo)
	for _, j := range jobsOf(t, repo, "--kind", "backup") {
		for _, v := range j.VMs {
			if v.Result == engine.JobOK {
				_, when, _ := strings.Cut(v.RestorePoint, "@")
				if !strings.Contains(have, when) {
					t.Fatalf("%s recorded ok, not in the repository:\n%s", v.RestorePoint, have)
				}
			}
		}
	}
}
