package guestfs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
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

var gptImage image

// buildGPT: FAT32 + ext4 + XFS.
func buildGPT(im *image) error {
	fat, err := makeTree("gpt-fat", 20<<20, mkimage.TreeOptions{Seed: 11, PortableNames: true})
	if err != nil {
		return err
	}
	ext, err := makeTree("gpt-ext", 24<<20, mkimage.TreeOptions{Seed: 12, Symlinks: true})
	if err != nil {
		return err
	}
	// fstest.TestFS opens every symlink, so the dangling one lives in the
	// bare image test instead.
	os.Remove(filepath.Join(ext, "dangling-link"))
	if err := ownerTweaks(ext); err != nil {
		return err
	}
	xfs, err := makeTree("gpt-xfs", 16<<20, mkimage.TreeOptions{Seed: 13, Symlinks: true, PortableNames: true})
	if err != nil {
		return err
	}
	os.Remove(filepath.Join(xfs, "dangling-link"))
	if err := manyFiles(xfs, 3000); err != nil { // a node-format directory
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

var mbrImage image

// buildMBR: NTFS + FAT16.
func buildMBR(im *image) error {
	ntfs, err := makeTree("mbr-ntfs", 20<<20, mkimage.TreeOptions{Seed: 21})
	if err != nil {
		return err
	}
	fat, err := makeTree("mbr-fat", 16<<20, mkimage.TreeOptions{Seed: 22, PortableNames: true})
	if err != nil {
		return err
	}
	im.path = filepath.Join(workDir, "mbr.img")
	im.trees["part-1"], im.trees["part-2"] = ntfs, fat
	return mkimage.Build(context.Background(), im.path, mkimage.Spec{Table: mkimage.MBR, Partitions: []mkimage.Partition{
		{FS: mkimage.NTFS, Size: 48 << 20, Dir: ntfs, Label: "Windows"},
		{FS: mkimage.FAT16, Size: 32 << 20, Dir: fat, Label: "DATA"},
	}})
}

var bareImage image

// buildBare: one bare ext4 with a large file and a dangling symlink.
func buildBare(im *image) error {
	dir, err := makeTree("bare-ext", 16<<20, mkimage.TreeOptions{Seed: 31, Symlinks: true})
	if err != nil {
		return err
	}
	if err := writeBigFile(filepath.Join(dir, "big.bin"), 40<<20); err != nil {
		return err
	}
	// A sparse file: data, a 8 MiB hole, data.
	f, err := os.Create(filepath.Join(dir, "sparse.bin"))
	if err != nil {
		return err
	}
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), 8<<20)
	f.Close()
	// 3000 pieces between holes: a deep extent tree (mkfs.ext4 -d keeps holes).
	f, err = os.Create(filepath.Join(dir, "frag.bin"))
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for i := range 3000 {
		for j := range buf {
			buf[j] = byte(i + j)
		}
		f.WriteAt(buf, int64(i)*12288)
	}
	f.Close()
	if err := ownerTweaks(dir); err != nil {
		return err
	}
	im.path = filepath.Join(workDir, "bare.img")
	im.trees["part-0"] = dir
	return mkimage.Build(context.Background(), im.path, mkimage.Spec{Table: mkimage.None,
		Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 96 << 20, Dir: dir}}})
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

func requireBuildTools(t *testing.T) {
	testenv.Commands(t, "sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mcopy")
}

