package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestExportCLI: `ahvfs export` writes qcow2 disks identical to the
// imported images (qemu-img compare), an OVF and a libvirt XML, and
// prints a JSON summary.
func TestExportCLI(t *testing.T) {
	testenv.Commands(t, "qemu-img", "mkfs.ext4")
	img := enginetest.Ext4Image(t, 64<<20, 5)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "web01", "--time", "2026-11-22T01:30:00Z", img)
	out := filepath.Join(t.TempDir(), "out")
	js := mustCLI(t, "export", "--repo", repo, "--format", "qcow2", "--out", out, "--json", "web01@latest")
	var res struct {
		Disks []struct{ File string }
		OVF   string
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || len(res.Disks) != 1 || res.OVF == "" {
		t.Fatalf("%v: %s", err, js)
	}
	if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, res.Disks[0].File).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v %s", err, b)
	}
	if _, errs, code := runCLI(t, "", "export", "--repo", repo, "--format", "vdi", "--out", out, "web01@latest"); code != 2 {
		t.Errorf("--format vdi: exit %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "", "export", "--repo", repo, "--out", out, "web01@latest"); code != 1 {
		t.Errorf("export over existing files: exit %d %s", code, errs)
	}
}
