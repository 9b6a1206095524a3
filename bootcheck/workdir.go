package bootcheck

import (
	"errors"
	"fmt"
	"os"
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
// os.TempDir()) and makes a new, locked one.
func NewWorkDir(base string) (*WorkDir, error) {
	if base == "" {
		base = os.TempDir()
	}
	Sweep(base)
	dir, err := os.MkdirTemp(base, workPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("verify-boot: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, "mnt"), 0o700)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(dir)
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
// first. A directory without its lock yet is left alone for a minute (a
// check may be creating it). It returns what it removed.
func Sweep(base string) []string {
	dirs, _ := filepath.Glob(filepath.Join(base, workPrefix+"*"))
	var removed []string
	for _, dir := range dirs {
		f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		} else if err != nil {
			continue
		} else {
			held := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
			f.Close()
			if held {
				continue
			}
		}
		killStrayQEMU(dir)
		// Not mounted: EINVAL; nothing there: ENOENT. Either way go on.
		syscall.Unmount(filepath.Join(dir, "mnt"), syscall.MNT_DETACH)
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
