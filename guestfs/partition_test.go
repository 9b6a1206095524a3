package guestfs_test

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// Partition tables (GPT, MBR, logical partitions), mixed filesystems on
// one disk, and damaged images.

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

// TestLogicalPartitions builds an MBR with an extended partition holding
// an ext4 and a FAT12 logical partition, and a swap primary.
func TestLogicalPartitions(t *testing.T) {
	testenv.Commands(t, "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mkswap")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	run := func(stdin string, name string, args ...string) {
		t.Helper()
		runTool(t, []string{"MTOOLS_SKIP_CHECK=1"}, stdin, name, args...)
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

func TestOptionsValidate(t *testing.T) {
	if err := (guestfs.Options{DirCacheSize: -1, MaxDirEntries: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "DirCacheSize") || !strings.Contains(err.Error(), "MaxDirEntries") {
		t.Errorf("Validate: %v", err)
	}
	if _, err := guestfs.OpenDisk(context.Background(), bytes.NewReader(nil), 0, guestfs.Options{}); err != nil {
		t.Errorf("empty disk: %v", err)
	}
}
