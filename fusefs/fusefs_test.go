package fusefs_test

import (
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/rptree"
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

var gptImage, mbrImage image

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

// mount mounts the tree of the repository in dir on a fresh directory and
// unmounts it at cleanup.
func mount(t *testing.T, dir string, to rptree.Options, o fusefs.Options) (string, *fusefs.Server) {
	t.Helper()
	testenv.FUSE(t)
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	tree, err := rptree.New(r, to)
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := fusefs.Mount(context.Background(), tree, mp, o)
	if err != nil {
		tree.Close()
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			srv.UnmountLazy()
		}
		srv.Wait()
		tree.Close()
	})
	return mp, srv
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
