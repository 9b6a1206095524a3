package fusefs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

var workDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "fusefs-test-*")
	if err != nil {
		panic(err)
	}
	workDir = d
	code := m.Run()
	enginetest.Cleanup()
	os.RemoveAll(d)
	os.Exit(code)
}

var t0 = time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)

// image is a disk image built once per test binary, with the trees its
// partitions were filled from.
type image struct {
	once  sync.Once
	path  string
	trees map[string]string // part-M → source tree
	err   error
}

func (im *image) get(t *testing.T, build func(im *image) error) *image {
	t.Helper()
	im.once.Do(func() {
		im.trees = map[string]string{}
		im.err = build(im)
	})
	if im.err != nil {
		t.Fatalf("build image: %v", im.err)
	}
	return im
}

func makeTree(name string, size int64, o mkimage.TreeOptions) (string, error) {
	dir := filepath.Join(workDir, name)
	if _, err := mkimage.Tree(context.Background(), dir, size, o); err != nil {
		return "", err
	}
	return dir, nil
}

// chownSome gives every 5th file of dir an unusual owner.
func chownSome(dir string) error {
	n := 0
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if n++; n%5 == 0 {
			return os.Lchown(p, 1234, 5678)
		}
		return nil
	})
}

var gptImage, mbrImage, smallImage image

// buildGPT: FAT32 + ext4 + XFS, as a guest's EFI, root and data
// partitions.
func buildGPT(im *image) error {
	fat, err := makeTree("gpt-fat", 16<<20, mkimage.TreeOptions{Seed: 11, PortableNames: true})
	if err != nil {
		return err
	}
	ext, err := makeTree("gpt-ext", 24<<20, mkimage.TreeOptions{Seed: 12, Symlinks: true})
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := chownSome(ext); err != nil {
			return err
		}
	}
	xfs, err := makeTree("gpt-xfs", 24<<20, mkimage.TreeOptions{Seed: 13, Symlinks: true, PortableNames: true})
	if err != nil {
		return err
	}
	im.path = filepath.Join(workDir, "gpt.img")
	im.trees["part-1"], im.trees["part-2"], im.trees["part-3"] = fat, ext, xfs
	return mkimage.Build(context.Background(), im.path, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{
		{FS: mkimage.FAT32, Size: 40 << 20, Dir: fat, Label: "EFI"},
		{FS: mkimage.Ext4, Size: 40 << 20, Dir: ext, Label: "root"},
		{FS: mkimage.XFS, Size: 300 << 20, Dir: xfs, Label: "data"},
	}})
}

// buildMBR: NTFS + FAT16.
func buildMBR(im *image) error {
	ntfs, err := makeTree("mbr-ntfs", 16<<20, mkimage.TreeOptions{Seed: 21})
	if err != nil {
		return err
	}
	fat, err := makeTree("mbr-fat", 8<<20, mkimage.TreeOptions{Seed: 22, PortableNames: true})
	if err != nil {
		return err
	}
	im.path = filepath.Join(workDir, "mbr.img")
	im.trees["part-1"], im.trees["part-2"] = ntfs, fat
	return mkimage.Build(context.Background(), im.path, mkimage.Spec{Table: mkimage.MBR, Partitions: []mkimage.Partition{
		{FS: mkimage.NTFS, Size: 40 << 20, Dir: ntfs, Label: "Windows"},
		{FS: mkimage.FAT16, Size: 24 << 20, Dir: fat, Label: "DATA"},
	}})
}

// buildSmall: a bare 8 MiB ext4 without dangling links (fstest.TestFS
// opens every link).
func buildSmall(im *image) error {
	dir, err := makeTree("small-ext", 4<<20, mkimage.TreeOptions{Seed: 31, Symlinks: true})
	if err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, "dangling-link"))
	im.path = filepath.Join(workDir, "small.img")
	im.trees["part-0"] = dir
	return mkimage.Build(context.Background(), im.path, mkimage.Spec{Table: mkimage.None,
		Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 8 << 20, Dir: dir}}})
}

func requireBuildTools(t *testing.T) {
	t.Helper()
	testenv.Commands(t, "sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mcopy")
}

