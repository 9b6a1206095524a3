package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// guestRepo is a repository (shared by the mount and restore-file tests)
// holding a GPT image with one ext4 partition as web01@guestTime, and the
// tree that partition was built from.
var guestRepo struct {
	once sync.Once
	dir  string
	src  string
	img  string
	err  error
}

const guestTime = "2026-11-22T01:30:00Z"

func guestRepoDir(t *testing.T) (repo, src string) {
	t.Helper()
	testenv.Commands(t, "sfdisk", "mkfs.ext4")
	guestRepo.once.Do(func() {
		// Under the binary's directory, which TestMain removes.
		work, err := os.MkdirTemp(filepath.Dir(ahvfsBin), "guest-*")
		if err != nil {
			guestRepo.err = err
			return
		}
		src := filepath.Join(work, "tree")
		if _, err := mkimage.Tree(context.Background(), src, 12<<20, mkimage.TreeOptions{Seed: 7, Symlinks: true}); err != nil {
			guestRepo.err = err
			return
		}
		// Odd owners and modes, so restoring them is checked.
		os.Lchown(filepath.Join(src, "empty-file"), 4321, 8765)
		os.Chmod(filepath.Join(src, "deep", "a"), 0o751)
		img := filepath.Join(work, "gpt.img")
		if err := mkimage.Build(context.Background(), img, mkimage.Spec{Table: mkimage.GPT,
			Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 24 << 20, Dir: src}}}); err != nil {
			guestRepo.err = err
			return
		}
		repo := filepath.Join(work, "repo")
		for _, args := range [][]string{
			{"init", "--repo", repo},
			{"import", "--repo", repo, "--vm", "web01", "--time", guestTime, img},
		} {
			if out, err := exec.Command(ahvfsBin, args...).CombinedOutput(); err != nil {
				guestRepo.err = fmt.Errorf("ahvfs %s: %v: %s", args[0], err, out)
				return
			}
		}
		guestRepo.dir, guestRepo.src, guestRepo.img = repo, src, img
	})
	if guestRepo.err != nil {
		t.Fatalf("build guest repository: %v", guestRepo.err)
	}
	return guestRepo.dir, guestRepo.src
}

// sameTree compares dst with src: types, modes, sizes, contents, link
// targets, mtimes, and owners when running as root.
func sameTree(t *testing.T, src, dst string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		want, _ := os.Lstat(p)
		got, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		n++
		if got.Mode() != want.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, got.Mode(), want.Mode())
		}
		if !got.ModTime().Equal(want.ModTime().Truncate(time.Second)) && !got.ModTime().Equal(want.ModTime()) && rel != "." && !want.IsDir() {
			t.Errorf("%s: mtime %v, want %v", rel, got.ModTime(), want.ModTime())
		}
		if os.Geteuid() == 0 {
			gs, ws := got.Sys().(*syscall.Stat_t), want.Sys().(*syscall.Stat_t)
			if gs.Uid != ws.Uid || gs.Gid != ws.Gid {
				t.Errorf("%s: owner %d:%d, want %d:%d", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
			}
		}
		switch {
		case want.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(q)
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
		case want.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(q)
			if string(a) != string(b) {
				t.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRestoreFile(t *testing.T) {
	repo, src := guestRepoDir(t)
	to := t.TempDir()
	entries, _ := os.ReadDir(src)
	first := "deep/a/b/c/d/e/f/g/leaf.txt"
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != "empty-file" {
			first = e.Name()
			break
		}
	}
	out := mustCLI(t, "restore-file", "--repo", repo, "--to", to, "web01@"+guestTime,
		"disk-0/part-1/deep", "disk-0/part-1/"+first, "disk-0/part-1/dangling-link", "/disk-0/part-1/empty-file/")
	if !strings.Contains(out, "restored disk-0/part-1/deep") || !strings.Contains(out, "restored disk-0/part-1/"+first) {
		t.Errorf("output:\n%s", out)
	}
	for _, name := range []string{"deep", first, "dangling-link", "empty-file"} {
		sameTree(t, filepath.Join(src, name), filepath.Join(to, filepath.Base(name)))
	}

	// Existing files are refused, then replaced with --overwrite.
	_, errs, code := runCLI(t, "", "restore-file", "--repo", repo, "--to", to, "web01@latest", "disk-0/part-1/"+first)
	if code == 0 || !strings.Contains(errs, "already exists") || !strings.Contains(errs, "--overwrite") {
		t.Errorf("second restore: exit %d: %s", code, errs)
	}
	os.WriteFile(filepath.Join(to, filepath.Base(first)), []byte("changed"), 0o644)
	mustCLI(t, "restore-file", "--repo", repo, "--to", to, "--overwrite", "web01@latest", "disk-0/part-1/"+first)
	sameTree(t, filepath.Join(src, first), filepath.Join(to, filepath.Base(first)))

	// The whole filesystem, as JSON.
	all := t.TempDir()
	out = mustCLI(t, "restore-file", "--repo", repo, "--to", all, "--json", "web01@latest", "disk-0/part-1")
	var res restoreFileResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Items) != 1 || res.RestorePoint != "web01@"+guestTime {
		t.Fatalf("json: %v\n%s", err, out)
	}
	n := sameTree(t, src, filepath.Join(all, "part-1"))
	if it := res.Items[0]; it.Files+it.Dirs+it.Symlinks < n || it.Bytes == 0 {
		t.Errorf("counts %+v for %d source entries", it, n)
	}

	// Bad arguments.
	for _, args := range [][]string{
		{"web01@latest", "etc/passwd"},
		{"web01@latest", "disk-0/part-1/no/such/file"},
		{"web01@2000-01-01T00:00:00Z", "disk-0/part-1"},
		{"web01@latest", "disk-3/part-1"},
	} {
		_, errs, code := runCLI(t, "", append([]string{"restore-file", "--repo", repo, "--to", t.TempDir()}, args...)...)
		if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}
