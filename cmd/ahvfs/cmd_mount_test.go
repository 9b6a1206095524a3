package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
			errPipe, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			stderr := &lineLog{}
			busy := make(chan struct{})
			var pipes sync.WaitGroup // cmd.Wait only once both pipes are drained
			pipes.Add(2)
			go func() { // stderr, line by line; busy is closed at the first "busy"
				defer pipes.Done()
				var once sync.Once
				sc := bufio.NewScanner(errPipe)
				for sc.Scan() {
					stderr.add(sc.Text())
					if strings.Contains(sc.Text(), "busy") {
						once.Do(func() { close(busy) })
					}
				}
			}()
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || !strings.Contains(lines.Text(), "mounted") || !strings.Contains(lines.Text(), mp) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("first line %q; stderr %s", lines.Text(), stderr)
			}
			go func() { defer pipes.Done(); io.Copy(io.Discard, stdout) }()
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
			if sig == syscall.SIGINT { // busy: an open file holds the mount until ahvfs says so
				var err error
				if open, err = os.Open(leaf); err != nil {
					t.Fatal(err)
				}
			}
			cmd.Process.Signal(sig)
			if open != nil {
				select {
				case <-busy:
				case <-time.After(time.Minute):
					t.Errorf("no busy message a minute after %v; stderr %s", sig, stderr)
				}
				open.Close()
			}
			done := make(chan error, 1)
			go func() { pipes.Wait(); done <- cmd.Wait() }()
			select {
			case err := <-done:
				exited = true
				if err != nil {
					t.Fatalf("exit: %v; stderr %s", err, stderr)
				}
			case <-time.After(time.Minute):
				t.Fatalf("no exit a minute after %v; stderr %s", sig, stderr)
			}
			if l, err := os.ReadDir(mp); err != nil || len(l) != 0 {
				t.Errorf("after unmount: %v %v", l, err)
			}
		})
	}
}

// lineLog collects a process's stderr lines, safe for one writer and
// concurrent readers.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
