package guestfs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

var workDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "guestfs-test-*")
	if err != nil {
		panic(err)
	}
	workDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// image is a test image built once per test binary.
type image struct {
	once  sync.Once
	path  string
	trees map[string]string // part name → source tree
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

// ownerTweaks gives a few files odd owners and mode bits, so owners and
// setuid/sticky bits are really checked.
func ownerTweaks(dir string) error {
	n := 0
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		n++
		switch n % 7 {
		case 1:
			return os.Lchown(p, 1234, 5678)
		case 3:
			if !d.IsDir() {
				return os.Chmod(p, 0o4755)
			}
		case 5:
			if d.IsDir() {
				return os.Chmod(p, 0o1777)
			}
		}
		return nil
	})
}

// manyFiles adds a directory of n small files (large directories use
// ext4 htree and XFS leaf/node formats).
func manyFiles(dir string, n int) error {
	d := filepath.Join(dir, "many")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file-with-a-longer-name-%05d.txt", i)), []byte(strconv.Itoa(i)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeBigFile concatenates real files from /usr until n bytes.
func writeBigFile(path string, n int64) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	var written int64
	err = filepath.WalkDir("/usr/lib", func(p string, d fs.DirEntry, err error) error {
		if err != nil || written >= n || !d.Type().IsRegular() {
			if written >= n {
				return fs.SkipAll
			}
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer in.Close()
		k, _ := io.Copy(out, io.LimitReader(in, n-written))
		written += k
		return nil
	})
	return err
}

func openImage(t *testing.T, path string, opts guestfs.Options) *guestfs.Disk {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	d, err := guestfs.OpenDisk(context.Background(), f, st.Size(), opts)
	if err != nil {
		t.Fatalf("OpenDisk(%s): %v", path, err)
	}
	return d
}

// openInMemory opens a copy of the image held in memory: fstest.TestFS
// reads files a byte at a time, which would be one pread each.
func openInMemory(t *testing.T, path string) *guestfs.Disk {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := guestfs.OpenDisk(context.Background(), bytes.NewReader(raw), int64(len(raw)), guestfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func requireBuildTools(t *testing.T) {
	testenv.Commands(t, "sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mcopy")
}

// fsKind says how strictly a filesystem keeps metadata.
type fsKind struct {
	name      string
	owners    bool          // uid/gid kept
	perms     bool          // permission bits kept
	mtime     time.Duration // resolution; 0: not compared
	symlinks  bool
	skipNames []string // names the filesystem adds (lost+found)
}

var (
	kindExt = fsKind{name: "ext4", owners: true, perms: true, mtime: time.Second, // mkfs.ext4 -d stores whole seconds
		symlinks: true, skipNames: []string{"lost+found"}}
	kindXFS  = fsKind{name: "xfs", perms: true, symlinks: true} // mkfs.xfs -p sets owners 0:0 and the current time
	kindFAT  = fsKind{name: "fat", mtime: 2 * time.Second}
	kindNTFS = fsKind{name: "ntfs", mtime: 100 * time.Nanosecond}
)

// compareTree checks that the guest directory dir of fsys holds exactly
// the files of src, with their bytes and metadata.
func compareTree(t *testing.T, fsys *guestfs.FS, dir, src string, k fsKind) {
	t.Helper()
	seen := map[string]bool{}
	nfiles := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 && !k.symlinks {
			return nil
		}
		name := dir + "/" + filepath.ToSlash(rel)
		seen[name] = true
		want, err := os.Lstat(p)
		if err != nil {
			return err
		}
		got, err := fsys.Lstat(name)
		if err != nil {
			t.Errorf("%s: Lstat: %v", name, err)
			return nil
		}
		st, ok := got.Sys().(*guestfs.Stat)
		if !ok {
			t.Fatalf("%s: Sys() is %T", name, got.Sys())
		}
		if got.Mode().Type() != want.Mode().Type() {
			t.Errorf("%s: type %v, want %v", name, got.Mode().Type(), want.Mode().Type())
			return nil
		}
		if k.perms && got.Mode() != want.Mode() {
			t.Errorf("%s: mode %v, want %v", name, got.Mode(), want.Mode())
		}
		ws := want.Sys().(*syscall.Stat_t)
		if k.owners && (st.UID != ws.Uid || st.GID != ws.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.UID, st.GID, ws.Uid, ws.Gid)
		}
		if k.mtime > 0 && !want.IsDir() { // copying a tree touches directory times
			w := want.ModTime().Truncate(k.mtime)
			if k.mtime == 2*time.Second { // FAT rounds odd seconds: allow either way
				if d := got.ModTime().Sub(w); d < -2*time.Second || d > 2*time.Second {
					t.Errorf("%s: mtime %v, want %v", name, got.ModTime(), want.ModTime())
				}
			} else if !got.ModTime().Equal(w) {
				t.Errorf("%s: mtime %v, want %v", name, got.ModTime(), w)
			}
		}
		if st.Mtime != got.ModTime() {
			t.Errorf("%s: Stat.Mtime %v != ModTime %v", name, st.Mtime, got.ModTime())
		}
		switch {
		case want.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, err := fsys.ReadLink(name)
			if err != nil || gt != wt || st.LinkTarget != wt {
				t.Errorf("%s: link %q (%v), Stat.LinkTarget %q, want %q", name, gt, err, st.LinkTarget, wt)
			}
		case want.Mode().IsRegular():
			nfiles++
			if got.Size() != want.Size() {
				t.Errorf("%s: size %d, want %d", name, got.Size(), want.Size())
				return nil
			}
			wb, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			gb, err := fsys.ReadFile(name)
			if err != nil {
				t.Errorf("%s: ReadFile: %v", name, err)
			} else if sha256.Sum256(gb) != sha256.Sum256(wb) {
				t.Errorf("%s: content differs", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing extra in the guest.
	fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", p, err)
			return nil
		}
		if p == dir {
			return nil
		}
		for _, s := range k.skipNames {
			if d.Name() == s && filepath.Dir(p) == dir {
				return fs.SkipDir
			}
		}
		if !seen[p] {
			t.Errorf("%s: in the guest, not in the source", p)
		}
		return nil
	})
	if nfiles == 0 {
		t.Errorf("%s: no files compared", dir)
	}
	t.Logf("%s (%s): %d entries, %d files compared", dir, k.name, len(seen), nfiles)
}

// runTestFS runs fstest.TestFS on one partition, expecting a few files of
// its source tree.
func runTestFS(t *testing.T, d *guestfs.Disk, part, src string) {
	var expect []string
	filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() && len(expect) < 5 {
			rel, _ := filepath.Rel(src, p)
			expect = append(expect, filepath.ToSlash(rel))
		}
		return nil
	})
	sub, err := fs.Sub(d.FS(), part)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(sub, expect...); err != nil {
		t.Error(err)
	}
}

