package main

import (
	"bytes"
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
)

// TestImportSurvivesSIGKILL kills imports at random moments, then checks
// that the repository verifies, that every restore point ever listed is
// still listed and reads back exactly, and that a new import completes.
func TestImportSurvivesSIGKILL(t *testing.T) {
	a := enginetest.Ext4Image(t, 96<<20, 1)
	b := enginetest.Ext4Image(t, 96<<20, 2)
	aBytes, _ := os.ReadFile(a)
	bBytes, _ := os.ReadFile(b)
	work := t.TempDir()
	repo := filepath.Join(work, "repo")
	// Small chunks and packs: many seals and index commits to land in.
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB", "--pack-size", "1MiB", "--parity", "4+1")

	// Each iteration imports a variant of a with a slice of b spliced in, so
	// every import brings new data.
	variant := func(i int) []byte {
		v := append([]byte(nil), aBytes...)
		off := (i * 3 << 20) % (len(v) - 8<<20)
		copy(v[off:off+8<<20], bBytes[off:off+8<<20])
		return v
	}
	runImport := func(i int, kill time.Duration) (bool, time.Duration, error) {
		img := filepath.Join(work, fmt.Sprintf("v%d.raw", i))
		if err := os.WriteFile(img, variant(i), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(img)
		cmd := exec.Command(ahvfsBin, "import", "--repo", repo, "--vm", fmt.Sprintf("vm%d", i%3),
			"--time", time.Unix(1_800_000_000+int64(i)*60, 0).UTC().Format(time.RFC3339), img)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				return false, 0, fmt.Errorf("import %d: %v: %s", i, err, errb.String())
			}
			return true, time.Since(start), nil
		case <-time.After(kill):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			return false, 0, nil
		}
	}
	// Calibrate: the first import stores everything; the second, timed, is
	// what every later one costs (mostly deduplicated). An import that
	// completes before its kill lowers the estimate, so that kills keep
	// landing when the machine's load changes.
	if ok, _, err := runImport(0, time.Minute); !ok || err != nil {
		t.Fatalf("first import: %v", err)
	}
	ok, full, err := runImport(1, time.Minute)
	if !ok || err != nil {
		t.Fatalf("calibration import: %v", err)
	}
	committed := map[string]int{
		"vm0@" + time.Unix(1_800_000_000, 0).UTC().Format(time.RFC3339):    0,
		"vm1@" + time.Unix(1_800_000_000+60, 0).UTC().Format(time.RFC3339): 1,
	}
	rng := rand.New(rand.NewPCG(7, 11))
	kills := 0
	for i := 2; kills < 24; i++ {
		if i > 150 {
			t.Fatalf("only %d kills landed in %d imports", kills, i)
		}
		at := time.Duration(rng.Int64N(int64(full) * 9 / 10))
		ok, took, err := runImport(i, at)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			full = min(full, took)
			committed[fmt.Sprintf("vm%d@%s", i%3, time.Unix(1_800_000_000+int64(i)*60, 0).UTC().Format(time.RFC3339))] = i
		} else {
			kills++
		}
		// Structural verify after every kill; the data itself every few.
		args := []string{"verify", "--repo", repo}
		if i%6 == 0 {
			args = append(args, "--read-data")
		}
		if out, errs, code := runCLI(t, "", args...); code != 0 {
			t.Fatalf("after kill %d (at %v): verify failed: %s %s", kills, at, out, errs)
		}
		var list []listEntry
		out := mustCLI(t, "list", "--repo", repo, "--json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, e := range list {
			listed[e.Name] = true
			if _, ok := committed[e.Name]; !ok {
				// Killed after its commit: it must be whole. Its time
				// names the iteration that wrote it.
				when, err := time.Parse(time.RFC3339, strings.SplitN(e.Name, "@", 2)[1])
				if err != nil {
					t.Fatal(err)
				}
				committed[e.Name] = int((when.Unix() - 1_800_000_000) / 60)
			}
		}
		for name := range committed {
			if !listed[name] {
				t.Fatalf("restore point %s was committed and is gone", name)
			}
		}
		// The newest restore point reads back exactly.
		if i%4 == 0 {
			for name, v := range committed {
				if v != i {
					continue
				}
				got := mustCLI(t, "cat", "--repo", repo, name, "disk-0")
				if !bytes.Equal([]byte(got), variant(v)) {
					t.Fatalf("restore point %s does not read back", name)
				}
			}
		}
	}
	// A last import runs to completion, and everything verifies with data.
	if ok, _, err := runImport(999, 2*time.Minute); !ok || err != nil {
		t.Fatalf("final import: %v", err)
	}
	if out, errs, code := runCLI(t, "", "verify", "--repo", repo, "--read-data"); code != 0 {
		t.Fatalf("final verify: %s %s", out, errs)
	}
	name := "vm0@" + time.Unix(1_800_000_000+999*60, 0).UTC().Format(time.RFC3339)
	if got := mustCLI(t, "cat", "--repo", repo, name, "disk-0"); !bytes.Equal([]byte(got), variant(999)) {
		t.Fatal("final restore point does not read back")
	}
	// Every restore point committed in the run reads back exactly.
	for name, v := range committed {
		if got := mustCLI(t, "cat", "--repo", repo, name, "disk-0"); !bytes.Equal([]byte(got), variant(v)) {
			t.Fatalf("restore point %s does not read back", name)
		}
	}
	t.Logf("%d kills, %d restore points committed; a full import takes %v", kills, len(committed), full)
}
