// Package reflink gives tests and benchmarks a directory where file clones are
// reflinks (FICLONE), for the Prism simulator's state: on a cluster, a
// snapshot, a volume group cloned from it and a VM disk made from a volume
// group disk are metadata operations, and changed regions come from that
// metadata. On ext4 the simulator has to copy and compare whole files
// instead, which measures the simulator rather than ahvfs.
package reflink

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir returns a directory under base where FICLONE works: base itself when
// its filesystem supports reflinks, else a sparse XFS image (reflink=1) of
// size bytes loop-mounted at base/xfs, which needs root and mkfs.xfs. The
// returned function unmounts it. ok is false when neither is possible; the
// caller then uses base and says so.
func Dir(base string, size int64) (dir string, cleanup func(), ok bool, err error) {
	if supported(base) {
		return base, func() {}, true, nil
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if os.Geteuid() != 0 || err != nil {
		return base, func() {}, false, nil
	}
	img, mnt := filepath.Join(base, "xfs.img"), filepath.Join(base, "xfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", nil, false, err
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return "", nil, false, err
	}
	if err := os.Truncate(img, size); err != nil {
		return "", nil, false, err
	}
	if out, err := exec.Command(mkfs, "-q", "-f", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		return "", nil, false, fmt.Errorf("mkfs.xfs: %v: %s", err, out)
	}
	// Direct I/O on the backing file: one page cache (the XFS's), not two.
	out, err := exec.Command("losetup", "--find", "--show", "--direct-io=on", img).CombinedOutput()
	if err != nil {
		return "", nil, false, fmt.Errorf("losetup %s: %v: %s", img, err, out)
	}
	dev := strings.TrimSpace(string(out))
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		exec.Command("losetup", "-d", dev).Run()
		return "", nil, false, fmt.Errorf("mount %s: %v: %s", dev, err, out)
	}
	return mnt, func() {
		exec.Command("umount", mnt).Run()
		exec.Command("losetup", "-d", dev).Run()
		os.Remove(img)
	}, true, nil
}

// supported reports whether FICLONE works in dir.
func supported(dir string) bool {
	a, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(a.Name())
	defer a.Close()
	if _, err := a.Write([]byte("probe")); err != nil {
		return false
	}
	b, err := os.CreateTemp(dir, ".reflink-probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(b.Name())
	defer b.Close()
	return unix.IoctlFileClone(int(b.Fd()), int(a.Fd())) == nil
}
