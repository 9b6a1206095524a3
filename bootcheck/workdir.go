package bootcheck

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// workPrefix names boot checks' scratch directories.
const workPrefix = "ahvfs-verify-boot-"

// WorkDir is one boot check's scratch directory: the overlays, the QMP
// socket and whatever the caller mounts there (MountDir). It is locked
// while the check runs, so a check killed outright leaves a directory
// whose lock is free, and the next NewWorkDir removes it (Sweep).
type WorkDir struct {
	Path string
	lock *os.File
}

// MountDir is where the caller may mount the disks' source.
func (w *WorkDir) MountDir() string { return filepath.Join(w.Path, "mnt") }

// NewWorkDir sweeps dead checks' directories from base (default
// os.TempDir()) and makes a new, locked one. It is made under a name
// Sweep does not look at and renamed once locked, so a concurrent Sweep
// never sees it unlocked.
func NewWorkDir(base string) (*WorkDir, error) {
	if base == "" {
		base = os.TempDir()
	}
	Sweep(base)
	tmp, err := os.MkdirTemp(base, ".new-"+workPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("verify-boot: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(tmp, "mnt"), 0o700)
	}
	dir := filepath.Join(base, workPrefix+strings.TrimPrefix(filepath.Base(tmp), ".new-"+workPrefix))
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("verify-boot: work directory: %w", err)
	}
	return &WorkDir{Path: dir, lock: f}, nil
}

// Close removes the directory (the caller has unmounted MountDir).
func (w *WorkDir) Close() error {
	err := os.RemoveAll(w.Path)
	w.lock.Close()
	return err
}

// Sweep removes the scratch directories under base that no running check
// holds: a stale mount on MountDir (its server was killed) is detached
// first (fusermount3 -uz when not root). It returns what it removed.
func Sweep(base string) []string {
	var removed []string
	// A check killed while making its directory leaves it unrenamed.
	half, _ := filepath.Glob(filepath.Join(base, ".new-"+workPrefix+"*"))
	for _, dir := range half {
		if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > time.Minute && os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(base, workPrefix+"*"))
	for _, dir := range dirs {
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			held := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
			f.Close()
			if held {
				continue
			}
		}
		killStrayQEMU(dir)
		// Not mounted: EINVAL; nothing there: ENOENT. Either way go on.
		mnt := filepath.Join(dir, "mnt")
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); errors.Is(err, syscall.EPERM) {
			exec.Command("fusermount3", "-uz", mnt).Run()
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// killStrayQEMU kills the QEMU of a dead check, should it have outlived
// its parent (QEMU runs with the parent-death signal, so it rarely can):
// the process named by its pidfile, when its command line still names dir.
func killStrayQEMU(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(cmdline), dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
