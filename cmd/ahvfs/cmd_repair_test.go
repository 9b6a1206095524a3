package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestRepairIndex: with index/ and snapshots/ deleted, list and import say
// to run 'ahvfs repair index'; it rebuilds both, reports what it found in
// text and JSON, and the restore points read back byte-exact.
func TestRepairIndex(t *testing.T) {
	img := enginetest.DataDisk(t, 8<<20, 5)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB")
	for _, vm := range []string{"web01", "db01"} {
		mustCLI(t, "import", "--repo", repo, "--vm", vm, "--time", "2026-11-22T01:30:00Z", img)
	}
	for _, sub := range []string{"index", "snapshots"} {
		os.RemoveAll(filepath.Join(repo, sub))
	}
	for _, args := range [][]string{{"list"}, {"import", "--vm", "x", img}} {
		_, errs, code := runCLI(t, "", append(args, "--repo", repo)...)
		if code == 0 || !strings.Contains(errs, "ahvfs repair index") || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Fatalf("%s without an index: exit %d, stderr %q; want one line saying to run 'ahvfs repair index'", args[0], code, errs)
		}
	}
	out := mustCLI(t, "repair", "index", "--repo", repo)
	if !strings.Contains(out, "rebuilt the index") || !strings.Contains(out, "2 restore points") {
		t.Fatalf("repair index: %s", out)
	}
	var rep struct {
		OK            bool `json:"ok"`
		Chunks        int  `json:"chunks"`
		RestorePoints int  `json:"restore_points"`
	}
	out = mustCLI(t, "repair", "index", "--read-data", "--repo", repo, "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.RestorePoints != 2 || rep.Chunks < 100 {
		t.Fatalf("repair index --json: %v %s", err, out)
	}
	want, _ := os.ReadFile(img)
	for _, vm := range []string{"web01", "db01"} {
		if got := mustCLI(t, "cat", "--repo", repo, vm+"@latest", "disk-0"); !bytes.Equal([]byte(got), want) {
			t.Fatalf("cat %s after repair differs from the image", vm)
		}
	}
	if out := mustCLI(t, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no errors") {
		t.Fatalf("verify after repair: %s", out)
	}
}
