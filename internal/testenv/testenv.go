// Package testenv decides what a test does when the machine lacks a
// prerequisite (root, /dev/fuse, tgtd, qemu-img, ...): it skips, unless
// AHVFS_REQUIRE_ALL=1 is set (as CI does), in which case it fails. Tests
// must never skip a prerequisite by hand; they call these helpers.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/internal/reflink"
)

// RequireAll reports whether missing prerequisites must fail tests.
func RequireAll() bool { return os.Getenv("AHVFS_REQUIRE_ALL") == "1" }

// RequireOrSkip skips (or, under AHVFS_REQUIRE_ALL=1, fails) the test when ok
// is false, with why as the message.
func RequireOrSkip(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if RequireAll() {
		t.Fatalf("prerequisite missing (AHVFS_REQUIRE_ALL=1): %s", why)
	}
	t.Skipf("prerequisite missing: %s (run 'make deps' as root; AHVFS_REQUIRE_ALL=1 turns this into a failure)", why)
}

// Root requires the test to run as root.
func Root(t testing.TB) {
	t.Helper()
	RequireOrSkip(t, os.Geteuid() == 0, "needs root")
}

// Commands requires every named program on PATH (or in /usr/sbin, /sbin).
func Commands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		_, err := LookPath(n)
		RequireOrSkip(t, err == nil, "needs "+n+" on PATH")
	}
}

// LookPath finds a program on PATH or in the sbin directories, which are not
// always on a non-root PATH.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// FUSE requires root and an openable /dev/fuse.
func FUSE(t testing.TB) {
	t.Helper()
	Root(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	RequireOrSkip(t, err == nil, "needs /dev/fuse")
}

// Short skips a slow test under -short. It is not a prerequisite: CI runs
// without -short, so nothing is skipped there.
func Short(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test skipped under -short: " + why)
	}
}

// ReflinkDir returns a directory where FICLONE makes reflinks: the test's
// temporary directory when its filesystem has them, else a loop-mounted XFS
// image of size bytes (root, mkfs.xfs), unmounted when the test ends.
func ReflinkDir(t testing.TB, size int64) string {
	t.Helper()
	dir, cleanup, ok, err := reflink.Dir(t.TempDir(), size)
	if err != nil {
		RequireOrSkip(t, false, "a reflink (XFS) filesystem: "+err.Error())
	}
	RequireOrSkip(t, ok, "a reflink filesystem: needs root and mkfs.xfs (xfsprogs)")
	t.Cleanup(cleanup)
	return dir
}

// ToolsDir is where tools/install-deps.sh keeps what it builds or unpacks:
// $AHVFS_TOOLS_DIR, else ~/.cache/ahvfs-tools.
func ToolsDir() string {
	if d := os.Getenv("AHVFS_TOOLS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "ahvfs-tools")
}

// Promtool returns Prometheus's promtool: the one tools/install-deps.sh
// unpacked from Debian's prometheus package, else one on PATH.
func Promtool(t testing.TB) string {
	t.Helper()
	if p := filepath.Join(ToolsDir(), "prometheus", "usr", "bin", "promtool"); isExecutable(p) {
		return p
	}
	p, err := LookPath("promtool")
	RequireOrSkip(t, err == nil, "needs promtool (make deps unpacks Debian's prometheus package)")
	return p
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}