// newRepo makes a repository holding one restore point per image, all of
// VM vm at t0, t0+1h, ...
func newRepo(t *testing.T, o engine.InitOptions, vm string, images ...string) string {
	t.Helper()
	dir := enginetest.Init(t, o)
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	for i, img := range images {
		if _, err := enginetest.ImportFiles(context.Background(), r, vm, t0.Add(time.Duration(i)*time.Hour), img); err != nil {
			t.Fatalf("import %s: %v", img, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	gptRepoOnce sync.Once
	gptRepoDir  string
)

// gptRepo is a repository (shared, read-only) holding the GPT image as
// web01@t0 and kept for the whole test binary.
func gptRepo(t *testing.T) (string, *image) {
	t.Helper()
	requireBuildTools(t)
	im := gptImage.get(t, buildGPT)
	gptRepoOnce.Do(func() {
		dir := filepath.Join(workDir, "gpt-repo")
		if _, err := engine.Init(context.Background(), dir, engine.InitOptions{PackSize: 8 << 20}); err != nil {
			t.Fatal(err)
		}
		r, err := engine.Open(context.Background(), dir, engine.OpenOptions{Writable: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := enginetest.ImportFiles(context.Background(), r, "web01", t0, im.path); err != nil {
			t.Fatal(err)
		}
		gptRepoDir = dir
	})
	if gptRepoDir == "" {
		t.Fatal("GPT repository not built")
	}
	return gptRepoDir, im
}

// logBuffer collects log lines, safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mount mounts the repository in dir on a fresh directory and unmounts it
// at cleanup.
func mount(t *testing.T, dir string, o fusefs.Options) (string, *fusefs.Server, *engine.Repository) {
	t.Helper()
	testenv.FUSE(t)
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	mp := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := fusefs.Mount(context.Background(), r, mp, o)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			srv.UnmountLazy()
		}
		srv.Wait()
	})
	return mp, srv, r
}

func fileSHA(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// fsKind says which metadata a guest filesystem keeps.
type fsKind struct {
	name     string
	owners   bool
	perms    bool
	mtime    bool // whole seconds kept
	symlinks bool
	skip     []string // names the filesystem adds at its root
}

var (
	kindExt  = fsKind{name: "ext4", owners: true, perms: true, mtime: true, symlinks: true, skip: []string{"lost+found"}}
	kindXFS  = fsKind{name: "xfs", perms: true, symlinks: true}
	kindFAT  = fsKind{name: "fat"}
	kindNTFS = fsKind{name: "ntfs", mtime: true}
)

// compareMounted checks that directory dir (on the mount) holds exactly
// src's files: types, sizes, bytes, and the metadata k keeps.
func compareMounted(t *testing.T, dir, src string, k fsKind) {
	t.Helper()
	seen := map[string]bool{}
	files := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." || (d.Type()&fs.ModeSymlink != 0 && !k.symlinks) {
			return nil
		}
		seen[rel] = true
		got := filepath.Join(dir, rel)
		want, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(got)
		if err != nil {
			t.Errorf("%s: %v", got, err)
			return nil
		}
		if gi.Mode().Type() != want.Mode().Type() {
			t.Errorf("%s: type %v, want %v", got, gi.Mode().Type(), want.Mode().Type())
			return nil
		}
		if k.perms && gi.Mode() != want.Mode() {
			t.Errorf("%s: mode %v, want %v", got, gi.Mode(), want.Mode())
		}
		gs, ws := gi.Sys().(*syscall.Stat_t), want.Sys().(*syscall.Stat_t)
		if k.owners && (gs.Uid != ws.Uid || gs.Gid != ws.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", got, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		if k.mtime && want.Mode().IsRegular() && !gi.ModTime().Equal(want.ModTime().Truncate(time.Second)) &&
			!gi.ModTime().Equal(want.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", got, gi.ModTime(), want.ModTime())
		}
		switch {
		case want.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			if gt, err := os.Readlink(got); err != nil || gt != wt {
				t.Errorf("%s: link %q (%v), want %q", got, gt, err, wt)
			}
		case want.Mode().IsRegular():
			files++
			if gi.Size() != want.Size() {
				t.Errorf("%s: size %d, want %d", got, gi.Size(), want.Size())
			} else if fileSHA(t, got) != fileSHA(t, p) {
				t.Errorf("%s: content differs", got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", p, err)
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		for _, s := range k.skip {
			if rel == s {
				return fs.SkipDir
			}
		}
		if !seen[rel] {
			t.Errorf("%s: on the mount, not in the source", p)
		}
		return nil
	})
	if files == 0 {
		t.Errorf("%s: no files compared", dir)
	}
	t.Logf("%s (%s): %d entries, %d files compared", filepath.Base(dir), k.name, len(seen), files)
}

// TestTreeFS checks the tree with testing/fstest, without FUSE: two VMs,
// three restore points, vm.json, disk-N.raw, latest and the guest files.
func TestTreeFS(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	im := smallImage.get(t, buildSmall)
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	ctx := context.Background()
	for i, vm := range []string{"web01", "db/01", "web01"} {
		if _, err := enginetest.ImportFiles(ctx, r, vm, t0.Add(time.Duration(i)*time.Hour), im.path); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := fusefs.NewTree(r, fusefs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()

	t1 := engine.FormatTime(t0)
	t3 := engine.FormatTime(t0.Add(2 * time.Hour))
	expect := []string{
		"web01/" + t1 + "/vm.json", "web01/" + t3 + "/disk-0.raw", "web01/latest",
		"db%2F01/" + engine.FormatTime(t0.Add(time.Hour)) + "/disk-0.raw",
		"web01/" + t1 + "/disk-0/part-0/deep/a/b/c/d/e/f/g/leaf.txt",
	}
	if err := fstest.TestFS(tree, expect...); err != nil {
		t.Fatal(err)
	}

	// Contents and metadata.
	raw, err := fs.ReadFile(tree, "web01/latest/disk-0.raw")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(im.path); !bytes.Equal(raw, want) {
		t.Error("disk-0.raw differs from the image")
	}
	if target, err := tree.ReadLink("web01/latest"); err != nil || target != t3 {
		t.Errorf("latest -> %q, %v; want %q", target, err, t3)
	}
	var doc struct {
		RestorePoint string `json:"restore_point"`
		Disks        []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"disks"`
	}
	b, err := fs.ReadFile(tree, "web01/"+t1+"/vm.json")
	if err != nil || json.Unmarshal(b, &doc) != nil {
		t.Fatalf("vm.json: %v\n%s", err, b)
	}
	if doc.RestorePoint != "web01@"+t1 || len(doc.Disks) != 1 || doc.Disks[0].Name != "disk-0" || doc.Disks[0].Size != int64(len(raw)) {
		t.Errorf("vm.json: %+v", doc)
	}
	info, err := tree.Lstat("web01/" + t1 + "/disk-0/part-0/deep/a/b/c/d/e/f/g/leaf.txt")
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := info.Sys().(*guestfs.Stat); !ok || info.Mode().Perm() != 0o600 || st.Mtime.IsZero() {
		t.Errorf("leaf.txt: %v %#v", info.Mode(), info.Sys())
	}
	for _, bad := range []string{"nosuch", "web01/2020-01-01T00:00:00Z", "web01/" + t1 + "/disk-7.raw",
		"web01/" + t1 + "/disk-0/part-9", "web01/" + t1 + "/disk-00.raw"} {
		if _, err := tree.Stat(bad); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%s) = %v, want ErrNotExist", bad, err)
		}
	}
}

// TestTreeRefresh: a restore point committed by another process appears
// in a read-only tree without reopening it.
func TestTreeRefresh(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	im := smallImage.get(t, buildSmall)
	dir := newRepo(t, engine.InitOptions{ChunkSize: 64 << 10}, "web01", im.path)
	ro := enginetest.Open(t, dir, engine.OpenOptions{})
	tree, err := fusefs.NewTree(ro, fusefs.Options{RefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if l, err := tree.ReadDir("web01"); err != nil || len(l) != 2 {
		t.Fatalf("ReadDir: %v %v", l, err)
	}
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(context.Background(), w, "web01", t0.Add(time.Hour), im.path); err != nil {
		t.Fatal(err)
	}
	if _, err := enginetest.ImportFiles(context.Background(), w, "app02", t0, im.path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	l, err := tree.ReadDir(".")
	if err != nil || len(l) != 2 {
		t.Fatalf("root: %v %v", l, err)
	}
	t2 := engine.FormatTime(t0.Add(time.Hour))
	if target, err := tree.ReadLink("web01/latest"); err != nil || target != t2 {
		t.Errorf("latest -> %q %v, want %s", target, err, t2)
	}
}

// TestMount checks a real mount: the layout, disk-N.raw byte for byte,
// every guest file of FAT32, ext4 and XFS partitions against its source
// tree, vm.json, and refusal of unusable mountpoints.
func TestMount(t *testing.T) {
	dir, im := gptRepo(t)
	mp, _, _ := mount(t, dir, fusefs.Options{Guest: guestfs.Options{FATLocation: time.Local}})
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
		r := enginetest.Open(t, dir, engine.OpenOptions{})
		nonEmpty := t.TempDir()
		os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)
		file := filepath.Join(nonEmpty, "x")
		for _, c := range []struct{ dir, want string }{
			{mp, "already mounted"},
			{nonEmpty, "not empty"},
			{file, "not a directory"},
			{filepath.Join(nonEmpty, "missing"), "does not exist"},
		} {
			srv, err := fusefs.Mount(context.Background(), r, c.dir, fusefs.Options{})
			if err == nil {
				srv.Unmount()
				t.Errorf("mounted on %s", c.dir)
				continue
			}
			if !errors.Is(err, fusefs.ErrMountpoint) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("mount on %s: %v, want %q", c.dir, err, c.want)
			}
		}
	})
}

// TestMountNewRestorePoints: restore points committed while mounted appear
// without remounting, and the mount stays usable while a backup writes.
func TestMountNewRestorePoints(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	im := smallImage.get(t, buildSmall)
	dir := newRepo(t, engine.InitOptions{ChunkSize: 64 << 10}, "web01", im.path)
	mp, _, _ := mount(t, dir, fusefs.Options{})
	if l, err := os.ReadDir(filepath.Join(mp, "web01")); err != nil || len(l) != 2 {
		t.Fatalf("web01: %v %v", l, err)
	}
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	t2 := t0.Add(24 * time.Hour)
	if _, err := enginetest.ImportFiles(context.Background(), w, "web01", t2, im.path); err != nil {
		t.Fatal(err)
	}
	// A path can be used directly, without listing first.
	deadline := time.Now().Add(5 * time.Second)
	p := filepath.Join(mp, "web01", engine.FormatTime(t2), "disk-0.raw")
	for {
		if _, err := os.Stat(p); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("new restore point did not appear: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fileSHA(t, p) != fileSHA(t, im.path) {
		t.Error("new disk-0.raw differs")
	}
	if target, _ := os.Readlink(filepath.Join(mp, "web01", "latest")); target != engine.FormatTime(t2) {
		t.Errorf("latest -> %q", target)
	}
}

// TestMountKernelAndQemu: the kernel loop-mounts a partition of the served
// disk-N.raw (diff -r against its source tree), and qemu-img converts it
// to qcow2 and compares it with the source image.
func TestMountKernelAndQemu(t *testing.T) {
	testenv.Commands(t, "qemu-img", "mount", "umount", "diff")
	dir, im := gptRepo(t)
	mp, _, _ := mount(t, dir, fusefs.Options{})
	raw := filepath.Join(mp, "web01", engine.FormatTime(t0), "disk-0.raw")

	t.Run("qemu-img", func(t *testing.T) {
		q := filepath.Join(t.TempDir(), "disk.qcow2")
		if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, q).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "raw", q, im.path).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img compare: %v\n%s", err, out)
		}
		if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", raw, im.path).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img compare (mounted raw): %v\n%s", err, out)
		}
	})
	t.Run("seek-data-hole", func(t *testing.T) {
		// The mount answers SEEK_DATA/SEEK_HOLE from the manifest: every
		// data region it reports holds the image's bytes, every hole is
		// zero in the image, and together they cover the disk.
		f, err := os.Open(raw)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		want, _ := os.ReadFile(im.path)
		size := int64(len(want))
		var pos, holes int64
		for pos < size {
			data, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
			if err == unix.ENXIO {
				data = size
			} else if err != nil {
				t.Fatalf("SEEK_DATA at %d: %v", pos, err)
			}
			if data > pos {
				holes += data - pos
				if !bytes.Equal(want[pos:data], make([]byte, data-pos)) {
					t.Fatalf("hole [%d, %d) holds data in the image", pos, data)
				}
			}
			if data >= size {
				break
			}
			hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
			if err != nil || hole <= data {
				t.Fatalf("SEEK_HOLE at %d: %d, %v", data, hole, err)
			}
			pos = hole
		}
		if holes == 0 {
			t.Fatal("no holes reported for an image with free space")
		}
	})
	t.Run("loop", func(t *testing.T) {
		f, err := os.Open(im.path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		d, err := guestfs.OpenDisk(context.Background(), f, st.Size(), guestfs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Partitions() {
			if p.Name != "part-2" && p.Name != "part-3" { // ext4, XFS
				continue
			}
			lm := filepath.Join(t.TempDir(), "loop")
			os.Mkdir(lm, 0o755)
			opts := fmt.Sprintf("loop,ro,offset=%d,sizelimit=%d", p.Start, p.Size)
			if p.Kind == guestfs.KindXFS {
				opts += ",norecovery"
			}
			if out, err := exec.Command("mount", "-o", opts, raw, lm).CombinedOutput(); err != nil {
				t.Fatalf("mount -o %s: %v\n%s", opts, err, out)
			}
			out, err := exec.Command("diff", "-r", "--no-dereference", "-x", "lost+found", im.trees[p.Name], lm).CombinedOutput()
			if uerr := exec.Command("umount", lm).Run(); uerr != nil {
				t.Errorf("umount %s: %v", lm, uerr)
			}
			if err != nil {
				t.Errorf("%s: diff -r: %v\n%s", p.Name, err, out)
			}
		}
	})
}

// TestMountNTFS compares the files of an MBR image's NTFS and FAT16
// partitions through the mount.
func TestMountNTFS(t *testing.T) {
	requireBuildTools(t)
	testenv.Commands(t, "mkntfs", "ntfs-3g")
	testenv.FUSE(t)
	im := mbrImage.get(t, buildMBR)
	dir := newRepo(t, engine.InitOptions{}, "win01", im.path)
	mp, _, _ := mount(t, dir, fusefs.Options{Guest: guestfs.Options{FATLocation: time.Local}})
	d := filepath.Join(mp, "win01", "latest", "disk-0")
	compareMounted(t, filepath.Join(d, "part-1"), im.trees["part-1"], kindNTFS)
	compareMounted(t, filepath.Join(d, "part-2"), im.trees["part-2"], kindFAT)
}

// TestMountCorrupt flips bytes in a pack of a repository without parity:
// reading the damaged range fails with EIO and a log line naming the
// restore point, the other ranges read fine, and the mount stays up.
func TestMountCorrupt(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	img := enginetest.Ext4Image(t, 48<<20, 3)
	dir := newRepo(t, engine.InitOptions{ParityData: 1, ParityShards: 0, Compression: "none"}, "web01", img)
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*"))
	if len(packs) == 0 {
		packs, _ = filepath.Glob(filepath.Join(dir, "packs", "*"))
	}
	var pack string
	var size int64
	for _, p := range packs {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Size() > size {
			pack, size = p, st.Size()
		}
	}
	if pack == "" {
		t.Fatalf("no pack in %s", dir)
	}
	f, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xA5}, 4096)
	if _, err := f.WriteAt(junk, size/2); err != nil {
		t.Fatal(err)
	}
	f.Close()

	logs := &logBuffer{}
	mp, _, _ := mount(t, dir, fusefs.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ts := engine.FormatTime(t0)
	raw := filepath.Join(mp, "web01", ts, "disk-0.raw")
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	buf := make([]byte, 1<<20)
	bad, good := 0, 0
	for off := int64(0); off < int64(len(want)); off += int64(len(buf)) {
		n, err := rf.ReadAt(buf, off)
		switch {
		case errors.Is(err, syscall.EIO):
			bad++
		case err != nil && err != io.EOF:
			t.Errorf("read at %d: %v, want EIO or success", off, err)
		case !bytes.Equal(buf[:n], want[off:off+int64(n)]):
			t.Errorf("read at %d: wrong data without an error", off)
		default:
			good++
		}
	}
	if bad == 0 || good == 0 {
		t.Fatalf("%d ranges failed, %d read fine; want some of each", bad, good)
	}
	if !strings.Contains(logs.String(), "web01@"+ts) {
		t.Errorf("no log line naming the restore point:\n%s", logs)
	}
	// The mount survives.
	if l, err := os.ReadDir(filepath.Join(mp, "web01", ts)); err != nil || len(l) != 3 {
		t.Errorf("ls after EIO: %v %v", l, err)
	}
	if _, err := os.ReadFile(filepath.Join(mp, "web01", ts, "vm.json")); err != nil {
		t.Errorf("vm.json after EIO: %v", err)
	}
	t.Logf("%d MiB ranges failed with EIO, %d read fine", bad, good)
}

// TestManyRestorePoints: mounting is lazy, and a VM with many restore
// points lists quickly.
func TestManyRestorePoints(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	im := smallImage.get(t, buildSmall)
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	const n = 300
	for i := range n {
		if _, err := enginetest.ImportFiles(context.Background(), w, "vm", t0.Add(time.Duration(i)*time.Minute), im.path); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	start := time.Now()
	mp, _, _ := mount(t, dir, fusefs.Options{})
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
