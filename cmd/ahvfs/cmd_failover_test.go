package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestFailoverCommands: `ahvfs failover test --dry-run`, `test`, `status`
// and `undo` on two simulated sites, the cluster tables coming from a
// daemon configuration (--config); then test failovers killed with
// SIGKILL at random moments: status tells what each left, undo removes it.
func TestFailoverCommands(t *testing.T) {
	clearSiteEnv(t)
	ctx := context.Background()
	prod := simtest.Start(t, simtest.Options{})
	drs := simtest.Start(t, simtest.Options{})
	img := enginetest.Ext4Image(t, 32<<20, 3)
	for _, n := range []string{"db01", "web01"} {
		if _, err := prod.AddVM(ctx, n, []string{img}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "backup", "--repo", repo, "--prism", prod.URL(), "--password-file", prod.PasswordFile(), "--ca-cert", prod.CAFile(),
		"--api", "v3", "--data-path", "rest")
	site := func(name string, s *prismsim.Sim) string {
		return fmt.Sprintf("[[cluster]]\nname = %q\nprism = %q\nuser = \"admin\"\npassword_file = %q\nca_cert = %q\napi = \"v3\"\n",
			name, s.Addr(), s.PasswordFile(), s.CAFile())
	}
	cfgFile := filepath.Join(dir, "ahvfs.toml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("repository = %q\n", repo)+site("prod", prod)+site("dr", drs)+
		"[[policy]]\nname = \"all\"\ncluster = \"prod\"\nvms = [\"*\"]\nevery = \"1h\"\n"), 0o600)
	planFile := filepath.Join(dir, "plan.toml")
	writePlan := func(net string) {
		os.WriteFile(planFile, []byte(fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
data_path = "rest"
test_network_map = ["vlan10=%s"]
[[stage]]
vms = ["db01"]
[[stage]]
vms = ["web*"]
`, repo, net)), 0o600)
	}
	writePlan("bubble")
	if _, errs, code := runCLI(t, "", "failover", "test", "--dry-run", "--config", cfgFile, planFile); code == 0 || !strings.Contains(errs, `no subnet "bubble"`) {
		t.Fatalf("dry run of a plan with a missing test subnet: exit %d\n%s", code, errs)
	}
	writePlan("vlan20")
	if out := mustCLI(t, "failover", "test", "--dry-run", "--config", cfgFile, planFile); !strings.Contains(out, "can run") ||
		!strings.Contains(out, "2 VMs need 4.0 GiB of memory") || !strings.Contains(out, "of data to restore") {
		t.Fatalf("dry run: %s", out)
	}
	before := drs.Objects()
	out := mustCLI(t, "failover", "test", "--config", cfgFile, planFile)
	if !strings.Contains(out, "stage 1: db01") || !strings.Contains(out, "stage 2: web01") || !strings.Contains(out, "is up: 2 VMs") {
		t.Fatalf("failover test:\n%s", out)
	}
	out = mustCLI(t, "failover", "status", "--config", cfgFile, planFile)
	if strings.Count(out, "on     ON\n") != 2 {
		t.Fatalf("status:\n%s", out)
	}
	mustCLI(t, "failover", "undo", "--config", cfgFile, planFile)
	drs.WaitTasks(time.Minute)
	if after := drs.Objects(); len(after.VMs) != len(before.VMs) || len(after.Images) != len(before.Images) {
		t.Fatalf("DR site after undo: %d VMs %d images, before %d %d", len(after.VMs), len(after.Images), len(before.VMs), len(before.Images))
	}

	// Killed with SIGKILL at random moments (10 trials): status tells
	// what the state holds, undo leaves the DR site as it was.
	drs.SetFaults(prismsim.Faults{Latency: 20 * time.Millisecond, Paths: []string{"/file"}}) // slower uploads
	defer drs.SetFaults(prismsim.Faults{})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	for trial := range 10 {
		cmd := exec.Command(ahvfsBin, "failover", "test", "--config", cfgFile, planFile)
		cmd.Env = append(os.Environ(), "AHVFS_REPO_PASSWORD_FILE=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wait := time.Duration(rng.IntN(3000)) * time.Millisecond
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(wait):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		var st struct {
			State *struct{ VMs []struct{ VM, Status string } }
			Live  []struct{ Exists bool }
		}
		if err := json.Unmarshal([]byte(mustCLI(t, "failover", "status", "--json", "--config", cfgFile, planFile)), &st); err != nil {
			t.Fatal(err)
		}
		states := []string{}
		if st.State != nil {
			for i, v := range st.State.VMs {
				states = append(states, v.Status)
				// The state never claims a VM is on that the cluster lacks.
				if v.Status == "on" && !st.Live[i].Exists {
					t.Fatalf("trial %d: status says %s is on, the DR site has no such VM", trial, v.VM)
				}
			}
		}
		t.Logf("trial %d: killed after %v: %v", trial, wait, states)
		if st.State != nil {
			mustCLI(t, "failover", "undo", "--config", cfgFile, planFile)
		}
		drs.WaitTasks(time.Minute)
		if after := drs.Objects(); len(after.VMs) != len(before.VMs) || len(after.Images) != len(before.Images) || len(after.VolumeGroups) > 0 {
			t.Fatalf("trial %d: DR site after the kill and undo: VMs %+v, %d images, %d VGs", trial, after.VMs, len(after.Images), len(after.VolumeGroups))
		}
	}
	if out := mustCLI(t, "failover", "status", "--config", cfgFile, planFile); !strings.Contains(out, "no failover is up") {
		t.Fatalf("status after undo: %s", out)
	}
}
