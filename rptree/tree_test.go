package rptree_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	if small.dir != "" {
		os.RemoveAll(small.dir)
	}
	os.Exit(code)
}

var t0 = rptreetest.T0

var small struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// smallImage is a bare 8 MiB ext4 without dangling links (fstest.TestFS
// opens every link), built once per test binary.
func smallImage(t *testing.T) string {
	t.Helper()
	testenv.Commands(t, "mkfs.ext4")
	small.once.Do(func() {
		if small.dir, small.err = os.MkdirTemp("", "rptree-test-*"); small.err != nil {
			return
		}
		src := filepath.Join(small.dir, "tree")
		if _, small.err = mkimage.Tree(context.Background(), src, 4<<20, mkimage.TreeOptions{Seed: 31, Symlinks: true}); small.err != nil {
			return
		}
		os.Remove(filepath.Join(src, "dangling-link"))
		small.path = filepath.Join(small.dir, "small.img")
		small.err = mkimage.Build(context.Background(), small.path, mkimage.Spec{Table: mkimage.None,
			Partitions: []mkimage.Partition{{FS: mkimage.Ext4, Size: 8 << 20, Dir: src}}})
	})
	if small.err != nil {
		t.Fatalf("build image: %v", small.err)
	}
	return small.path
}

// TestTreeFS checks the tree with testing/fstest, without FUSE: two VMs,
// three restore points, vm.json, disk-N.raw, latest and the guest files.
func TestTreeFS(t *testing.T) {
	img := smallImage(t)
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	ctx := context.Background()
	for i, vm := range []string{"web01", "db/01", "web01"} {
		if _, err := enginetest.ImportFiles(ctx, r, vm, t0.Add(time.Duration(i)*time.Hour), img); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := rptree.New(r, rptree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()

	t1 := engine.FormatTime(t0)
	t3 := engine.FormatTime(t0.Add(2 * time.Hour))
	leaf := "web01/" + t1 + "/disk-0/part-0/deep/a/b/c/d/e/f/g/leaf.txt"
	expect := []string{
		"web01/" + t1 + "/vm.json", "web01/" + t3 + "/disk-0.raw", "web01/latest",
		"db%2F01/" + engine.FormatTime(t0.Add(time.Hour)) + "/disk-0.raw", leaf,
	}
	if err := fstest.TestFS(tree, expect...); err != nil {
		t.Fatal(err)
	}

	// Contents and metadata.
	raw, err := fs.ReadFile(tree, "web01/latest/disk-0.raw")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(img); !bytes.Equal(raw, want) {
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
	info, err := tree.Lstat(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := info.Sys().(*guestfs.Stat); !ok || info.Mode().Perm() != 0o600 || st.Mtime.IsZero() {
		t.Errorf("leaf.txt: %v %#v", info.Mode(), info.Sys())
	}
	for _, c := range []struct {
		name string
		want error
	}{
		{"nosuch", fs.ErrNotExist},
		{"web01/2020-01-01T00:00:00Z", fs.ErrNotExist},
		{"web01/" + t1 + "/disk-7.raw", fs.ErrNotExist},
		{"web01/" + t1 + "/disk-0/part-9", fs.ErrNotExist},
		{"web01/" + t1 + "/disk-00.raw", fs.ErrNotExist},
		{"web01/../web01", fs.ErrInvalid},
		{"/web01", fs.ErrInvalid},
	} {
		if _, err := tree.Stat(c.name); !errors.Is(err, c.want) {
			t.Errorf("Stat(%s) = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := tree.ReadDir("web01/" + t1 + "/vm.json"); !errors.Is(err, rptree.ErrNotDir) {
		t.Errorf("ReadDir(vm.json) = %v, want ErrNotDir", err)
	}
	f, err := tree.OpenFile(ctx, "web01/"+t1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, rptree.ErrNotRegular) {
		t.Errorf("ReadAt of a directory = %v, want ErrNotRegular", err)
	}
	f.Close()
}

// TestFileServerAPI checks what a file server uses besides io/fs: the
// restore point of a file, span reads of a disk, SEEK_DATA/SEEK_HOLE, the
// block size, and that guest files offer no spans.
func TestFileServerAPI(t *testing.T) {
	img := smallImage(t)
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dir := rptreetest.RepoWithVMs(t, []string{"web01"}, img)
	tree, _ := rptreetest.OpenTree(t, dir, rptree.Options{})
	ctx := context.Background()
	ts := engine.FormatTime(t0)

	f, err := tree.OpenFile(ctx, "web01/latest/disk-0.raw")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if rp := f.RestorePoint(); rp == nil || rp.Name() != "web01@"+ts || f.Path() != "web01/latest/disk-0.raw" {
		t.Errorf("RestorePoint %v, Path %q", rp, f.Path())
	}
	info, _ := f.Stat()
	if rptree.BlockSize(info) != 1<<20 {
		t.Errorf("BlockSize(disk) = %d", rptree.BlockSize(info))
	}
	for _, c := range []struct{ off, n int64 }{{0, 1 << 20}, {12345, 300_000}, {int64(len(want)) - 100, 4096}, {int64(len(want)), 10}} {
		var s engine.Span
		ok, err := f.ReadSpan(ctx, &s, c.off, int(c.n))
		var got []byte
		for _, b := range s.Bytes() {
			got = append(got, b...)
		}
		s.Release()
		end := min(c.off+c.n, int64(len(want)))
		if !ok || err != nil || !bytes.Equal(got, want[c.off:end]) {
			t.Errorf("ReadSpan(%d, %d): ok %v, %v, %d bytes, want %d", c.off, c.n, ok, err, len(got), end-c.off)
		}
	}
	// Data and holes cover the disk, and holes read as zeros.
	var pos, holes int64
	for pos < int64(len(want)) {
		data, err := f.SeekData(ctx, pos)
		if err == io.EOF {
			data = int64(len(want))
		} else if err != nil {
			t.Fatalf("SeekData(%d): %v", pos, err)
		}
		if !bytes.Equal(want[pos:data], make([]byte, data-pos)) {
			t.Fatalf("hole [%d, %d) holds data", pos, data)
		}
		holes += data - pos
		if data == int64(len(want)) {
			break
		}
		if pos, err = f.SeekHole(ctx, data); err != nil || pos <= data {
			t.Fatalf("SeekHole(%d) = %d, %v", data, pos, err)
		}
	}
	if holes == 0 {
		t.Error("no holes in an ext4 image with free space")
	}
	if _, err := f.SeekData(ctx, int64(len(want))); err != io.EOF {
		t.Errorf("SeekData at the end: %v, want io.EOF", err)
	}

	g, err := tree.OpenFile(ctx, "web01/"+ts+"/disk-0/part-0/deep/a/b/c/d/e/f/g/leaf.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var s engine.Span
	if ok, _ := g.ReadSpan(ctx, &s, 0, 10); ok {
		t.Error("a guest file offered a span")
	}
	if d, err := g.SeekData(ctx, 2); d != 2 || err != nil {
		t.Errorf("SeekData in a guest file: %d %v", d, err)
	}
	if h, err := g.SeekHole(ctx, 0); h != 5 || err != nil {
		t.Errorf("SeekHole in a guest file: %d %v, want its size 5", h, err)
	}
	if b, err := io.ReadAll(g); err != nil || string(b) != "leaf\n" {
		t.Errorf("Read: %q %v", b, err)
	}
}

// TestTreeRefresh: a restore point committed by another process appears
// in a read-only tree without reopening it.
func TestTreeRefresh(t *testing.T) {
	img := smallImage(t)
	dir := rptreetest.RepoWithVMs(t, []string{"web01"}, img)
	tree, _ := rptreetest.OpenTree(t, dir, rptree.Options{RefreshInterval: time.Millisecond})
	if l, err := tree.ReadDir("web01"); err != nil || len(l) != 2 {
		t.Fatalf("ReadDir: %v %v", l, err)
	}
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(context.Background(), w, "web01", t0.Add(time.Hour), img); err != nil {
		t.Fatal(err)
	}
	if _, err := enginetest.ImportFiles(context.Background(), w, "app02", t0, img); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past RefreshInterval: the next listing refreshes
	l, err := tree.ReadDir(".")
	if err != nil || len(l) != 2 {
		t.Fatalf("root: %v %v", l, err)
	}
	t2 := engine.FormatTime(t0.Add(time.Hour))
	if target, err := tree.ReadLink("web01/latest"); err != nil || target != t2 {
		t.Errorf("latest -> %q %v, want %s", target, err, t2)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := rptree.Options{OpenDisks: -1, Guest: guestfs.Options{DirCacheSize: -1}}.Validate()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("OpenDisks")) || !bytes.Contains([]byte(err.Error()), []byte("DirCacheSize")) {
		t.Errorf("Validate: %v", err)
	}
}
