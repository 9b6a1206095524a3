package extract_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/extract"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

// hostile opens a tree holding rptreetest.HostileImage as VM "hostile"
// and returns it, the restore point's directory and the source tree.
func hostile(t *testing.T) (*rptree.Tree, string, string) {
	t.Helper()
	img, src := rptreetest.HostileImage(t)
	dir := rptreetest.RepoWithVMs(t, []string{"hostile"}, img)
	tree, r := rptreetest.OpenTree(t, dir, rptree.Options{RefreshInterval: -1})
	rp, err := r.Resolve(context.Background(), "hostile@"+engine.FormatTime(rptreetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	return tree, rptree.RestorePointDir(rp), src
}

func paths(links []extract.Link) []string {
	var out []string
	for _, l := range links {
		out = append(out, l.Path)
	}
	slices.Sort(out)
	return out
}

func changed(mc []extract.ModeChange) []string {
	var out []string
	for _, m := range mc {
		out = append(out, m.Path)
	}
	slices.Sort(out)
	return out
}

const absent = "<absent>"

// TestCopySafety copies the hostile filesystem (and parts of it) with each
// symlink policy, with and without special bits, and checks every link,
// mode and report.
func TestCopySafety(t *testing.T) {
	tree, rpDir, src := hostile(t)
	all := "disk-0/part-0/"
	dropped := []string{all + "bin/sgid", all + "bin/su", all + "shared", all + "tmp"}
	for _, c := range []struct {
		name      string
		item      string
		o         extract.Options
		links     map[string]string // below the destination: target, or absent
		modes     map[string]fs.FileMode
		outside   []string
		rewritten []string
		dropped   []string
	}{
		{
			name: "relative", item: "disk-0/part-0", o: extract.Options{},
			links: map[string]string{
				"part-0/inside": "bin/su", "part-0/dirlink": "bin", "part-0/etc/up": "../bin/su",
				"part-0/absinside": "bin/su", "part-0/etc/abs-etc": "hostname", "part-0/etc/abs-bin": "../bin",
				"part-0/bin/self-abs": "sgid",
				// The guest's own /etc/shadow: inside the copied root filesystem.
				"part-0/abslink": "etc/shadow",
				"part-0/escape":  absent, "part-0/dotdot": absent,
			},
			modes: map[string]fs.FileMode{
				"part-0/bin/su": 0o755, "part-0/bin/sgid": 0o755, "part-0/tmp": fs.ModeDir | 0o755,
				"part-0/shared": fs.ModeDir | 0o775, "part-0/etc/plain": 0o640,
			},
			outside:   []string{all + "dotdot", all + "escape"},
			rewritten: []string{all + "absinside", all + "abslink", all + "bin/self-abs", all + "etc/abs-bin", all + "etc/abs-etc"},
			dropped:   dropped,
		},
		{
			name: "skip", item: "disk-0/part-0", o: extract.Options{Symlinks: extract.SymlinksSkip},
			links: map[string]string{
				"part-0/inside": "bin/su", "part-0/dirlink": "bin", "part-0/etc/up": "../bin/su",
				"part-0/absinside": absent, "part-0/etc/abs-etc": absent, "part-0/etc/abs-bin": absent,
				"part-0/bin/self-abs": absent, "part-0/abslink": absent, "part-0/escape": absent, "part-0/dotdot": absent,
			},
			modes:   map[string]fs.FileMode{"part-0/bin/su": 0o755},
			outside: []string{all + "absinside", all + "abslink", all + "bin/self-abs", all + "dotdot", all + "escape", all + "etc/abs-bin", all + "etc/abs-etc"},
			dropped: dropped,
		},
		{
			name: "keep, preserve special", item: "disk-0/part-0",
			o: extract.Options{Symlinks: extract.SymlinksKeep, PreserveSpecial: true, Owners: os.Geteuid() == 0},
			links: map[string]string{
				"part-0/abslink": "/etc/shadow", "part-0/escape": "../../../etc/passwd", "part-0/dotdot": "bin/../../etc/passwd",
				"part-0/absinside": "/bin/su", "part-0/inside": "bin/su",
			},
			modes: map[string]fs.FileMode{
				"part-0/bin/su": 0o755 | fs.ModeSetuid, "part-0/bin/sgid": 0o755 | fs.ModeSetgid,
				"part-0/tmp": fs.ModeDir | fs.ModeSticky | 0o777, "part-0/shared": fs.ModeDir | fs.ModeSetgid | 0o775,
			},
			outside: []string{all + "absinside", all + "abslink", all + "bin/self-abs", all + "dotdot", all + "escape", all + "etc/abs-bin", all + "etc/abs-etc"},
		},
		{
			name: "a subdirectory", item: "disk-0/part-0/etc", o: extract.Options{},
			links: map[string]string{"etc/up": "../bin/su", "etc/abs-etc": "hostname", "etc/abs-bin": absent},
			// etc/up leaves the copied tree but stays in the destination.
			outside:   []string{all + "etc/abs-bin"},
			rewritten: []string{all + "etc/abs-etc"},
		},
		{
			name: "one escaping link", item: "disk-0/part-0/escape", o: extract.Options{},
			links:   map[string]string{"escape": absent},
			outside: []string{all + "escape"},
		},
		{
			name: "one absolute link", item: "disk-0/part-0/abslink", o: extract.Options{},
			links:   map[string]string{"abslink": absent},
			outside: []string{all + "abslink"},
		},
		{
			name: "one escaping link, keep", item: "disk-0/part-0/escape", o: extract.Options{Symlinks: extract.SymlinksKeep},
			links:   map[string]string{"escape": "../../../etc/passwd"},
			outside: []string{all + "escape"},
		},
		{
			name: "a setuid file", item: "disk-0/part-0/bin/su", o: extract.Options{},
			modes:   map[string]fs.FileMode{"su": 0o755},
			dropped: []string{all + "bin/su"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			to := t.TempDir()
			res, err := extract.Copy(context.Background(), tree, rpDir, c.item, to, c.o)
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			for p, want := range c.links {
				got, err := os.Readlink(filepath.Join(to, p))
				if want == absent {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: written (-> %q, %v), want absent", p, got, err)
					}
				} else if err != nil || got != want {
					t.Errorf("%s -> %q (%v), want %q", p, got, err, want)
				}
			}
			for p, want := range c.modes {
				fi, err := os.Lstat(filepath.Join(to, p))
				if err != nil || fi.Mode() != want {
					t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
				}
			}
			if got := paths(res.LinksOutside); !slices.Equal(got, c.outside) {
				t.Errorf("links outside: %q, want %q", got, c.outside)
			}
			if got := paths(res.LinksRewritten); !slices.Equal(got, c.rewritten) {
				t.Errorf("links rewritten: %q, want %q", got, c.rewritten)
			}
			if got := changed(res.SpecialBitsDropped); !slices.Equal(got, c.dropped) {
				t.Errorf("special bits dropped: %q, want %q", got, c.dropped)
			}
			// Whatever was written resolves inside the destination, unless
			// it was kept on purpose (and reported).
			kept := map[string]bool{}
			for _, l := range res.LinksOutside {
				if l.Written != "" {
					kept[l.Path] = true
				}
			}
			filepath.WalkDir(to, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.Type()&fs.ModeSymlink == 0 {
					return err
				}
				rel, _ := filepath.Rel(filepath.Join(to, filepath.Base(c.item)), p)
				if kept[filepath.ToSlash(filepath.Join(c.item, rel))] {
					return nil
				}
				if real, err := filepath.EvalSymlinks(p); err == nil {
					if r, _ := filepath.Rel(to, real); r == ".." || filepath.IsAbs(r) || len(r) > 2 && r[:3] == "../" {
						t.Errorf("%s resolves to %s, outside the destination", p, real)
					}
				}
				return nil
			})
			if c.item == "disk-0/part-0" {
				b, err := os.ReadFile(filepath.Join(to, "part-0", "bin", "su"))
				if want, _ := os.ReadFile(filepath.Join(src, "bin", "su")); err != nil || string(b) != string(want) {
					t.Errorf("bin/su: %q %v", b, err)
				}
				fi, _ := os.Lstat(filepath.Join(to, "part-0", "etc", "plain"))
				st := fi.Sys().(*syscall.Stat_t)
				wantUID := uint32(os.Geteuid())
				if c.o.Owners {
					wantUID = rptreetest.HostileUID
				}
				if st.Uid != wantUID {
					t.Errorf("etc/plain: owner %d, want %d", st.Uid, wantUID)
				}
			}
		})
	}
}

