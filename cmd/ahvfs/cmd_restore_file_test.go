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

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
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

// hostileRepo is a repository holding rptreetest.HostileImage as VM
// "hostile": a setuid file, a sticky directory, absolute and escaping
// symlinks.
func hostileRepo(t *testing.T) (repo, name string) {
	t.Helper()
	img, _ := rptreetest.HostileImage(t)
	return rptreetest.RepoWithVMs(t, []string{"hostile"}, img), "hostile@" + engine.FormatTime(rptreetest.T0)
}

// TestRestoreFileSafety runs restore-file on a hostile guest filesystem:
// special bits and escaping links are dropped or kept as the flags say,
// and every one is named on stderr.
func TestRestoreFileSafety(t *testing.T) {
	repo, rp := hostileRepo(t)
	const all = "disk-0/part-0/"
	for _, c := range []struct {
		name    string
		flags   []string
		links   map[string]string // below --to/part-0: target, or "" for absent
		modes   map[string]fs.FileMode
		stderr  []string // lines that must be there
		quietOn []string // names that must not be on stderr
	}{
		{
			name: "defaults",
			links: map[string]string{"abslink": "etc/shadow", "absinside": "bin/su", "inside": "bin/su",
				"escape": "", "dotdot": ""},
			modes: map[string]fs.FileMode{"bin/su": 0o755, "tmp": fs.ModeDir | 0o755},
			stderr: []string{
				all + "bin/su: mode 4755 restored as 0755: setuid, setgid and sticky bits dropped (--preserve-special keeps them)",
				all + "tmp: mode 1777 restored as 0755",
				"symlink " + all + "escape -> ../../../etc/passwd points outside --to; not restored (--symlinks keep writes it)",
				"symlink " + all + "dotdot -> bin/../../etc/passwd points outside --to; not restored",
				"5 absolute symlinks under ",
			},
			quietOn: []string{all + "abslink", all + "inside"},
		},
		{
			name:  "keep, preserve special",
			flags: []string{"--symlinks", "keep", "--preserve-special"},
			links: map[string]string{"abslink": "/etc/shadow", "escape": "../../../etc/passwd", "inside": "bin/su"},
			modes: map[string]fs.FileMode{"bin/su": 0o755 | fs.ModeSetuid, "tmp": fs.ModeDir | fs.ModeSticky | 0o777},
			stderr: []string{
				"symlink " + all + "abslink -> /etc/shadow points outside --to; written as it is (--symlinks keep)",
				"symlink " + all + "escape -> ../../../etc/passwd points outside --to; written as it is",
			},
			quietOn: []string{"bits dropped", all + "inside"},
		},
		{
			name:  "skip",
			flags: []string{"--symlinks", "skip"},
			links: map[string]string{"abslink": "", "absinside": "", "escape": "", "inside": "bin/su", "etc/up": "../bin/su"},
			stderr: []string{
				"symlink " + all + "abslink -> /etc/shadow points outside --to; not restored",
				"symlink " + all + "absinside -> /bin/su points outside --to; not restored",
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			to := t.TempDir()
			args := append([]string{"restore-file", "--repo", repo, "--to", to}, c.flags...)
			out, errs, code := runCLI(t, "", append(args, rp, all)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if !strings.Contains(out, "restored disk-0/part-0 → ") {
				t.Errorf("stdout: %s", out)
			}
			for p, want := range c.links {
				got, err := os.Readlink(filepath.Join(to, "part-0", p))
				if (want == "" && err == nil) || (want != "" && got != want) {
					t.Errorf("%s -> %q (%v), want %q", p, got, err, want)
				}
			}
			for p, want := range c.modes {
				if fi, err := os.Lstat(filepath.Join(to, "part-0", p)); err != nil || fi.Mode() != want {
					t.Errorf("%s: mode %v %v, want %v", p, fi.Mode(), err, want)
				}
			}
			for _, s := range c.stderr {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errs)
				}
			}
			for _, s := range c.quietOn {
				if strings.Contains(errs, s) {
					t.Errorf("stderr mentions %q:\n%s", s, errs)
				}
			}
		})
	}

	// The same as JSON: every report is in the document.
	out := mustCLI(t, "restore-file", "--repo", repo, "--to", t.TempDir(), "--json", rp, all)
	var res struct {
		Items []struct {
			LinksOutside       []struct{ Path, Target, Written string } `json:"links_outside"`
			LinksRewritten     []struct{ Path, Target, Written string } `json:"links_rewritten"`
			SpecialBitsDropped []struct{ Path, Mode, Restored string }  `json:"special_bits_dropped"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Items) != 1 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if it := res.Items[0]; len(it.LinksOutside) != 2 || len(it.LinksRewritten) != 5 || len(it.SpecialBitsDropped) != 4 {
		t.Errorf("json reports: %+v", it)
	}
}

// TestRestoreFileBadPaths: a path that climbs out of its guest filesystem
// with "..", an unknown --symlinks and a symlink planted in --to are
// refused with one clear line, and nothing is written through the link.
func TestRestoreFileBadPaths(t *testing.T) {
	repo, rp := hostileRepo(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{rp, "disk-0/part-0/../../etc"}, "climbs out of disk-N/part-M"},
		{[]string{rp, "disk-0/part-0/.."}, "climbs out of disk-N/part-M"},
		{[]string{rp, "../disk-0/part-0"}, "climbs out of disk-N/part-M"},
		{[]string{rp, "disk-0/part-0/bin/../../../x"}, "climbs out of disk-N/part-M"},
		{[]string{rp, "etc/passwd"}, "want disk-N/part-M/PATH"},
		{[]string{"--symlinks", "follow", rp, "disk-0/part-0"}, "want relative, skip or keep"},
	} {
		_, errs, code := runCLI(t, "", append([]string{"restore-file", "--repo", repo, "--to", t.TempDir()}, c.args...)...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want %q", c.args, code, errs, c.want)
		}
	}
	// ".." that stays inside is fine.
	to := t.TempDir()
	mustCLI(t, "restore-file", "--repo", repo, "--to", to, rp, "disk-0/part-0/etc/../bin/su")
	if b, err := os.ReadFile(filepath.Join(to, "su")); err != nil || !strings.Contains(string(b), "echo root") {
		t.Errorf("su: %q %v", b, err)
	}

	// A link planted where the restore writes.
	to = t.TempDir()
	victim := t.TempDir()
	if err := os.Symlink(victim, filepath.Join(to, "part-0")); err != nil {
		t.Fatal(err)
	}
	_, errs, code := runCLI(t, "", "restore-file", "--repo", repo, "--to", to, rp, "disk-0/part-0")
	if code == 0 || !strings.Contains(errs, "not a directory") || !strings.Contains(errs, "--overwrite") {
		t.Errorf("planted link: exit %d: %s", code, errs)
	}
	mustCLI(t, "restore-file", "--repo", repo, "--to", to, "--overwrite", rp, "disk-0/part-0")
	if fi, err := os.Lstat(filepath.Join(to, "part-0")); err != nil || !fi.IsDir() {
		t.Errorf("part-0 after --overwrite: %v %v", fi, err)
	}
	if l, _ := os.ReadDir(victim); len(l) != 0 {
		t.Errorf("written through the planted link: %d entries in its target", len(l))
	}
}

// TestRestoreFileVMNames: for VMs whose names need escaping in the tree,
// the NAME that "ahvfs list --json" prints resolves in restore-file.
func TestRestoreFileVMNames(t *testing.T) {
	repo := rptreetest.RepoWithVMs(t, rptreetest.VMNames, rptreetest.RawDisk(t))
	var list []struct {
		Name string `json:"name"`
		VM   string `json:"vm"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "list", "--repo", repo, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != len(rptreetest.VMNames) {
		t.Fatalf("list: %d restore points, want %d", len(list), len(rptreetest.VMNames))
	}
	for _, e := range list {
		to := t.TempDir()
		_, errs, code := runCLI(t, "", "restore-file", "--repo", repo, "--to", to, e.Name, "disk-0/part-0/README.txt")
		if code != 0 {
			t.Errorf("restore-file %q: exit %d: %s", e.Name, code, errs)
			continue
		}
		if _, err := os.Stat(filepath.Join(to, "README.txt")); err != nil {
			t.Errorf("restore-file %q: %v", e.Name, err)
		}
	}
}