func TestGPTImage(t *testing.T) {
	requireBuildTools(t)
	im := gptImage.get(t, buildGPT)
	d := openImage(t, im.path, guestfs.Options{FATLocation: time.Local})
	if d.Table() != guestfs.TableGPT {
		t.Fatalf("table %q", d.Table())
	}
	parts := d.Partitions()
	wantKinds := map[string]string{"part-1": guestfs.KindFAT, "part-2": guestfs.KindExt, "part-3": guestfs.KindXFS}
	if len(parts) != 3 {
		t.Fatalf("partitions: %+v", parts)
	}
	for _, p := range parts {
		if wantKinds[p.Name] != p.Kind || p.Start%(1<<20) != 0 || p.Type == "" || p.GUID == "" {
			t.Errorf("partition %+v", p)
		}
	}
	fsys := d.FS()
	compareTree(t, fsys, "part-1", im.trees["part-1"], kindFAT)
	compareTree(t, fsys, "part-2", im.trees["part-2"], kindExt)
	compareTree(t, fsys, "part-3", im.trees["part-3"], kindXFS)
	// Symlinks resolve inside their filesystem.
	if _, err := fsys.Stat("part-2/link-to-first"); err != nil {
		t.Errorf("follow link: %v", err)
	}
	if b, err := fsys.ReadFile("part-2/deep/a/b/c/d/e/f/g/leaf.txt"); err != nil || string(b) != "leaf\n" {
		t.Errorf("deep file: %q %v", b, err)
	}
	// FAT is case-insensitive.
	if _, err := fsys.Stat("part-1/DEEP"); err == nil {
		t.Log("case folding ok") // the FAT tree may not have "deep"; only no panic matters
	}
	memDisk := openInMemory(t, im.path)
	for _, p := range []string{"part-1", "part-2", "part-3"} {
		t.Run("TestFS/"+p, func(t *testing.T) { runTestFS(t, memDisk, p, im.trees[p]) })
	}
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

func TestMBRImage(t *testing.T) {
	requireBuildTools(t)
	testenv.Commands(t, "mkntfs", "ntfs-3g")
	testenv.FUSE(t)
	im := mbrImage.get(t, buildMBR)
	d := openImage(t, im.path, guestfs.Options{FATLocation: time.Local})
	if d.Table() != guestfs.TableMBR {
		t.Fatalf("table %q", d.Table())
	}
	parts := d.Partitions()
	if len(parts) != 2 || parts[0].Kind != guestfs.KindNTFS || parts[1].Kind != guestfs.KindFAT || parts[0].Type != "0x07" {
		t.Fatalf("partitions: %+v", parts)
	}
	compareTree(t, d.FS(), "part-1", im.trees["part-1"], kindNTFS)
	compareTree(t, d.FS(), "part-2", im.trees["part-2"], kindFAT)
	memDisk := openInMemory(t, im.path)
	for _, p := range []string{"part-1", "part-2"} {
		t.Run("TestFS/"+p, func(t *testing.T) { runTestFS(t, memDisk, p, im.trees[p]) })
	}
}

func TestBareExt4(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	im := bareImage.get(t, buildBare)
	d := openImage(t, im.path, guestfs.Options{})
	parts := d.Partitions()
	if d.Table() != guestfs.TableNone || len(parts) != 1 || parts[0].Name != "part-0" || parts[0].Kind != guestfs.KindExt {
		t.Fatalf("table %q partitions %+v", d.Table(), parts)
	}
	fsys := d.FS()
	compareTree(t, fsys, "part-0", im.trees["part-0"], kindExt)
	if tgt, err := fsys.ReadLink("part-0/dangling-link"); err != nil || tgt != "does/not/exist" {
		t.Errorf("dangling link: %q %v", tgt, err)
	}
	if _, err := fsys.Stat("part-0/dangling-link"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(dangling) = %v, want ErrNotExist", err)
	}
	// Concurrent ReadAt at random offsets of the big file.
	want, _ := os.ReadFile(filepath.Join(im.trees["part-0"], "big.bin"))
	f, err := fsys.OpenFile("part-0/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 1<<20)
			for range 50 {
				off := rng.Int64N(int64(len(want)))
				n := rng.IntN(len(buf)) + 1
				k, err := f.ReadAt(buf[:n], off)
				if err != nil && err != io.EOF {
					t.Errorf("ReadAt(%d, %d): %v", n, off, err)
					return
				}
				if !bytes.Equal(buf[:k], want[off:min(off+int64(n), int64(len(want)))]) {
					t.Errorf("ReadAt(%d, %d): wrong bytes", n, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Seek + Read.
	if _, err := f.Seek(-10, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(tail, want[len(want)-10:]) {
		t.Errorf("tail %q %v", tail, err)
	}
	st, _ := fsys.Stat("part-0/sparse.bin")
	if st.Size() != 8<<20+4 {
		t.Errorf("sparse size %d", st.Size())
	}
}

// TestExt4AgainstKernel compares owners, modes, times, link counts,
// inode numbers, contents and link targets with what the kernel shows for
// a read-only loop mount.
func TestExt4AgainstKernel(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "mkfs.ext4", "mount", "umount")
	im := bareImage.get(t, buildBare)
	mnt := loopMount(t, im.path, "ro")
	d := openImage(t, im.path, guestfs.Options{})
	compareWithKernel(t, d.FS(), "part-0", mnt)
}

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

// TestLogicalPartitions builds an MBR with an extended partition holding
// an ext4 and a FAT12 logical partition, and a swap primary.
func TestLogicalPartitions(t *testing.T) {
	testenv.Commands(t, "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mkswap")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	run := func(stdin string, name string, args ...string) {
		t.Helper()
		p, err := testenv.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(p, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 40<<20)
	run("label: dos\nstart=2048, size=4096, type=82\nstart=8192, size=61440, type=5\nstart=10240, size=16384, type=83\nstart=28672, size=8192, type=1\n", "sfdisk", "-q", "--no-reread", "--no-tell-kernel", img)
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "hello.txt"), []byte("hello logical\n"), 0o640)
	ext := filepath.Join(dir, "ext.img")
	os.WriteFile(ext, nil, 0o644)
	os.Truncate(ext, 8<<20)
	run("", "mkfs.ext4", "-q", "-F", "-d", src, ext)
	fat := filepath.Join(dir, "fat.img")
	os.WriteFile(fat, nil, 0o644)
	os.Truncate(fat, 4<<20)
	run("", "mkfs.vfat", "-F", "12", fat)
	run("", "mcopy", "-s", "-i", fat, filepath.Join(src, "sub"), "::/")
	swp := filepath.Join(dir, "swap.img")
	os.WriteFile(swp, nil, 0o644)
	os.Truncate(swp, 2<<20)
	run("", "mkswap", swp)
	place := func(file string, off int64) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.OpenFile(img, os.O_RDWR, 0)
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	place(swp, 2048*512)
	place(ext, 10240*512)
	place(fat, 28672*512)
	d := openImage(t, img, guestfs.Options{})
	var names []string
	for _, p := range d.Partitions() {
		names = append(names, p.Name+":"+p.Kind)
	}
	if got := strings.Join(names, " "); got != "part-1:swap part-5:ext part-6:fat" {
		t.Fatalf("partitions %s", got)
	}
	for _, p := range []string{"part-5/sub/hello.txt", "part-6/sub/hello.txt", "part-6/SUB/HELLO.TXT"} {
		if b, err := d.FS().ReadFile(p); err != nil || string(b) != "hello logical\n" {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if b, err := d.FS().ReadFile("part-1/README.txt"); err != nil || !strings.Contains(string(b), "swap") {
		t.Errorf("swap README: %q %v", b, err)
	}
	if err := fstest.TestFS(d.FS(), "part-5/sub/hello.txt", "part-1/README.txt"); err != nil {
		t.Error(err)
	}
}

// TestMalformed damages real images: every case must still list, with
// README.txt where a filesystem cannot be read.
func TestMalformed(t *testing.T) {
	requireBuildTools(t)
	gpt := gptImage.get(t, buildGPT)
	orig, err := os.ReadFile(gpt.path)
	if err != nil {
		t.Fatal(err)
	}
	ext4Start := int64(0)
	{
		d := openImage(t, gpt.path, guestfs.Options{})
		for _, p := range d.Partitions() {
			if p.Kind == guestfs.KindExt {
				ext4Start = p.Start
			}
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		readme string // a part whose README.txt must exist
	}{
		{"truncated-half", func(b []byte) []byte { return b[:len(b)/2] }, ""},
		{"truncated-64k", func(b []byte) []byte { return b[:64<<10] }, ""},
		{"garbage", func(b []byte) []byte {
			g := make([]byte, 4<<20)
			for i := range g {
				g[i] = byte(rng.Uint32())
			}
			return g
		}, "part-0"},
		{"ext4-superblock-zeroed", func(b []byte) []byte {
			clear(b[ext4Start+1024+40 : ext4Start+1024+120]) // keeps the magic, kills the geometry
			return b
		}, "part-2"},
		{"ext4-group-descriptors-garbage", func(b []byte) []byte {
			for i := ext4Start + 4096; i < ext4Start+8192; i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}, ""},
		{"gpt-entries-garbage", func(b []byte) []byte {
			for i := 1024; i < 1024+128*3; i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}, ""}, // the backup GPT takes over
		{"random-sectors", func(b []byte) []byte {
			for range 2000 {
				off := rng.Int64N(int64(len(b)-512)) &^ 511
				for i := off; i < off+512; i++ {
					b[i] = byte(rng.Uint32())
				}
			}
			return b
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(bytes.Clone(orig))
			d, err := guestfs.OpenDisk(context.Background(), bytes.NewReader(b), int64(len(b)), guestfs.Options{})
			if err != nil {
				t.Fatalf("OpenDisk: %v", err)
			}
			entries, err := fs.ReadDir(d.FS(), ".")
			if err != nil || len(entries) == 0 {
				t.Fatalf("root: %v %v", entries, err)
			}
			walkAll(t, d.FS(), 1<<20)
			if c.readme != "" {
				rd, err := d.FS().ReadFile(c.readme + "/README.txt")
				if err != nil {
					t.Fatalf("README: %v (partitions %+v)", err, d.Partitions())
				}
				t.Logf("%s/README.txt:\n%s", c.readme, rd)
			}
		})
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

func TestOptionsValidate(t *testing.T) {
	if err := (guestfs.Options{DirCacheSize: -1, MaxDirEntries: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "DirCacheSize") || !strings.Contains(err.Error(), "MaxDirEntries") {
		t.Errorf("Validate: %v", err)
	}
	if _, err := guestfs.OpenDisk(context.Background(), bytes.NewReader(nil), 0, guestfs.Options{}); err != nil {
		t.Errorf("empty disk: %v", err)
	}
}

// BenchmarkReadLargeFile streams a 40 MiB file from an in-memory image.
func BenchmarkReadLargeFile(b *testing.B) {
	testenv.Commands(b, "mkfs.ext4")
	bareImage.once.Do(func() {
		bareImage.trees = map[string]string{}
		bareImage.err = buildBare(&bareImage)
	})
	if bareImage.err != nil {
		b.Fatal(bareImage.err)
	}
	raw, err := os.ReadFile(bareImage.path)
	if err != nil {
		b.Fatal(err)
	}
	d, err := guestfs.OpenDisk(context.Background(), bytes.NewReader(raw), int64(len(raw)), guestfs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	f, err := d.FS().OpenFile("part-0/big.bin")
	if err != nil {
		b.Fatal(err)
	}
	st, _ := f.Stat()
	buf := make([]byte, 1<<20)
	b.SetBytes(st.Size())
	for b.Loop() {
		for off := int64(0); off < st.Size(); off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
}

// TestLVM puts an LVM volume group on a GPT partition, with an ext4
// logical volume made of two non-contiguous segments and a second, empty
// logical volume, and browses them. The kernel here has no device-mapper,
// so the volumes are created inactive and the ext4 image is written to
// the physical extents LVM itself reports (lvs --segments).
func TestLVM(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "losetup", "pvcreate", "vgcreate", "lvcreate", "lvextend", "lvs", "pvs", "mkfs.ext4", "sfdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "lvm.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 64<<20)
	run := func(stdin string, name string, args ...string) string {
		t.Helper()
		p, err := testenv.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(p, args...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1", "DM_DISABLE_UDEV=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v: %s%s", name, args, err, out, stderr.Bytes())
		}
		return strings.TrimSpace(string(out))
	}
	const partStart, partSectors = 1 << 20, 120832
	run("label: gpt\nstart=2048, size=120832, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n", "sfdisk", "-q", "--no-reread", "--no-tell-kernel", img)
	// A loop device over the partition's bytes (no udev here for loopNpM).
	pv := run("", "losetup", "--find", "--show", "--offset", strconv.Itoa(partStart), "--sizelimit", strconv.Itoa(partSectors*512), img)
	t.Cleanup(func() { exec.Command("losetup", "-d", pv).Run() })
	vg := fmt.Sprintf("gfstest%d", os.Getpid())
	t.Cleanup(func() { exec.Command("vgremove", "-f", vg).Run() })
	lvm := func(cmd string, args ...string) string {
		return run("", cmd, append([]string{"--config", "global { activation = 0 } activation { udev_sync = 0 udev_rules = 0 }"}, args...)...)
	}
	lvm("pvcreate", "-q", "-ff", "-y", pv)
	lvm("vgcreate", "-q", "-s", "1M", vg, pv)
	lvm("lvcreate", "-q", "-y", "-an", "-Zn", "-L", "12M", "-n", "root", vg)
	lvm("lvcreate", "-q", "-y", "-an", "-Zn", "-L", "4M", "-n", "small", vg)
	lvm("lvextend", "-q", "-L", "24M", vg+"/root") // a second segment after "small"
	peStart, err := strconv.ParseInt(lvm("pvs", "--noheadings", "--nosuffix", "--units", "b", "-o", "pe_start", pv), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if _, err := mkimage.Tree(context.Background(), src, 12<<20, mkimage.TreeOptions{Seed: 41, Symlinks: true}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "dangling-link"))
	ext := filepath.Join(dir, "root.img")
	os.WriteFile(ext, nil, 0o644)
	os.Truncate(ext, 24<<20)
	run("", "mkfs.ext4", "-q", "-F", "-d", src, ext)
	extBytes, _ := os.ReadFile(ext)
	out, _ := os.OpenFile(img, os.O_RDWR, 0)
	defer out.Close()
	segs := lvm("lvs", "--segments", "--noheadings", "--separator", ";", "-o", "seg_start_pe,seg_size_pe,seg_pe_ranges", vg+"/root")
	nseg := 0
	for _, line := range strings.Split(segs, "\n") {
		// "12;12;/dev/loop0:16-27": LV extent, count, PV extents
		f := strings.Split(strings.TrimSpace(line), ";")
		var le0, n, pe0, pe1 int64
		_, err1 := fmt.Sscanf(f[0]+" "+f[1], "%d %d", &le0, &n)
		_, err2 := fmt.Sscanf(f[2][strings.LastIndex(f[2], ":")+1:], "%d-%d", &pe0, &pe1)
		if err1 != nil || err2 != nil || pe1-pe0+1 != n {
			t.Fatalf("parse %q: %v %v", line, err1, err2)
		}
		le1 := le0 + n - 1
		const mb = 1 << 20
		if _, err := out.WriteAt(extBytes[le0*mb:(le1+1)*mb], partStart+peStart+pe0*mb); err != nil {
			t.Fatal(err)
		}
		nseg++
	}
	if nseg != 2 {
		t.Fatalf("want 2 segments, lvs says: %s", segs)
	}

	d := openImage(t, img, guestfs.Options{})
	var names []string
	for _, p := range d.Partitions() {
		names = append(names, p.Name+":"+p.Kind)
	}
	want := fmt.Sprintf("part-1:%s lv-%s-root:ext lv-%s-small:empty", guestfs.KindLVM, vg, vg)
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("partitions %s, want %s", got, want)
	}
	rd, err := d.FS().ReadFile("part-1/README.txt")
	if err != nil || !strings.Contains(string(rd), "lv-"+vg) {
		t.Errorf("PV README: %q %v", rd, err)
	}
	compareTree(t, d.FS(), "lv-"+vg+"-root", src, kindExt)
	memDisk := openInMemory(t, img)
	runTestFS(t, memDisk, "lv-"+vg+"-root", src)
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

// TestExtVariants checks the older and rarer on-disk forms: ext2/ext3
// indirect block maps (a 40 MiB file needs double indirect blocks at 1 KiB
// blocks), inline data, 1 KiB blocks, meta_bg, 128-byte inodes, a 3000
// entry htree directory and a slow (long) symlink.
func TestExtVariants(t *testing.T) {
	testenv.Commands(t, "mkfs.ext4")
	src := filepath.Join(t.TempDir(), "src")
	if _, err := mkimage.Tree(context.Background(), src, 4<<20, mkimage.TreeOptions{Seed: 51, Symlinks: true}); err != nil {
		t.Fatal(err)
	}
	if err := manyFiles(src, 3000); err != nil {
		t.Fatal(err)
	}
	if err := writeBigFile(filepath.Join(src, "big.bin"), 40<<20); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a-long-symlink-target/", 8) + "end"
	os.Symlink(long, filepath.Join(src, "long-link"))
	os.Remove(filepath.Join(src, "dangling-link"))
	if err := ownerTweaks(src); err != nil {
		t.Fatal(err)
	}
	// mke2fs -d with inline_data stores wrong sizes for some larger files
	// (debugfs agrees with us: e2fsprogs 1.47), so that variant gets a
	// tree of small files, which is what inline data is for.
	small := filepath.Join(t.TempDir(), "small")
	if err := manyFiles(small, 300); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(small, "tiny.txt"), []byte("tiny"), 0o600)
	// Past the 60 bytes of i_block: the rest is in the system.data xattr.
	os.WriteFile(filepath.Join(small, "inline-100.txt"), bytes.Repeat([]byte("0123456789"), 10), 0o644)
	os.WriteFile(filepath.Join(small, "inline-150.txt"), bytes.Repeat([]byte("abcdefghij"), 15), 0o644)
	os.WriteFile(filepath.Join(small, "empty"), nil, 0o644)
	os.Symlink(long, filepath.Join(small, "long-link"))
	os.Symlink("tiny.txt", filepath.Join(small, "short-link"))
	for _, c := range []struct{ name, args, src string }{
		{"ext2", "-t ext2", src},
		{"ext3-1k", "-t ext3 -b 1024", src},
		{"ext4-inline", "-O inline_data", small},
		{"ext4-metabg-128", "-O meta_bg,^resize_inode -I 128", src},
		{"ext4-1k", "-b 1024", src},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := c.src
			img := filepath.Join(t.TempDir(), "fs.img")
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, 96<<20)
			p, _ := testenv.LookPath("mkfs.ext4")
			args := append([]string{"-q", "-F"}, strings.Fields(c.args)...)
			args = append(args, "-d", src, img)
			if out, err := exec.Command(p, args...).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4 %v: %v: %s", args, err, out)
			}
			d := openImage(t, img, guestfs.Options{})
			k := kindExt
			if strings.Contains(c.args, "-I 128") {
				k.mtime = time.Second // no sub-second field in 128-byte inodes
			}
			compareTree(t, d.FS(), "part-0", src, k)
			want, _ := os.ReadDir(filepath.Join(src, "many"))
			entries, err := d.FS().ReadDir("part-0/many")
			if err != nil || len(entries) != len(want) {
				t.Errorf("many: %d entries, %v", len(entries), err)
			}
		})
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
