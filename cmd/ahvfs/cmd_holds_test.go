package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestHoldsCommand: holds lists a hold (text and JSON), forget refuses the
// held point and prune keeps it, holds remove refuses an unknown ID and
// removes a known one, and the point can then be forgotten.
func TestHoldsCommand(t *testing.T) {
	ctx := context.Background()
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	img := enginetest.DataDisk(t, 1<<20, 3)
	mustCLI(t, "import", "--repo", repo, "--vm", "db", "--time", "2026-11-01T00:00:00Z", img)
	mustCLI(t, "import", "--repo", repo, "--vm", "db", "--time", "2026-11-02T00:00:00Z", img)
	if out := mustCLI(t, "holds", "--repo", repo); !strings.Contains(out, "no restore point is held") {
		t.Fatalf("holds of a repository without any: %s", out)
	}
	r := enginetest.Open(t, repo, engine.OpenOptions{})
	rp, err := r.Resolve(ctx, "db@2026-11-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.AddHold(ctx, rp, engine.Hold{Reason: "a VM on a cluster that is gone"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if out := mustCLI(t, "holds", "--repo", repo); !strings.Contains(out, h.ID) || !strings.Contains(out, rp.Name()) || !strings.Contains(out, "cluster that is gone") {
		t.Fatalf("holds: %s", out)
	}
	var listed []engine.Hold
	if err := json.Unmarshal([]byte(mustCLI(t, "holds", "--repo", repo, "--json")), &listed); err != nil || len(listed) != 1 || listed[0].ID != h.ID || listed[0].RP != rp.ID {
		t.Fatalf("holds --json: %+v %v", listed, err)
	}
	if _, errs, code := runCLI(t, "", "forget", "--repo", repo, rp.Name()); code != 1 || !strings.Contains(errs, "is held") {
		t.Fatalf("forget of a held point: exit %d: %s", code, errs)
	}
	if out := mustCLI(t, "prune", "--repo", repo, "--keep-last", "1", "--dry-run"); !strings.Contains(out, "held") {
		t.Fatalf("prune --dry-run does not keep the held point as held:\n%s", out)
	}
	if _, errs, code := runCLI(t, "", "holds", "remove", "--repo", repo, strings.Repeat("0", 32)); code != 1 || !strings.Contains(errs, "no hold") {
		t.Fatalf("holds remove of an unknown ID: exit %d: %s", code, errs)
	}
	if out := mustCLI(t, "holds", "remove", "--repo", repo, h.ID); !strings.Contains(out, "removed the hold "+h.ID) {
		t.Fatalf("holds remove: %s", out)
	}
	mustCLI(t, "forget", "--repo", repo, rp.Name())
}
