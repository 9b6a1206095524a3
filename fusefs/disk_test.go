package fusefs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/sparsefile"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/rptree"
)

// The served disk-N.raw under real readers: the kernel's loop mount,
// qemu-img, SEEK_DATA/SEEK_HOLE, and damaged chunks.

// TestMountKernelAndQemu: the kernel loop-mounts a partition of the served
// disk-N.raw (diff -r against its source tree), and qemu-img converts it
// to qcow2 and compares it with the source image.
func TestMountKernelAndQemu(t *testing.T) {
	testenv.Commands(t, "qemu-img", "mount", "umount", "diff")
	dir, im := gptRepo(t)
	mp, _ := mount(t, dir, rptree.Options{}, fusefs.Options{})
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
			data, err := sparsefile.Data(int(f.Fd()), pos)
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
			hole, err := sparsefile.Hole(int(f.Fd()), data)
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

	logs := &enginetest.LogBuffer{}
	mp, _ := mount(t, dir, rptree.Options{}, fusefs.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
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