// walkAll visits everything and reads up to limit bytes of each file,
// tolerating errors on individual entries.
func walkAll(t testing.TB, fsys fs.FS, limit int) (entries int) {
	buf := make([]byte, 64<<10)
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		entries++
		if entries > 100000 {
			return fs.SkipAll
		}
		if d.Type().IsRegular() {
			f, err := fsys.Open(p)
			if err != nil {
				return nil
			}
			defer f.Close()
			io.CopyBuffer(io.Discard, io.LimitReader(f, int64(limit)), buf)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fs.ReadLink(fsys, p)
			fs.Stat(fsys, p)
		}
		return nil
	})
	return entries
}

func loopMount(t *testing.T, img, mode string) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop,"+mode, img, mnt).CombinedOutput(); err != nil {
		testenv.RequireOrSkip(t, false, fmt.Sprintf("loop mount: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

func unmount(t *testing.T, mnt string) {
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
}

// compareWithKernel walks the kernel's mount and checks every entry of
// the guest tree against it.
func compareWithKernel(t *testing.T, fsys *guestfs.FS, part, mnt string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(mnt, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		name := part
		if rel != "." {
			name += "/" + filepath.ToSlash(rel)
		}
		ki, err := os.Lstat(p)
		if err != nil {
			return err
		}
		ks := ki.Sys().(*syscall.Stat_t)
		gi, err := fsys.Lstat(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return nil
		}
		gs := gi.Sys().(*guestfs.Stat)
		n++
		ts := func(s syscall.Timespec) time.Time { return time.Unix(s.Sec, s.Nsec) }
		if gi.Mode() != ki.Mode() {
			t.Errorf("%s: mode %v, kernel %v", name, gi.Mode(), ki.Mode())
		}
		if gi.Size() != ki.Size() && !ki.IsDir() {
			t.Errorf("%s: size %d, kernel %d", name, gi.Size(), ki.Size())
		}
		if gs.UID != ks.Uid || gs.GID != ks.Gid || uint64(gs.Nlink) != uint64(ks.Nlink) || gs.Ino != ks.Ino {
			t.Errorf("%s: uid/gid/nlink/ino %d/%d/%d/%d, kernel %d/%d/%d/%d", name, gs.UID, gs.GID, gs.Nlink, gs.Ino, ks.Uid, ks.Gid, ks.Nlink, ks.Ino)
		}
		if !gs.Mtime.Equal(ts(ks.Mtim)) || !gs.Ctime.Equal(ts(ks.Ctim)) || !gs.Atime.Equal(ts(ks.Atim)) {
			t.Errorf("%s: times m=%v c=%v a=%v, kernel m=%v c=%v a=%v", name, gs.Mtime, gs.Ctime, gs.Atime, ts(ks.Mtim), ts(ks.Ctim), ts(ks.Atim))
		}
		switch {
		case ki.Mode()&fs.ModeSymlink != 0:
			want, _ := os.Readlink(p)
			if got, err := fsys.ReadLink(name); got != want || err != nil {
				t.Errorf("%s: link %q %v, kernel %q", name, got, err, want)
			}
		case ki.Mode().IsRegular():
			want, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got, err := fsys.ReadFile(name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: content differs from the kernel's (%v)", name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries match the kernel", n)
}

// runTool runs the program name (found on PATH or in sbin) with env added
// to the environment and stdin as input, and returns its output, trimmed.
// It fails the test, with stderr, when the program fails.
func runTool(t *testing.T, env []string, stdin, name string, args ...string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s%s", name, args, err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}
