package rptreetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// HostileLinks are the symbolic links of HostileImage, by path below the
// filesystem's root, with their targets.
var HostileLinks = map[string]string{
	"abslink":      "/etc/shadow",          // absolute, to the host's secrets
	"escape":       "../../../etc/passwd",  // relative, climbing out
	"dotdot":       "bin/../../etc/passwd", // '..' after a name: cannot be checked
	"inside":       "bin/su",               // relative, inside
	"dirlink":      "bin",                  // relative, to a directory inside
	"absinside":    "/bin/su",              // absolute, inside the filesystem
	"etc/up":       "../bin/su",            // relative, climbing but inside
	"etc/abs-etc":  "/etc/hostname",        // absolute, inside etc
	"etc/abs-bin":  "/bin",                 // absolute, outside etc
	"bin/self-abs": "/bin/sgid",            // absolute, inside bin
}

// The owner of etc/plain in HostileImage when the test runs as root.
const HostileUID, HostileGID = 1234, 5678

// HostileImage builds a bare ext4 image (no partition table: its tree is
// disk-0/part-0) of what a careless or hostile guest may hold, and returns
// its path and the tree it was made from:
//
//	bin/su      -rwsr-xr-x  setuid (owner root when the test runs as root)
//	bin/sgid    -rwxr-sr-x  setgid
//	tmp/        drwxrwxrwt  sticky, world-writable
//	shared/     drwxrwsr-x  setgid directory
//	etc/hostname            a regular file
//	etc/plain               a regular file, owned by HostileUID:HostileGID when root
//	HostileLinks
func HostileImage(t testing.TB) (img, src string) {
	t.Helper()
	testenv.Commands(t, "mkfs.ext4")
	dir := t.TempDir()
	src = filepath.Join(dir, "tree")
	for _, d := range []string{"bin", "etc", "tmp", "shared"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		name string
		mode os.FileMode
		data string
	}{
		{"bin/su", 0o755 | os.ModeSetuid, "#!/bin/sh\necho root\n"},
		{"bin/sgid", 0o755 | os.ModeSetgid, "#!/bin/sh\necho group\n"},
		{"etc/hostname", 0o644, "guest\n"},
		{"etc/plain", 0o640, "plain\n"},
		{"tmp", 0o777 | os.ModeSticky | os.ModeDir, ""},
		{"shared", 0o775 | os.ModeSetgid | os.ModeDir, ""},
	}
	for _, f := range files {
		p := filepath.Join(src, f.name)
		if !f.mode.IsDir() {
			if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p, f.mode); err != nil { // os.Chmod keeps the special bits
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 { // an owner restore-file must restore
		if err := os.Chown(filepath.Join(src, "etc/plain"), HostileUID, HostileGID); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range HostileLinks {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	img = filepath.Join(dir, "hostile.img")
	if err := mkimage.Build(context.Background(), img, mkimage.Spec{Table: mkimage.None,
		Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 4 << 20, Dir: src}}}); err != nil {
		t.Fatalf("build image: %v", err)
	}
	return img, src
}
