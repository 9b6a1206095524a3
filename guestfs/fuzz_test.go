package guestfs_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/mkimage"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// Fuzz inputs are either a raw disk (the bytes themselves) or, to keep
// real filesystem images small enough to check in, a sparse disk:
//
//	"GFS1" | u32 disk size | { u32 offset | u16 length | bytes }...
//
// Unlisted bytes read as zeros. The seeds in testdata/fuzz/FuzzOpenDisk
// are real images (ext4, ext3, FAT12/16/32, XFS, NTFS, GPT, MBR with
// logical partitions) in this form, made by -update-fuzz-seeds.
var updateSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite testdata/fuzz/FuzzOpenDisk seeds from freshly built images")

type sparseSeg struct {
	off  int64
	data []byte
}

type sparseDisk struct {
	size int64
	segs []sparseSeg // sorted by off
}

func decodeDisk(b []byte) io.ReaderAt {
	if len(b) < 8 || string(b[:4]) != "GFS1" {
		return bytes.NewReader(b)
	}
	d := &sparseDisk{size: int64(binary.LittleEndian.Uint32(b[4:]))}
	for p := 8; p+6 <= len(b); {
		off := int64(binary.LittleEndian.Uint32(b[p:]))
		n := int(binary.LittleEndian.Uint16(b[p+4:]))
		p += 6
		n = min(n, len(b)-p)
		d.segs = append(d.segs, sparseSeg{off, b[p : p+n]})
		p += n
	}
	sort.SliceStable(d.segs, func(i, j int) bool { return d.segs[i].off < d.segs[j].off })
	return d
}

func (d *sparseDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= d.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > d.size-off {
		n = int(d.size - off)
	}
	clear(p[:n])
	i := sort.Search(len(d.segs), func(i int) bool { return d.segs[i].off+int64(len(d.segs[i].data)) > off })
	for ; i < len(d.segs) && d.segs[i].off < off+int64(n); i++ {
		s := d.segs[i]
		lo := max(s.off, off)
		hi := min(s.off+int64(len(s.data)), off+int64(n))
		if hi <= lo {
			continue // segments may overlap, so ends are not sorted
		}
		copy(p[lo-off:hi-off], s.data[lo-s.off:hi-s.off])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func diskSize(r io.ReaderAt, raw []byte) int64 {
	if d, ok := r.(*sparseDisk); ok {
		return d.size
	}
	return int64(len(raw))
}

func FuzzOpenDisk(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 4096))
	debug.SetTraceback("all")
	f.Fuzz(func(t *testing.T, raw []byte) {
		// A hang is a bug: crash with every goroutine's stack so the
		// fuzzer keeps the input.
		watchdog := time.AfterFunc(10*time.Second, func() { panic("FuzzOpenDisk: input took more than 10s") })
		defer watchdog.Stop()
		r := decodeDisk(raw)
		d, err := guestfs.OpenDisk(context.Background(), r, diskSize(r, raw), guestfs.Options{MaxDirEntries: 20000})
		if err != nil {
			return
		}
		walkAll(t, d.FS(), 256<<10)
	})
}

// encodeSparse turns an image into the sparse seed form, keeping 64-byte
// pieces that are neither all zeros nor all 0xFF (NTFS's $LogFile), and
// leaving out NTFS's $UpCase table, up to limit bytes.
func encodeSparse(img []byte, limit int) []byte {
	const g = 64
	out := []byte("GFS1")
	out = binary.LittleEndian.AppendUint32(out, uint32(len(img)))
	kept := 0
	dull := func(off int) bool {
		return uniform(img[off:min(off+g, len(img))]) || upcase(img[off&^511:min(off&^511+512, len(img))])
	}
	for off := 0; off < len(img) && kept < limit; {
		if dull(off) {
			off += g
			continue
		}
		end := off + g
		for end < len(img) && end-off < 32<<10 && !dull(end) {
			end += g
		}
		end = min(end, len(img))
		out = binary.LittleEndian.AppendUint32(out, uint32(off))
		out = binary.LittleEndian.AppendUint16(out, uint16(end-off))
		out = append(out, img[off:end]...)
		kept += end - off
		off = end
	}
	return out
}

func uniform(b []byte) bool {
	for _, c := range b {
		if c != b[0] {
			return false
		}
	}
	return len(b) == 0 || b[0] == 0 || b[0] == 0xFF
}

// upcase reports whether a sector looks like NTFS's $UpCase table
// (mostly consecutive 16-bit values).
func upcase(b []byte) bool {
	n := 0
	for i := 0; i+4 <= len(b); i += 2 {
		if binary.LittleEndian.Uint16(b[i+2:]) == binary.LittleEndian.Uint16(b[i:])+1 {
			n++
		}
	}
	return n > len(b)/4
}