// TestCopyNeverFollowsLinks: a symbolic link already in the destination,
// where the copy writes a directory or a file, is never written through:
// without Overwrite it is an error, with it the link itself is replaced,
// and the directory it points to stays untouched.
func TestCopyNeverFollowsLinks(t *testing.T) {
	tree, rpDir, _ := hostile(t)
	for _, c := range []struct {
		name      string
		plant     string // below the destination, a link to the victim
		victimDir bool   // the link points to a directory, else to a file
		overwrite bool
	}{
		{"the copied directory", "part-0", true, false},
		{"the copied directory, overwrite", "part-0", true, true},
		{"a subdirectory", "part-0/bin", true, false},
		{"a subdirectory, overwrite", "part-0/bin", true, true},
		{"a file", "part-0/etc/hostname", false, false},
		{"a file, overwrite", "part-0/etc/hostname", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			to := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			os.Mkdir(victim, 0o755)
			target := victim
			if !c.victimDir {
				target = filepath.Join(victim, "file")
				os.WriteFile(target, []byte("precious\n"), 0o644)
			}
			link := filepath.Join(to, filepath.FromSlash(c.plant))
			os.MkdirAll(filepath.Dir(link), 0o755)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			_, err := extract.Copy(context.Background(), tree, rpDir, "disk-0/part-0", to, extract.Options{Overwrite: c.overwrite})
			if c.overwrite {
				if err != nil {
					t.Fatalf("Copy: %v", err)
				}
				fi, err := os.Lstat(link)
				if err != nil || fi.Mode()&fs.ModeSymlink != 0 || fi.IsDir() != c.victimDir {
					t.Errorf("%s: %v %v, want the link replaced", c.plant, fi.Mode(), err)
				}
			} else if !errors.Is(err, extract.ErrExists) {
				t.Errorf("Copy = %v, want ErrExists", err)
			}
			entries, _ := os.ReadDir(victim)
			if c.victimDir && len(entries) != 0 {
				t.Errorf("written through the link: the victim holds %d entries", len(entries))
			}
			if b, _ := os.ReadFile(filepath.Join(victim, "file")); !c.victimDir && string(b) != "precious\n" {
				t.Errorf("written through the link: the victim holds %q", b)
			}
		})
	}
}

func TestParseSymlinkPolicy(t *testing.T) {
	for in, want := range map[string]extract.SymlinkPolicy{"": extract.SymlinksRelative, "relative": extract.SymlinksRelative,
		"skip": extract.SymlinksSkip, "keep": extract.SymlinksKeep} {
		if got, err := extract.ParseSymlinkPolicy(in); got != want || err != nil {
			t.Errorf("ParseSymlinkPolicy(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"follow", "Keep", "absolute"} {
		if _, err := extract.ParseSymlinkPolicy(bad); err == nil {
			t.Errorf("ParseSymlinkPolicy(%q) accepted", bad)
		}
	}
}
