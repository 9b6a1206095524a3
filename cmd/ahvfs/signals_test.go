package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// These tests send SIGTERM to a real ahvfs process blocked in a read or a
// write that the kernel does not interrupt, and expect it to exit with 130
// at once. Each waits for a condition that proves the process is blocked
// there (never for a fixed time); the deadline only turns a hang into a
// failure.

const exitDeadline = time.Minute

// startAhvfs starts the binary with stderr captured.
func startAhvfs(t *testing.T, stdout *os.File, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(ahvfsBin, args...)
	cmd.Env = append(os.Environ(), "AHVFS_REPO_PASSWORD_FILE=")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &errb
}

// terminate sends SIGTERM and returns the exit code; it fails the test
// when the process does not exit within exitDeadline.
func terminate(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(exitDeadline):
		// SIGQUIT makes the Go runtime print every goroutine: where it hangs.
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		t.Fatalf("ahvfs %s ignored SIGTERM for %s; stderr:\n%s", strings.Join(cmd.Args[1:], " "), exitDeadline, cmd.Stderr)
		return 0
	}
}

func testRepoWithImage(t *testing.T, size int) (repo string, data []byte) {
	t.Helper()
	tmp := t.TempDir()
	repo = filepath.Join(tmp, "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB")
	data = make([]byte, size)
	rand.NewChaCha8([32]byte{2}).Read(data)
	img := filepath.Join(tmp, "img.raw")
	os.WriteFile(img, data, 0o644)
	mustCLI(t, "import", "--repo", repo, "--vm", "vm", img)
	return repo, data
}

// TestCatSIGTERMOnBlockedPipe: cat writing to a pipe nobody reads.
func TestCatSIGTERMOnBlockedPipe(t *testing.T) {
	repo, data := testRepoWithImage(t, 8<<20)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd, errb := startAhvfs(t, w, "cat", "--repo", repo, "vm@latest", "disk-0")
	w.Close()
	// One byte read: cat is writing. The pipe holds 64 KiB of the 8 MiB,
	// so the rest of its write blocks until someone reads.
	one := make([]byte, 1)
	if _, err := r.Read(one); err != nil || one[0] != data[0] {
		t.Fatalf("first byte: %v", err)
	}
	if code := terminate(t, cmd); code != exitInterrupted || !strings.Contains(errb.String(), "interrupted by SIGTERM") {
		t.Fatalf("exit %d: %s", code, errb)
	}
}

// TestPasswordFIFOSIGTERM: a password file that is a FIFO whose writer
// never writes.
func TestPasswordFIFOSIGTERM(t *testing.T) {
	repo, _ := testRepoWithImage(t, 64<<10)
	fifo := filepath.Join(t.TempDir(), "pw")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, errb := startAhvfs(t, nil, "list", "--repo", repo, "--repo-password-file", fifo)
	// Opening the write end returns once ahvfs has opened the read end:
	// it is then reading the password.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if code := terminate(t, cmd); code != exitInterrupted || !strings.Contains(errb.String(), "interrupted by SIGTERM") {
		t.Fatalf("exit %d: %s", code, errb)
	}
}

// hangingFile is a FUSE file whose reads block until released (or
// interrupted): a hung NFS file or a block device that lost its path.
type hangingFile struct {
	fs.Inode
	size    uint64
	reading chan struct{} // receives when a read arrives
	release chan struct{}
}

func (f *hangingFile) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Size = syscall.S_IFREG|0o644, f.size
	return 0
}

func (f *hangingFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *hangingFile) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case f.reading <- struct{}{}:
	default:
	}
	select {
	case <-f.release:
	case <-ctx.Done():
	}
	return nil, syscall.EINTR
}

type hangingRoot struct {
	fs.Inode
	file *hangingFile
}

func (r *hangingRoot) OnAdd(ctx context.Context) {
	r.AddChild("disk.raw", r.NewPersistentInode(ctx, r.file, fs.StableAttr{Mode: syscall.S_IFREG}), false)
}

// TestImportSIGTERMOnHangingRead: import of a file whose reads hang.
func TestImportSIGTERMOnHangingRead(t *testing.T) {
	testenv.FUSE(t)
	repo, _ := testRepoWithImage(t, 64<<10)
	file := &hangingFile{size: 64 << 20, reading: make(chan struct{}, 1), release: make(chan struct{})}
	mp := t.TempDir()
	srv, err := fs.Mount(mp, &hangingRoot{file: file}, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, Name: "ahvfs-test", Options: []string{"ro"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(file.release)
		srv.Unmount()
	}()
	cmd, errb := startAhvfs(t, nil, "import", "--repo", repo, "--vm", "hang", filepath.Join(mp, "disk.raw"))
	select {
	case <-file.reading:
	case <-time.After(exitDeadline):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("import never read the file: %s", errb)
	}
	if code := terminate(t, cmd); code != exitInterrupted || !strings.Contains(errb.String(), "interrupted by SIGTERM") {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if out := mustCLI(t, "list", "--repo", repo); strings.Contains(out, "hang") {
		t.Fatalf("an interrupted import left a restore point:\n%s", out)
	}
}
