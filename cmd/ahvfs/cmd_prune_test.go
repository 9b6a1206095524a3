package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/engine/retention"
)

// pruneHistory fills a repository with restore points of three VMs over
// three years: bursts of several a day, quiet weeks and a two-month gap,
// and returns their names by VM with their times. Each point's one disk
// holds its own name, so a read back proves which point it is.
func pruneHistory(t *testing.T, repo string) map[string][]time.Time {
	t.Helper()
	ctx := context.Background()
	if _, err := engine.Init(ctx, repo, engine.InitOptions{ChunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	w := enginetest.Open(t, repo, engine.OpenOptions{Writable: true})
	defer w.Close()
	rnd := rand.New(rand.NewPCG(14, 3))
	start := time.Date(2023, 12, 30, 22, 0, 0, 0, time.UTC)
	end := start.AddDate(3, 0, 0)
	gapFrom, gapTo := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 4, 3, 0, 0, 0, 0, time.UTC)
	hist := map[string][]time.Time{}
	img := filepath.Join(t.TempDir(), "disk.raw")
	for _, vm := range []string{"web01", "web02", "db01"} {
		for at := start; at.Before(end); {
			if !(at.After(gapFrom) && at.Before(gapTo)) {
				name := vm + "@" + engine.FormatTime(at)
				if err := os.WriteFile(img, bytes.Repeat([]byte(name+"\n"), 1000), 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := enginetest.ImportFiles(ctx, w, vm, at, img); err != nil {
					t.Fatal(err)
				}
				hist[vm] = append(hist[vm], at)
			}
			switch rnd.IntN(8) {
			case 0, 1: // several a day
				at = at.Add(time.Duration(1+rnd.IntN(5)) * time.Hour)
			case 2, 3:
				at = at.Add(time.Duration(1+rnd.IntN(40)) * 24 * time.Hour)
			default:
				at = at.Add(time.Duration(5+rnd.IntN(15)) * 24 * time.Hour).Add(time.Duration(rnd.IntN(3600)) * time.Second)
			}
		}
	}
	n := 0
	for _, ts := range hist {
		n += len(ts)
	}
	if n < 200 {
		t.Fatalf("history of %d restore points, want at least 200", n)
	}
	return hist
}

// expectPrune computes what a policy keeps, VM by VM, with the retention
// package (checked against an independent implementation in its own
// tests), for comparison with what the command does end to end.
func expectPrune(hist map[string][]time.Time, vms []string, p retention.Policy, locked map[string]bool) (keep, remove []string) {
	keep, remove = []string{}, []string{}
	for vm, ts := range hist {
		if len(vms) > 0 && !slices.Contains(vms, vm) {
			continue
		}
		var pts []retention.Point
		for _, at := range ts {
			name := vm + "@" + engine.FormatTime(at)
			pts = append(pts, retention.Point{ID: name, Time: at, Locked: locked[name]})
		}
		for _, d := range retention.Apply(pts, p) {
			if d.Keep {
				keep = append(keep, d.ID)
			} else {
				remove = append(remove, d.ID)
			}
		}
	}
	slices.Sort(keep)
	slices.Sort(remove)
	return keep, remove
}

type pruneJSON struct {
	Keep    []string            `json:"keep"`
	Remove  []string            `json:"remove"`
	Reasons map[string][]string `json:"reasons"`
	DryRun  bool                `json:"dry_run"`
}

func runPrune(t *testing.T, args ...string) pruneJSON {
	t.Helper()
	var res pruneJSON
	out := mustCLI(t, append([]string{"prune", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("prune --json: %v: %s", err, out)
	}
	slices.Sort(res.Keep)
	slices.Sort(res.Remove)
	return res
}

// TestPruneMatchesPolicy runs `prune --dry-run --json` policy by policy
// and combined over a three-year history of more than 200 restore points,
// compares each answer with the policy's arithmetic, then prunes for real
// with a lock on a point the policy would remove: the list afterwards is
// exactly what was kept, the locked point among it, every kept point
// reads back as itself, and verify --read-data passes.
func TestPruneMatchesPolicy(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	t0 := time.Now()
	hist := pruneHistory(t, repo)
	t.Logf("history in %v", time.Since(t0))
	total := 0
	for _, ts := range hist {
		total += len(ts)
	}
	// The dry runs only read: they run while a writer (a backup) holds
	// the repository's lock.
	busy, err := engine.Open(context.Background(), repo, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flags []string
		p     retention.Policy
		vms   []string
	}{
		{[]string{"--keep-last", "5"}, retention.Policy{Last: 5}, nil},
		{[]string{"--keep-hourly", "30"}, retention.Policy{Hourly: 30}, nil},
		{[]string{"--keep-daily", "14"}, retention.Policy{Daily: 14}, nil},
		{[]string{"--keep-weekly", "10"}, retention.Policy{Weekly: 10}, nil},
		{[]string{"--keep-monthly", "18"}, retention.Policy{Monthly: 18}, nil},
		{[]string{"--keep-yearly", "5"}, retention.Policy{Yearly: 5}, nil},
		{[]string{"--keep-within", "3m"}, retention.Policy{Within: retention.Span{Months: 3}}, nil},
		{[]string{"--keep-last", "2", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12", "--keep-yearly", "3", "--keep-within", "10d"},
			retention.Policy{Last: 2, Daily: 7, Weekly: 4, Monthly: 12, Yearly: 3, Within: retention.Span{Days: 10}}, nil},
		{[]string{"--keep-weekly", "3", "--vm", "web*"}, retention.Policy{Weekly: 3}, []string{"web01", "web02"}},
	} {
		res := runPrune(t, append([]string{"--repo", repo, "--dry-run"}, c.flags...)...)
		keep, remove := expectPrune(hist, c.vms, c.p, nil)
		if !slices.Equal(res.Keep, keep) || !slices.Equal(res.Remove, remove) || !res.DryRun {
			t.Fatalf("prune %v: keep %d remove %d, want keep %d remove %d\nkeep %v\nwant %v",
				c.flags, len(res.Keep), len(res.Remove), len(keep), len(remove), res.Keep, keep)
		}
		if len(keep)+len(remove) != total && c.vms == nil {
			t.Fatalf("prune %v: %d decisions for %d restore points", c.flags, len(keep)+len(remove), total)
		}
		for _, n := range res.Keep {
			if len(res.Reasons[n]) == 0 {
				t.Fatalf("prune %v: no reason given to keep %s", c.flags, n)
			}
		}
	}
	busy.Close()
	if out := mustCLI(t, "list", "--repo", repo, "--json"); strings.Count(out, `"name"`) != total {
		t.Fatalf("a dry run removed restore points")
	}
	t.Logf("%d restore points; dry runs done at %v", total, time.Since(t0))

	// For real, with a lock on a point the policy removes.
	flags := []string{"--keep-daily", "3", "--keep-monthly", "6", "--keep-yearly", "2"}
	p := retention.Policy{Daily: 3, Monthly: 6, Yearly: 2}
	_, remove := expectPrune(hist, nil, p, nil)
	victim := remove[len(remove)/2]
	mustCLI(t, "lock", "--repo", repo, victim, "--for", "30d")
	if _, errs, code := runCLI(t, "", "forget", "--repo", repo, victim, remove[0]); code == 0 || !strings.Contains(errs, victim) || !strings.Contains(errs, "locked until") {
		t.Fatalf("forget of a locked point: exit %d: %s", code, errs)
	}
	if _, errs, code := runCLI(t, "", "lock", "--repo", repo, victim, "--for", "1d"); code == 0 || !strings.Contains(errs, "cannot be shortened") {
		t.Fatalf("a shorter lock: exit %d: %s", code, errs)
	}
	res := runPrune(t, append([]string{"--repo", repo}, flags...)...)
	keep, remove := expectPrune(hist, nil, p, map[string]bool{victim: true})
	if !slices.Equal(res.Keep, keep) || !slices.Equal(res.Remove, remove) || !slices.Contains(res.Keep, victim) || !slices.Contains(res.Reasons[victim], "locked") {
		t.Fatalf("prune with a lock: keep %v remove %d; want keep %v, %s kept as locked", res.Keep, len(res.Remove), keep, victim)
	}
	var list []struct {
		Name        string `json:"name"`
		LockedUntil string `json:"locked_until"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "list", "--repo", repo, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
		if (e.LockedUntil != "") != (e.Name == victim) {
			t.Fatalf("list: %s locked_until %q", e.Name, e.LockedUntil)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, keep) {
		t.Fatalf("list after prune: %v, want %v", names, keep)
	}
	for _, n := range keep {
		want := bytes.Repeat([]byte(n+"\n"), 1000)
		if got := mustCLI(t, "cat", "--repo", repo, n, "disk-0"); got != string(want) {
			t.Fatalf("cat %s after prune: wrong bytes", n)
		}
	}
	if out := mustCLI(t, "verify", "--repo", repo, "--read-data"); !strings.Contains(out, "no errors") {
		t.Fatalf("verify after prune: %s", out)
	}
}

// TestPruneRefusesAnEmptyPolicy: without a keep rule prune would remove
// every unlocked point; it refuses with a usage error and removes nothing.
func TestPruneRefusesAnEmptyPolicy(t *testing.T) {
	img := enginetest.DataDisk(t, 1<<20, 4)
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, "init", "--repo", repo)
	mustCLI(t, "import", "--repo", repo, "--vm", "a", img)
	for _, args := range [][]string{{}, {"--keep-last", "0"}, {"--keep-daily", "-1"}, {"--keep-within", "0d"}} {
		_, errs, code := runCLI(t, "", append([]string{"prune", "--repo", repo}, args...)...)
		if code != exitUsage {
			t.Fatalf("prune %v: exit %d (%s), want %d", args, code, errs, exitUsage)
		}
	}
	if out := mustCLI(t, "list", "--repo", repo, "--json"); strings.Count(out, `"name"`) != 1 {
		t.Fatal("a refused prune removed something")
	}
}
