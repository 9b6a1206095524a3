package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestRestoreCLI restores an imported (configuration-less) restore point
// to cluster-b through the images API: the simulator's disk equals the
// image, the JSON summary names the VM, the defaults apply, --container
// takes a name, and bad flags are usage errors.
func TestRestoreCLI(t *testing.T) {
	s, _, _ := simForCLI(t)
	img := enginetest.Ext4Image(t, 64<<20, 6)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "imported", "--time", "2026-11-22T01:30:00Z", img)
	args := []string{"restore", "--repo", repo, "--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile()}
	js := mustCLI(t, append(args, "--target-cluster", "cluster-b", "--container", "default", "--name", "imp2", "--data-path", "rest", "--memory", "1GiB",
		"--power-on", "--json", "imported@latest")...)
	var res struct {
		VMUUID, Name, Cluster string
		PoweredOn             bool `json:"powered_on"`
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || res.Name != "imp2" || res.Cluster != "cluster-b" || !res.PoweredOn {
		t.Fatalf("%v: %s", err, js)
	}
	vi, ok := s.VM("imp2")
	if !ok || len(vi.Disks) != 1 {
		t.Fatalf("VM %+v", vi)
	}
	a, _ := os.ReadFile(vi.Disks[0])
	b, _ := os.ReadFile(img)
	if !bytes.Equal(a, b) {
		t.Error("restored disk differs from the image")
	}
	for _, bad := range [][]string{{"--network-map", "vlan10"}, {"--data-path", "nfs"}, {"--disks", "d0"}, {"--memory", "lots"}} {
		if _, errs, code := runCLI(t, "", append(append(args, bad...), "imported@latest")...); code != 2 {
			t.Errorf("%v: exit %d %s", bad, code, errs)
		}
	}
	// Same name again: refused before anything is created.
	_, errs, code := runCLI(t, "", append(args, "--target-cluster", "cluster-b", "--name", "imp2", "--data-path", "rest", "imported@latest")...)
	if code != 1 || !bytes.Contains([]byte(errs), []byte("already exists")) {
		t.Errorf("name clash: exit %d %s", code, errs)
	}
}
