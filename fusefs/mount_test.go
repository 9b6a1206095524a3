package fusefs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/rptree"
)

// TestMount checks a real mount: the layout, disk-N.raw byte for byte,
// every guest file of FAT32, ext4 and XFS partitions against its source
// tree, vm.json, and refusal of unusable mountpoints.
func TestMount(t *testing.T) {
	dir, im := gptRepo(t)
	mp, srv := mount(t, dir, rptree.Options{Guest: guestfs.Options{FATLocation: time.Local}}, fusefs.Options{})
	ts := engine.FormatTime(t0)
	rpDir := filepath.Join(mp, "web01", ts)

	names := func(p string) string {
		l, err := os.ReadDir(p)
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		var s []string
		for _, e := range l {
			s = append(s, e.Name())
		}
		return strings.Join(s, " ")
	}
	if got := names(mp); got != "web01" {
		t.Errorf("root: %q", got)
	}
	if got := names(filepath.Join(mp, "web01")); got != ts+" latest" {
		t.Errorf("web01: %q", got)
	}
	if got := names(rpDir); got != "disk-0 disk-0.raw vm.json" {
		t.Errorf("%s: %q", ts, got)
	}
	if got := names(filepath.Join(rpDir, "disk-0")); got != "part-1 part-2 part-3" {
		t.Errorf("disk-0: %q", got)
	}
	if target, err := os.Readlink(filepath.Join(mp, "web01", "latest")); err != nil || target != ts {
		t.Errorf("latest -> %q %v", target, err)
	}
	b, err := os.ReadFile(filepath.Join(mp, "web01", "latest", "vm.json"))
	if err != nil || !json.Valid(b) || !bytes.Contains(b, []byte(`"web01@`+ts+`"`)) {
		t.Errorf("vm.json: %v\n%s", err, b)
	}
	// Stable inode numbers.
	st1, _ := os.Stat(filepath.Join(rpDir, "disk-0.raw"))
	st2, _ := os.Stat(filepath.Join(mp, "web01", "latest", "disk-0.raw"))
	if st1.Sys().(*syscall.Stat_t).Ino == 0 {
		t.Error("inode 0")
	}
	if st1.Size() != st2.Size() {
		t.Error("sizes differ through latest")
	}
	// Writes are refused.
	if _, err := os.OpenFile(filepath.Join(rpDir, "disk-0.raw"), os.O_WRONLY, 0); err == nil {
		t.Error("opened disk-0.raw for writing")
	}
	if err := os.WriteFile(filepath.Join(rpDir, "new"), nil, 0o644); err == nil {
		t.Error("created a file")
	}

	t.Run("raw", func(t *testing.T) {
		raw := filepath.Join(rpDir, "disk-0.raw")
		if fileSHA(t, raw) != fileSHA(t, im.path) {
			t.Fatal("disk-0.raw differs from the image")
		}
		// Concurrent unaligned preads.
		want, _ := os.ReadFile(im.path)
		f, err := os.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 300_001)
				for i := range 40 {
					off := (int64(g)*7919 + int64(i)*1_000_003*13) % int64(len(want)-len(buf))
					if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
						t.Errorf("pread at %d: %v", off, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
	d := filepath.Join(rpDir, "disk-0")
	t.Run("fat32", func(t *testing.T) { compareMounted(t, filepath.Join(d, "part-1"), im.trees["part-1"], kindFAT) })
	t.Run("ext4", func(t *testing.T) { compareMounted(t, filepath.Join(d, "part-2"), im.trees["part-2"], kindExt) })
	t.Run("xfs", func(t *testing.T) { compareMounted(t, filepath.Join(d, "part-3"), im.trees["part-3"], kindXFS) })

	t.Run("mountpoint", func(t *testing.T) {
		nonEmpty := t.TempDir()
		os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)
		file := filepath.Join(nonEmpty, "x")
		for _, c := range []struct{ dir, want string }{
			{mp, "already mounted"},
			{nonEmpty, "not empty"},
			{file, "not a directory"},
			{filepath.Join(nonEmpty, "missing"), "does not exist"},
		} {
			srv, err := fusefs.Mount(context.Background(), srv.Tree(), c.dir, fusefs.Options{})
			if err == nil {
				srv.Unmount()
				t.Errorf("mounted on %s", c.dir)
				continue
			}
			if !errors.Is(err, fusefs.ErrMountpoint) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("mount on %s: %v, want %q", c.dir, err, c.want)
			}
		}
		empty := t.TempDir()
		if srv, err := fusefs.Mount(context.Background(), srv.Tree(), empty, fusefs.Options{AttrTimeout: -1, MaxBackground: -1}); err == nil {
			srv.Unmount()
			t.Error("mounted with negative options")
		} else if !strings.Contains(err.Error(), "AttrTimeout") || !strings.Contains(err.Error(), "MaxBackground") {
			t.Errorf("options: %v", err)
		}
	})
}

// TestMountNewRestorePoints: restore points committed while mounted appear
// without remounting, and the mount stays usable while a backup writes.
func TestMountNewRestorePoints(t *testing.T) {
	img := enginetest.Ext4Image(t, 8<<20, 31)
	dir := newRepo(t, engine.InitOptions{ChunkSize: 64 << 10}, "web01", img)
	mp, _ := mount(t, dir, rptree.Options{}, fusefs.Options{})
	if l, err := os.ReadDir(filepath.Join(mp, "web01")); err != nil || len(l) != 2 {
		t.Fatalf("web01: %v %v", l, err)
	}
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	t2 := t0.Add(24 * time.Hour)
	if _, err := enginetest.ImportFiles(context.Background(), w, "web01", t2, img); err != nil {
		t.Fatal(err)
	}
	// A path can be used directly, without listing first.
	deadline := time.Now().Add(time.Minute) // the mount answers within ~1s (entry timeout, refresh interval)
	p := filepath.Join(mp, "web01", engine.FormatTime(t2), "disk-0.raw")
	for {
		if _, err := os.Stat(p); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("new restore point did not appear: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fileSHA(t, p) != fileSHA(t, img) {
		t.Error("new disk-0.raw differs")
	}
	if target, _ := os.Readlink(filepath.Join(mp, "web01", "latest")); target != engine.FormatTime(t2) {
		t.Errorf("latest -> %q", target)
	}
}

// TestManyRestorePoints: mounting is lazy, and a VM with many restore
// points lists quickly.
func TestManyRestorePoints(t *testing.T) {
	img := enginetest.Ext4Image(t, 8<<20, 31)
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	const n = 300
	for i := range n {
		if _, err := enginetest.ImportFiles(context.Background(), w, "vm", t0.Add(time.Duration(i)*time.Minute), img); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	start := time.Now()
	mp, _ := mount(t, dir, rptree.Options{}, fusefs.Options{})
	t.Logf("mount: %v", time.Since(start))
	start = time.Now()
	l, err := os.ReadDir(filepath.Join(mp, "vm"))
	if err != nil || len(l) != n+1 {
		t.Fatalf("list: %d entries, %v", len(l), err)
	}
	t.Logf("list %d restore points: %v", n, time.Since(start))
	if _, err := os.Stat(filepath.Join(mp, "vm", l[n/2].Name(), "disk-0", "part-0", "deep")); err != nil {
		t.Error(err)
	}
}

// TestMountNTFS compares the files of an MBR image's NTFS and FAT16
// partitions through the mount.
func TestMountNTFS(t *testing.T) {
	requireBuildTools(t)
	testenv.Commands(t, "mkntfs", "ntfs-3g")
	testenv.FUSE(t)
	im := mbrImage.get(t, buildMBR)
	dir := newRepo(t, engine.InitOptions{}, "win01", im.path)
	mp, _ := mount(t, dir, rptree.Options{Guest: guestfs.Options{FATLocation: time.Local}}, fusefs.Options{})
	d := filepath.Join(mp, "win01", "latest", "disk-0")
	compareMounted(t, filepath.Join(d, "part-1"), im.trees["part-1"], kindNTFS)
	compareMounted(t, filepath.Join(d, "part-2"), im.trees["part-2"], kindFAT)
}

// TestFUSEDeviceNotInherited: programs started while the mount is served
// do not inherit /dev/fuse (a child holding it would keep a dead server's
// connection open, and hang on its own exit reading the mount).
func TestFUSEDeviceNotInherited(t *testing.T) {
	img := enginetest.Ext4Image(t, 8<<20, 31)
	dir := newRepo(t, engine.InitOptions{ChunkSize: 64 << 10}, "web01", img)
	mount(t, dir, rptree.Options{}, fusefs.Options{})
	out, err := exec.Command("sh", "-c", "ls -l /proc/$$/fd").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Fatalf("a child process inherited the FUSE device:\n%s", out)
	}
}

// TestMountOthersOnly mounts for other processes alone (no request from
// this one to its mount, not even go-fuse's poll): another program reads
// a disk byte-exact, and the read-ahead window is set on the connection
// found in /proc/self/mountinfo.
func TestMountOthersOnly(t *testing.T) {
	testenv.Root(t)
	img := enginetest.Ext4Image(t, 8<<20, 37)
	dir := newRepo(t, engine.InitOptions{ChunkSize: 64 << 10}, "web01", img)
	mp, _ := mount(t, dir, rptree.Options{}, fusefs.Options{OthersOnly: true, ReadAhead: 2 << 20})
	raw := filepath.Join(mp, "web01", engine.FormatTime(t0), "disk-0.raw")
	if out, err := exec.Command("cmp", img, raw).CombinedOutput(); err != nil {
		t.Fatalf("cmp %s %s: %v: %s", img, raw, err, out)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	dev := ""
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mp {
			dev = f[2]
		}
	}
	if dev == "" {
		t.Fatalf("%s is not mounted", mp)
	}
	ra, err := os.ReadFile("/sys/class/bdi/" + dev + "/read_ahead_kb")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(ra)); got != "2048" {
		t.Fatalf("read_ahead_kb of %s = %s, want 2048", dev, got)
	}
}
