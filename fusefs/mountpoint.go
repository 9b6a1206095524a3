package fusefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrMountpoint is wrapped by the errors of Mount about an unusable
// mountpoint: missing, not a directory, not empty, or already a mountpoint.
var ErrMountpoint = errors.New("unusable mountpoint")

// checkMountpoint returns the absolute mountpoint, or an error that says
// what is wrong with it.
func checkMountpoint(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %v", dir, ErrMountpoint, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("mountpoint %s: %w: it does not exist (create an empty directory first)", abs, ErrMountpoint)
		}
		if errors.Is(err, syscall.ENOTCONN) {
			return "", fmt.Errorf("mountpoint %s: %w: a dead FUSE mount is still there (run 'umount -l %s' or 'fusermount -u %s')", abs, ErrMountpoint, abs, abs)
		}
		return "", fmt.Errorf("mountpoint %s: %w: %v", abs, ErrMountpoint, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("mountpoint %s: %w: not a directory", abs, ErrMountpoint)
	}
	if mounted, err := isMountpoint(abs, st); err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %v", abs, ErrMountpoint, err)
	} else if mounted {
		return "", fmt.Errorf("mountpoint %s: %w: something is already mounted there (unmount it first: umount %s)", abs, ErrMountpoint, abs)
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w: %v", abs, ErrMountpoint, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("mountpoint %s: %w: %v", abs, ErrMountpoint, err)
	}
	if len(names) > 0 {
		return "", fmt.Errorf("mountpoint %s: %w: the directory is not empty (it holds %q); mount on an empty directory", abs, ErrMountpoint, names[0])
	}
	return abs, nil
}

// isMountpoint reports whether dir is the root of a mounted filesystem:
// its device differs from its parent's, or it is its parent (/).
func isMountpoint(dir string, st os.FileInfo) (bool, error) {
	pst, err := os.Stat(filepath.Join(dir, ".."))
	if err != nil {
		return false, err
	}
	a, ok1 := st.Sys().(*syscall.Stat_t)
	b, ok2 := pst.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return false, nil
	}
	if a.Dev != b.Dev || a.Ino == b.Ino {
		return true, nil
	}
	// A bind mount of the same filesystem keeps the device: ask the kernel.
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, nil
	}
	for line := range strings.SplitSeq(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMountinfo(f[4]) == dir {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of
// /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
