package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// randomFile writes n random bytes to a new file and returns its path and
// bytes.
func randomFile(t *testing.T, n int, seed uint64) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 5))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

type gcJSON struct {
	DryRun       bool  `json:"dry_run"`
	PacksDeleted int   `json:"packs_deleted"`
	Rewritten    int   `json:"packs_rewritten"`
	Reclaimed    int64 `json:"reclaimed_bytes"`
	Unused       int64 `json:"unused_blobs"`
	Points       int   `json:"restore_points"`
	Blobs        int64 `json:"blobs"`
}

// TestGCWithConcurrentImport runs gc and an import at the same time, both
// with --lock-wait, several times. The import's image shares its chunks
// with a restore point just forgotten: whichever runs first, the import's
// restore point reads back byte-exact, verify --read-data passes, and a
// later gc reclaims only what no point needs. Each round also checks the
// dry runs of gc and prune and what stats says gc could reclaim.
func TestGCWithConcurrentImport(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB", "--pack-size", "1MiB")
	for round := range 3 {
		img, data := randomFile(t, 3<<20, uint64(round))
		mustCLI(t, "import", "--repo", repo, "--vm", "gone", "--time", "2026-01-01T00:00:00Z", img)
		mustCLI(t, "import", "--repo", repo, "--vm", "kept", "--time", "2026-01-02T00:00:00Z", img)
		var pr struct {
			Remove      []string `json:"remove"`
			Reclaimable int64    `json:"reclaimable_bytes"`
		}
		out := mustCLI(t, "prune", "--repo", repo, "--json", "--dry-run", "--vm", "gone", "--keep-within", "1h", "--keep-last", "0")
		if err := json.Unmarshal([]byte(out), &pr); err != nil || len(pr.Remove) != 0 {
			t.Fatalf("prune --dry-run: %v %s", err, out)
		}
		mustCLI(t, "forget", "--repo", repo, "gone@2026-01-01T00:00:00Z")
		// The forgotten point shares every chunk with "kept": nothing to reclaim.
		var g gcJSON
		if err := json.Unmarshal([]byte(mustCLI(t, "gc", "--repo", repo, "--json", "--dry-run")), &g); err != nil || !g.DryRun || g.Reclaimed != 0 {
			t.Fatalf("gc --dry-run with nothing unused: %+v %v", g, err)
		}
		mustCLI(t, "forget", "--repo", repo, "kept@2026-01-02T00:00:00Z")
		if err := json.Unmarshal([]byte(mustCLI(t, "gc", "--repo", repo, "--json", "--dry-run")), &g); err != nil || g.Reclaimed < 3<<20 {
			t.Fatalf("gc --dry-run after both points were forgotten: %+v %v", g, err)
		}
		var st struct {
			Reclaimable int64 `json:"reclaimable_bytes"`
		}
		if err := json.Unmarshal([]byte(mustCLI(t, "stats", "--repo", repo, "--json")), &st); err != nil || st.Reclaimable != g.Reclaimed {
			t.Fatalf("stats reclaimable %d (%v), gc --dry-run %d", st.Reclaimable, err, g.Reclaimed)
		}

		// Now gc and an import of the same data race for the writer lock.
		name := "again@2026-02-0" + string(rune('1'+round)) + "T00:00:00Z"
		vm, at, _ := strings.Cut(name, "@")
		var wg sync.WaitGroup
		var gcOut, gcErr, impErr string
		var gcCode, impCode int
		wg.Go(func() {
			gcOut, gcErr, gcCode = runCLI(t, "", "gc", "--repo", repo, "--json", "--lock-wait", "2m")
		})
		wg.Go(func() {
			_, impErr, impCode = runCLI(t, "", "import", "--repo", repo, "--vm", vm, "--time", at, "--lock-wait", "2m", img)
		})
		wg.Wait()
		if gcCode != 0 || impCode != 0 {
			t.Fatalf("round %d: gc exit %d (%s), import exit %d (%s)", round, gcCode, gcErr, impCode, impErr)
		}
		if err := json.Unmarshal([]byte(gcOut), &g); err != nil {
			t.Fatal(err)
		}
		if got := mustCLI(t, "cat", "--repo", repo, name, "disk-0"); got != string(data) {
			t.Fatalf("round %d: the import that raced gc (which reclaimed %d bytes) reads back wrong bytes", round, g.Reclaimed)
		}
		if out := mustCLI(t, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no errors") {
			t.Fatalf("round %d: verify: %s", round, out)
		}
		// Without restore points, a gc leaves no pack: the next round
		// starts from an empty repository.
		mustCLI(t, "forget", "--repo", repo, name)
		if err := json.Unmarshal([]byte(mustCLI(t, "gc", "--repo", repo, "--json", "--max-unused", "0%")), &g); err != nil || g.PacksDeleted == 0 {
			t.Fatalf("round %d: last gc: %+v %v", round, g, err)
		}
		if n := len(globPacks(t, repo)); n != 0 {
			t.Fatalf("round %d: %d packs left in a repository without restore points", round, n)
		}
	}
}

func globPacks(t *testing.T, repo string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(repo, "packs", "*", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
