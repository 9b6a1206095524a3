package guestfs_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// XFS: a tree written through the kernel, and v4/v5 variants.

// TestXFSAgainstKernel writes a tree through the kernel's XFS (real
// owners, nanosecond times, hard links, a 3000-extent sparse file whose
// map is a btree, a 3000-entry directory), then compares our reading of
// the image with a read-only mount.
func TestXFSAgainstKernel(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "mkfs.xfs", "mount", "umount", "cp")
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 320<<20)
	p, _ := testenv.LookPath("mkfs.xfs")
	if out, err := exec.Command(p, "-q", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v %s", err, out)
	}
	src := filepath.Join(dir, "src")
	if _, err := mkimage.Tree(context.Background(), src, 8<<20, mkimage.TreeOptions{Seed: 71, Symlinks: true}); err != nil {
		t.Fatal(err)
	}
	if err := ownerTweaks(src); err != nil {
		t.Fatal(err)
	}
	if err := manyFiles(src, 3000); err != nil {
		t.Fatal(err)
	}
	rw := loopMount(t, img, "rw")
	if out, err := exec.Command("cp", "-a", src+"/.", rw).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	writeFragmented(t, filepath.Join(rw, "frag.bin"))
	os.Link(filepath.Join(rw, "frag.bin"), filepath.Join(rw, "hardlink.bin"))
	os.Symlink(strings.Repeat("remote-symlink/", 100), filepath.Join(rw, "remote-link"))
	unmount(t, rw)
	mnt := loopMount(t, img, "ro")
	d := openImage(t, img, guestfs.Options{})
	compareWithKernel(t, d.FS(), "part-0", mnt)
}

// writeFragmented writes 3000 4 KiB pieces separated by holes.
func writeFragmented(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range 3000 {
		for j := range buf {
			buf[j] = byte(i + j)
		}
		if _, err := f.WriteAt(buf, int64(i)*12288); err != nil {
			t.Fatal(err)
		}
	}
}

// writeXFSProto writes an mkfs.xfs protofile for dir that, unlike
// mkimage's, keeps owners and setuid/setgid bits (times are always the
// time of mkfs).
func writeXFSProto(proto, dir string) error {
	var b strings.Builder
	b.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(d string, depth int) error
	walk = func(d string, depth int) error {
		entries, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		ind := strings.Repeat(" ", depth)
		for _, e := range entries {
			full := filepath.Join(d, e.Name())
			info, err := os.Lstat(full)
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			m := info.Mode()
			su, sg := "-", "-"
			if m&fs.ModeSetuid != 0 {
				su = "u"
			}
			if m&fs.ModeSetgid != 0 {
				sg = "g"
			}
			switch {
			case m.IsDir():
				fmt.Fprintf(&b, "%s%s d%s%s%03o %d %d\n", ind, e.Name(), su, sg, m.Perm(), st.Uid, st.Gid)
				if err := walk(full, depth+1); err != nil {
					return err
				}
				fmt.Fprintf(&b, "%s$\n", ind)
			case m&fs.ModeSymlink != 0:
				t, _ := os.Readlink(full)
				fmt.Fprintf(&b, "%s%s l%s%s%03o %d %d %s\n", ind, e.Name(), su, sg, m.Perm(), st.Uid, st.Gid, t)
			case m.IsRegular():
				fmt.Fprintf(&b, "%s%s -%s%s%03o %d %d %s\n", ind, e.Name(), su, sg, m.Perm(), st.Uid, st.Gid, full)
			}
		}
		return nil
	}
	if err := walk(dir, 1); err != nil {
		return err
	}
	b.WriteString("$\n")
	return os.WriteFile(proto, []byte(b.String()), 0o644)
}

// TestXFSVariants checks v4 (no CRC) and v5 filesystems, 1 KiB blocks,
// 8 KiB directory blocks, 512-byte inodes, owners and setuid bits, a
// 3000-entry directory and a long (remote) symlink.
func TestXFSVariants(t *testing.T) {
	testenv.Commands(t, "mkfs.xfs")
	src := filepath.Join(t.TempDir(), "src")
	if _, err := mkimage.Tree(context.Background(), src, 4<<20, mkimage.TreeOptions{Seed: 61, Symlinks: true, PortableNames: true}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "dangling-link"))
	if err := manyFiles(src, 3000); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a-long-symlink-target/", 60) + "end" // > 1 KiB: remote
	os.Symlink(long, filepath.Join(src, "long-link"))
	if err := writeBigFile(filepath.Join(src, "big.bin"), 24<<20); err != nil {
		t.Fatal(err)
	}
	// mkimage's own symlinks and files get odd owners, but not sticky bits
	// (protofiles cannot hold them).
	n := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != src {
			n++
			if n%5 == 1 {
				os.Lchown(p, 1000+n, 2000+n)
			}
			if n%11 == 3 && d.Type().IsRegular() {
				os.Chmod(p, 0o6755)
			}
		}
		return nil
	})
	for _, c := range []struct{ name, args string }{
		{"v5", ""},
		{"v4", "-m crc=0 -i size=256"},
		{"v5-1k-dir8k-inode512", "-b size=1024 -n size=8192 -i size=512"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			proto := filepath.Join(dir, "proto")
			if err := writeXFSProto(proto, src); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, 320<<20)
			p, _ := testenv.LookPath("mkfs.xfs")
			args := append([]string{"-q", "-f", "-p", proto}, strings.Fields(c.args)...)
			if out, err := exec.Command(p, append(args, img)...).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.xfs %v: %v: %s", args, err, out)
			}
			d := openImage(t, img, guestfs.Options{})
			k := kindXFS
			k.owners = true
			compareTree(t, d.FS(), "part-0", src, k)
		})
	}
}
