package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestMountCommand runs "ahvfs mount" as a process: it prints the
// mountpoint, serves the tree, refuses a busy or non-empty mountpoint, and
// unmounts cleanly on SIGTERM (and on SIGINT while a file is open).
func TestMountCommand(t *testing.T) {
	testenv.FUSE(t)
	repo, src := guestRepoDir(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			mp := filepath.Join(t.TempDir(), "mnt")
			os.Mkdir(mp, 0o755)
			cmd := exec.Command(ahvfsBin, "mount", "--repo", repo, mp)
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || !strings.Contains(lines.Text(), "mounted") || !strings.Contains(lines.Text(), mp) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("first line %q; stderr %s", lines.Text(), stderr.String())
			}
			exited := false
			t.Cleanup(func() {
				if !exited {
					cmd.Process.Kill()
					cmd.Wait()
					syscall.Unmount(mp, syscall.MNT_DETACH)
				}
			})
			// The tree is there.
			leaf := filepath.Join(mp, "web01", "latest", "disk-0", "part-1", "deep", "a", "b", "c", "d", "e", "f", "g", "leaf.txt")
			if b, err := os.ReadFile(leaf); err != nil || string(b) != "leaf\n" {
				t.Fatalf("leaf.txt: %q %v", b, err)
			}
			want, _ := os.ReadFile(filepath.Join(src, "deep", "a", "b", "c", "d", "e", "f", "g", "leaf.txt"))
			if string(want) != "leaf\n" {
				t.Fatalf("source leaf %q", want)
			}
			// A busy mountpoint and a non-empty directory are refused.
			_, errs, code := runCLI(t, "", "mount", "--repo", repo, mp)
			if code == 0 || !strings.Contains(errs, "already mounted") {
				t.Errorf("second mount: exit %d: %s", code, errs)
			}
			_, errs, code = runCLI(t, "", "mount", "--repo", repo, filepath.Dir(src))
			if code == 0 || !strings.Contains(errs, "not empty") {
				t.Errorf("mount on a non-empty dir: exit %d: %s", code, errs)
			}
			var open *os.File
			if sig == syscall.SIGINT { // busy: an open file holds the mount
				var err error
				if open, err = os.Open(leaf); err != nil {
					t.Fatal(err)
				}
				time.AfterFunc(1500*time.Millisecond, func() { open.Close() })
			}
			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				exited = true
				if err != nil {
					t.Fatalf("exit: %v; stderr %s", err, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no exit after %v; stderr %s", sig, stderr.String())
			}
			if open != nil && !strings.Contains(stderr.String(), "busy") {
				t.Errorf("no busy message: %s", stderr.String())
			}
			if l, err := os.ReadDir(mp); err != nil || len(l) != 0 {
				t.Errorf("after unmount: %v %v", l, err)
			}
		})
	}
}