// TestWriteFuzzSeeds regenerates the checked-in seed corpus
// (go test -run TestWriteFuzzSeeds -update-fuzz-seeds).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		// Without the flag, check that the kept corpus holds a seed for
		// every kind of image the fuzzer starts from.
		for _, name := range []string{"ext3", "ext4", "ext4-inline", "fat12", "fat32", "gpt", "mbr", "ntfs", "xfs"} {
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzOpenDisk", "seed-"+name))
			if err != nil || !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
				t.Errorf("fuzz seed %s missing or not a corpus file (regenerate with -update-fuzz-seeds): %v", name, err)
			}
		}
		return
	}
	testenv.Root(t)
	requireBuildTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "dir", "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello, guest\n"), 0o644)
	os.WriteFile(filepath.Join(src, "dir", "sub", "data.bin"), bytes.Repeat([]byte("0123456789abcdef"), 1500), 0o600)
	for i := range 40 {
		os.WriteFile(filepath.Join(src, "dir", fmt.Sprintf("file-%02d.txt", i)), []byte(strconv.Itoa(i)), 0o644)
	}
	os.Symlink("dir/sub/data.bin", filepath.Join(src, "link"))
	mk := func(name string, size int64, args ...string) []byte {
		img := filepath.Join(dir, name)
		os.WriteFile(img, nil, 0o644)
		os.Truncate(img, size)
		p, _ := testenv.LookPath(args[0])
		if out, err := exec.Command(p, append(args[1:], img)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
		b, _ := os.ReadFile(img)
		return b
	}
	mtools := func(img string) {
		cmd := exec.Command("mcopy", "-s", "-i", filepath.Join(dir, img), filepath.Join(src, "dir"), filepath.Join(src, "hello.txt"), "::/")
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mcopy: %v %s", err, out)
		}
	}
	seeds := map[string][]byte{}
	seeds["ext4"] = mk("ext4.img", 1<<20, "mkfs.ext4", "-q", "-F", "-b", "1024", "-d", src)
	seeds["ext3"] = mk("ext3.img", 1<<20, "mkfs.ext4", "-q", "-F", "-t", "ext3", "-b", "1024", "-d", src)
	seeds["ext4-inline"] = mk("ext4i.img", 1<<20, "mkfs.ext4", "-q", "-F", "-O", "inline_data", "-b", "1024", "-d", src)
	mk("fat12.img", 1<<20, "mkfs.vfat", "-F", "12")
	mtools("fat12.img")
	seeds["fat12"], _ = os.ReadFile(filepath.Join(dir, "fat12.img"))
	mk("fat32.img", 34<<20, "mkfs.vfat", "-F", "32")
	mtools("fat32.img")
	seeds["fat32"], _ = os.ReadFile(filepath.Join(dir, "fat32.img"))
	xfsImg := filepath.Join(dir, "xfs.img")
	if err := mkimage.Build(context.Background(), xfsImg, mkimage.Spec{Partitions: []mkimage.Partition{{FS: mkimage.XFS, Size: 300 << 20, Dir: src}}}); err != nil {
		t.Fatal(err)
	}
	seeds["xfs"], _ = os.ReadFile(xfsImg)
	ntfsImg := filepath.Join(dir, "ntfs.img")
	if err := mkimage.Build(context.Background(), ntfsImg, mkimage.Spec{Partitions: []mkimage.Partition{{FS: mkimage.NTFS, Size: 4 << 20, Dir: src}}}); err != nil {
		t.Fatal(err)
	}
	seeds["ntfs"], _ = os.ReadFile(ntfsImg)
	gptImg := filepath.Join(dir, "gpt.img")
	if err := mkimage.Build(context.Background(), gptImg, mkimage.Spec{Table: mkimage.GPT, Partitions: []mkimage.Partition{
		{FS: mkimage.Ext4, Size: 2 << 20, Dir: src}, {FS: mkimage.FAT16, Size: 16 << 20, Dir: src}}}); err != nil {
		t.Fatal(err)
	}
	seeds["gpt"], _ = os.ReadFile(gptImg)
	mbrImg := filepath.Join(dir, "mbr.img")
	if err := mkimage.Build(context.Background(), mbrImg, mkimage.Spec{Table: mkimage.MBR, Partitions: []mkimage.Partition{
		{FS: mkimage.Ext4, Size: 2 << 20, Dir: src}, {FS: mkimage.Raw, Size: 1 << 20}}}); err != nil {
		t.Fatal(err)
	}
	seeds["mbr"], _ = os.ReadFile(mbrImg)
	out := filepath.Join("testdata", "fuzz", "FuzzOpenDisk")
	os.MkdirAll(out, 0o755)
	total := 0
	for name, img := range seeds {
		limit := 64 << 10
		if name == "ntfs" {
			limit = 112 << 10
		}
		enc := encodeSparse(img, limit)
		// Check the seed still browses before writing it.
		r := decodeDisk(enc)
		d, err := guestfs.OpenDisk(context.Background(), r, diskSize(r, enc), guestfs.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := walkAll(t, d.FS(), 1<<20)
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(enc)) + ")\n"
		total += len(body)
		if err := os.WriteFile(filepath.Join(out, "seed-"+name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %s: %d bytes encoded, %d entries browse", name, len(body), n)
	}
	t.Logf("corpus: %d bytes", total)
}

// TestMutatedSeeds is a deterministic slice of fuzzing that runs with the
// ordinary tests: random byte changes to every seed image must neither
// panic nor hang (each input gets 10 s).
func TestMutatedSeeds(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzOpenDisk/*")
	if len(files) == 0 {
		t.Fatal("no seed corpus")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(string(b), "\n")
		lit = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(lit), "[]byte("), ")")
		u, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		seed := []byte(u)
		for range 200 {
			m := bytes.Clone(seed)
			for k := rng.IntN(20) + 1; k > 0; k-- {
				m[8+rng.IntN(len(m)-8)] = byte(rng.Uint32())
			}
			watchdog := time.AfterFunc(10*time.Second, func() {
				os.WriteFile(filepath.Join(os.TempDir(), "guestfs-slow-input"), m, 0o644)
				panic("mutated " + fn + " took more than 10s (input saved in $TMPDIR/guestfs-slow-input)")
			})
			r := decodeDisk(m)
			if d, err := guestfs.OpenDisk(context.Background(), r, diskSize(r, m), guestfs.Options{MaxDirEntries: 20000}); err == nil {
				walkAll(t, d.FS(), 256<<10)
			}
			watchdog.Stop()
		}
	}
}
