package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestDamagedCheckpointOneLine is issue 13: one flipped bit in the
// checkpoint's table made list, cat and verify panic with a stack trace.
// The real binary must print one line that names the damaged file and says
// to run 'ahvfs repair index' (verify: its report lists the damage), and
// exit non-zero.
func TestDamagedCheckpointOneLine(t *testing.T) {
	ctx := context.Background()
	repo := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10, PageEntries: 16})
	img := filepath.Join(t.TempDir(), "disk.raw")
	b := make([]byte, 512<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	w := enginetest.Open(t, repo, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(ctx, w, "web01", time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC), img); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The next writer moves the records into a table of the checkpoint
	// it publishes.
	enginetest.Open(t, repo, engine.OpenOptions{Writable: true}).Close()

	cur, err := os.ReadFile(filepath.Join(repo, "snapshots", "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(repo, "snapshots", fmt.Sprintf("%016s", strings.TrimSpace(string(cur))), "*.sst"))
	var table string
	var size int64
	for _, p := range ssts {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			table, size = p, st.Size()
		}
	}
	if table == "" {
		t.Fatal("no table in the checkpoint")
	}
	t.Logf("flipping a bit of %s (%d bytes)", table, size)
	tb, _ := os.ReadFile(table)
	// The first data block: the restore point's records; the newest format
	// record is in a newer table, so the repository opens.
	tb[20] ^= 0x04
	if err := os.WriteFile(table, tb, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{"list", "--repo", repo},
		{"list", "--repo", repo, "--json"},
		{"cat", "--repo", repo, "web01@latest", "disk-0"},
		{"verify", "--repo", repo},
	} {
		cmd := exec.Command(ahvfsBin, args...)
		cmd.Env = append(os.Environ(), "AHVFS_REPO_PASSWORD_FILE=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		msg := stderr.String()
		t.Logf("ahvfs %s: exit %d: %s", args[0], code, msg)
		if err == nil || code <= 0 {
			t.Errorf("ahvfs %s: exit %d (%v), want a failure", strings.Join(args, " "), code, err)
		}
		if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "ahvfs: ") || strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic") {
			t.Errorf("ahvfs %s: stderr is not one error line:\n%s", strings.Join(args, " "), msg)
		}
		if args[0] == "verify" && stdout.Len() > 0 {
			// The report lists the damage; the error line says so.
			if !strings.Contains(stdout.String(), "problem: list packs: index checkpoint "+table+" is damaged: ") {
				t.Errorf("ahvfs verify: the report does not list the damage:\n%s", stdout.String())
			}
			continue
		}
		if !strings.Contains(msg, table+" is damaged: ") || !strings.Contains(msg, "; run 'ahvfs repair index'") {
			t.Errorf("ahvfs %s: %q does not name %s and say to run 'ahvfs repair index'", strings.Join(args, " "), msg, table)
		}
		if stdout.Len() > 0 {
			t.Errorf("ahvfs %s: stdout: %q", strings.Join(args, " "), stdout.String())
		}
	}
}
