package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// nfsServeReport is what "ahvfs nfs-serve --json" prints when it listens.
type nfsServeReport struct {
	Listen  string   `json:"listen"`
	Portmap string   `json:"portmap"`
	Allow   []string `json:"allow"`
}

// startNFSServeProcess starts "ahvfs nfs-serve --repo repo --json args..." as a
// process, killed when the test ends, and returns it with its start
// report.
func startNFSServeProcess(t *testing.T, repo string, args ...string) (*exec.Cmd, nfsServeReport, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(ahvfsBin, append([]string{"nfs-serve", "--repo", repo, "--json"}, args...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	dec := json.NewDecoder(stdout)
	var started nfsServeReport
	if err := dec.Decode(&started); err != nil || started.Listen == "" {
		t.Fatalf("nfs-serve start report: %v; stderr %s", err, stderr)
	}
	go io.Copy(io.Discard, io.MultiReader(dec.Buffered(), stdout))
	return cmd, started, stderr
}

// startNFSServe serves repo on a private loopback port (no portmapper)
// until the test ends, and returns the address.
func startNFSServe(t *testing.T, repo string) string {
	t.Helper()
	_, started, _ := startNFSServeProcess(t, repo, "--listen", "127.0.0.1:0", "--portmap", "off")
	return started.Listen
}

// TestInstantRestoreCLI: instant-restore runs the VM from nfs-serve at
// once, status shows it hydrating or hydrated, finish waits and removes
// the external repository, and the disk equals the restore point; a
// cluster without the v4.2 APIs is refused with the reason, or restored
// in full with --fallback restore.
func TestInstantRestoreCLI(t *testing.T) {
	img := enginetest.Ext4Image(t, 32<<20, 8)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "imported", "--time", "2026-11-22T01:30:00Z", img)
	// The NFS server first, so that it stops last: the simulators'
	// hydrators are gone before their export is.
	nfsAddr := startNFSServe(t, repo)
	s, _, _ := simForCLI(t)
	s42, err := prismsim.New(context.Background(), prismsim.Options{StateDir: t.TempDir(), TaskDelay: time.Millisecond,
		V4Revisions: []string{"v4.0", "v4.1", "v4.2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s42.Close() })
	site := func(s *prismsim.Sim) []string {
		return []string{"--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile()}
	}
	args := append([]string{"instant-restore", "--repo", repo, "--nfs", nfsAddr, "--target-cluster", "cluster-b", "--name", "ir1", "--power-on", "--json"}, site(s42)...)
	js := mustCLI(t, append(args, "imported@latest")...)
	var res struct {
		Name      string `json:"name"`
		PoweredOn bool   `json:"powered_on"`
		DataPath  string `json:"data_path"`
		Repo      struct {
			Name    string `json:"name"`
			Address string `json:"address"`
		} `json:"external_repository"`
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || res.Name != "ir1" || !res.PoweredOn || res.DataPath != "instant" || res.Repo.Address != nfsAddr {
		t.Fatalf("%v: %s", err, js)
	}
	st := mustCLI(t, append([]string{"instant-restore", "status", "ir1"}, site(s42)...)...)
	if !strings.Contains(st, "ir1 (") || !strings.Contains(st, "scsi.0") {
		t.Errorf("status:\n%s", st)
	}
	// While the VM reads from it, the point is held: listed so, and
	// forget refuses it.
	var listed []struct {
		Name   string   `json:"name"`
		HeldBy []string `json:"held_by"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "list", "--repo", repo, "--json")), &listed); err != nil || len(listed) != 1 || len(listed[0].HeldBy) != 1 || !strings.Contains(listed[0].HeldBy[0], "ir1") {
		t.Fatalf("list while hydrating: %+v %v", listed, err)
	}
	if out, errs, code := runCLI(t, "", "forget", "--repo", repo, "imported@latest"); code != 1 || !strings.Contains(errs, "is held") || !strings.Contains(errs, "ir1") {
		t.Fatalf("forget of the point a VM hydrates from: exit %d: %s %s", code, out, errs)
	}
	fin := mustCLI(t, append([]string{"instant-restore", "finish", "ir1", "--repo", repo, "--timeout", "2m"}, site(s42)...)...)
	if !strings.Contains(fin, "VM ir1 hydrated") || !strings.Contains(fin, "removed external repository "+res.Repo.Name) ||
		!strings.Contains(fin, "released the hold on "+listed[0].Name) {
		t.Errorf("finish:\n%s", fin)
	}
	requireNoHolds(t, repo)
	vi, ok := s42.VM("ir1")
	if !ok || len(vi.Disks) != 1 {
		t.Fatalf("VM %+v", vi)
	}
	a, _ := os.ReadFile(vi.Disks[0])
	b, _ := os.ReadFile(img)
	if !bytes.Equal(a, b) {
		t.Error("the hydrated disk differs from the restore point")
	}
	if out, errs, code := runCLI(t, "", append([]string{"instant-restore", "cancel", "ir1"}, site(s42)...)...); code == 0 {
		t.Errorf("cancel of a hydrated VM: exit 0: %s", out)
	} else if !strings.Contains(errs, "not deleted") {
		t.Errorf("cancel of a hydrated VM: %s", errs)
	}

	// Without v4.2: the reason, and nothing created; or a full restore.
	old := append([]string{"instant-restore", "--repo", repo, "--nfs", nfsAddr, "--target-cluster", "cluster-b", "--name", "ir2"}, site(s)...)
	if _, errs, code := runCLI(t, "", append(old, "imported@latest")...); code != 1 || !strings.Contains(errs, "v4.2") {
		t.Errorf("without v4.2: exit %d: %s", code, errs)
	}
	if _, ok := s.VM("ir2"); ok {
		t.Error("a refused instant restore created the VM")
	}
	out, errs, code := runCLI(t, "", append(old, "--fallback", "restore", "--data-path", "rest", "imported@latest")...)
	if code != 0 || !strings.Contains(errs, "--fallback restore") || !strings.Contains(out, "via rest") {
		t.Fatalf("fallback: exit %d\n%s\n%s", code, out, errs)
	}
	if vi, ok := s.VM("ir2"); !ok || len(vi.Disks) != 1 {
		t.Fatalf("fallback VM %+v", vi)
	}
	if _, _, code := runCLI(t, "", append(old, "--fallback", "maybe", "imported@latest")...); code != 2 {
		t.Errorf("--fallback maybe: exit %d, want 2", code)
	}
	requireNoHolds(t, repo)
}

// requireNoHolds fails unless repository repo holds no restore point (a
// temporary file a killed hold's Put left, ".<id>.rec.tmp-…", holds
// nothing).
func requireNoHolds(t *testing.T, repo string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repo, "records", "hold"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("hold left: %s", e.Name())
		}
	}
}

// TestInstantRestoreKill kills `ahvfs instant-restore` with SIGKILL at
// random moments, many times, then runs `ahvfs cleanup`: the cluster is
// then as it was before, or, when the kill came after the restore was
// complete, holds the whole result (the VM and the repository it reads
// from), which cancel removes. The journal ends empty.
func TestInstantRestoreKill(t *testing.T) {
	clearSiteEnv(t)
	// Tasks of 50ms: an instant restore takes a few hundred ms, and the
	// kills spread over it.
	img := enginetest.Ext4Image(t, 16<<20, 9)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "imported", "--time", "2026-11-22T01:30:00Z", img)
	nfsAddr := startNFSServe(t, repo) // before the simulator: it stops after it
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{TaskDelay: 50 * time.Millisecond, V4Revisions: []string{"v4.0", "v4.1", "v4.2"}}})
	cluster := []string{"--repo", repo, "--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile()}
	// How long a whole instant restore takes here: the kills fall within
	// 1.2 times that.
	start := time.Now()
	mustCLI(t, append([]string{"instant-restore", "imported@latest", "--nfs", nfsAddr, "--target-cluster", "cluster-b", "--name", "ir-timed"}, cluster...)...)
	whole := time.Since(start)
	dropInstantVM(t, s, cluster, "ir-timed")
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill moments from seed %d", seed)
	r := mrand.New(mrand.NewPCG(seed, 17))
	outcomes := map[string]int{}
	for i := range 8 {
		s.WaitIdle(30*time.Second, 0)
		before := s.Objects()
		args := append([]string{"instant-restore", "imported@latest", "--nfs", nfsAddr, "--target-cluster", "cluster-b", "--name", "ir-kill", "--power-on"}, cluster...)
		cmd := exec.Command(ahvfsBin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		delay := time.Duration(r.Int64N(int64(whole) * 6 / 5))
		exited := false
		select {
		case err := <-done:
			exited = true
			if err != nil {
				t.Fatalf("instant-restore failed before its kill: %v: %s", err, stderr.String())
			}
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		s.WaitIdle(30*time.Second, 0)
		if out, errs, code := runCLI(t, "", append([]string{"cleanup", "--json"}, cluster...)...); code != 0 {
			t.Fatalf("round %d: cleanup: exit %d: %s %s", i, code, out, errs)
		}
		s.WaitIdle(30*time.Second, 0)
		vi, ok := s.VM("ir-kill")
		switch {
		case ok:
			// The whole result: the VM and its repository; finish removes
			// the repository, then the VM goes as an administrator deletes it.
			after := s.Objects()
			if len(after.ExternalRepositories) != 1 || len(vi.Disks) != 1 {
				t.Fatalf("round %d: a VM survived without its repository: %+v", i, after)
			}
			dropInstantVM(t, s, cluster, "ir-kill")
			outcomes["complete"]++
		case exited:
			t.Fatalf("round %d: the restore succeeded but its VM is gone", i)
		default:
			outcomes["undone"]++
		}
		s.WaitIdle(30*time.Second, 0)
		simtest.RequireUnchanged(t, before, s.Objects())
		requireNoHolds(t, repo) // cleanup, or finish, released it
		t.Logf("round %d: killed after %v (exited first: %v)", i, delay, exited)
	}
	if p, err := openJournal(t, repo).Pending(); err != nil || len(p) != 0 {
		t.Fatalf("journal: %+v %v", p, err)
	}
	t.Logf("a whole instant restore took %v; outcomes %v", whole, outcomes)
}

// dropInstantVM ends an instant restore with finish (which must remove
// its external repository and, given the repository in site, the hold),
// then deletes the VM as an administrator would.
func dropInstantVM(t *testing.T, s *prismsim.Sim, site []string, name string) {
	t.Helper()
	fin := mustCLI(t, append([]string{"instant-restore", "finish", name, "--timeout", "1m"}, site...)...)
	if !strings.Contains(fin, "removed external repository") {
		t.Fatalf("finish %s: %s", name, fin)
	}
	vi, ok := s.VM(name)
	if !ok {
		t.Fatalf("no VM %s", name)
	}
	cl, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: s.URL(), PasswordFile: s.PasswordFile(), CACertFile: s.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.DeleteVM(context.Background(), vi.UUID); err != nil {
		t.Fatal(err)
	}
}
