package simkit_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

const mib = 1 << 20

// writeImage writes a file of size bytes: random data in the given 64 KiB
// blocks, a hole elsewhere. It returns the path and the content.
func writeImage(t *testing.T, size int64, blocks ...int64) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	for _, b := range blocks {
		blk := want[b*64<<10 : (b+1)*64<<10]
		rand.Read(blk)
		if _, err := f.WriteAt(blk, b*64<<10); err != nil {
			t.Fatal(err)
		}
	}
	return p, want
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCopyDisk: the copy is size bytes long, src's first size bytes then
// zeros, whatever size is against src's; an older dst is replaced and no
// temporary file stays behind.
func TestCopyDisk(t *testing.T) {
	src, data := writeImage(t, 4*mib, 0, 3, 40, 63)
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"same", 4 * mib},
		{"shorter", 2*mib + 512},
		{"longer", 6 * mib},
		{"empty", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "sub", "dst.raw")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, []byte("old content"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := simkit.CopyDisk(dst, src, tc.size); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, tc.size)
			copy(want, data)
			if got := readFile(t, dst); !bytes.Equal(got, want) {
				t.Fatalf("copy of %d bytes differs (len %d)", tc.size, len(got))
			}
			if _, err := os.Stat(dst + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temporary file: %v", err)
			}
		})
	}
}

// TestCopyDiskMakesDirectories: dst's directory is created.
func TestCopyDiskMakesDirectories(t *testing.T) {
	src, data := writeImage(t, mib, 1)
	dst := filepath.Join(t.TempDir(), "a", "b", "dst.raw")
	if err := simkit.CopyDisk(dst, src, mib); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, dst), data) {
		t.Fatal("copy differs")
	}
}

// TestCopyDiskNoSource: a missing source is an error that leaves nothing.
func TestCopyDiskNoSource(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "dst.raw")
	err := simkit.CopyDisk(dst, filepath.Join(dir, "missing.raw"), mib)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "copy disk: ") {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}

// TestDataExtents: the data of a file with holes, cut to the range asked.
func TestDataExtents(t *testing.T) {
	p, _ := writeImage(t, 4*mib, 16, 17, 48)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA); errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		testenv.RequireOrSkip(t, false, "the temporary directory's file system has no SEEK_DATA")
	}
	for _, tc := range []struct {
		start, end int64
		want       []simkit.Extent
	}{
		{0, 4 * mib, []simkit.Extent{{mib, mib + 128<<10}, {3 * mib, 3*mib + 64<<10}}},
		{mib + 64<<10, 3*mib + 4096, []simkit.Extent{{mib + 64<<10, mib + 128<<10}, {3 * mib, 3*mib + 4096}}},
		{2 * mib, 3 * mib, nil},
		{3*mib + 64<<10, 4 * mib, nil},
	} {
		got, err := simkit.DataExtents(f, tc.start, tc.end)
		if err != nil {
			t.Fatal(err)
		}
		// A file system may allocate more than was written, never less:
		// every byte written must be in an extent, and extents stay in
		// the range, in order.
		prev := tc.start
		for _, e := range got {
			if e.Off < prev || e.End <= e.Off || e.End > tc.end {
				t.Fatalf("[%d, %d): extents %v", tc.start, tc.end, got)
			}
			prev = e.End
		}
		for _, w := range tc.want {
			in := false
			for _, e := range got {
				in = in || (e.Off <= w.Off && w.End <= e.End)
			}
			if !in {
				t.Errorf("[%d, %d): %v misses %v", tc.start, tc.end, got, w)
			}
		}
	}
}

func TestAllZero(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{nil, true},
		{make([]byte, 7), true},
		{make([]byte, 64<<10), true},
		{append(make([]byte, 64<<10), 1), false},
		{append(make([]byte, 13), 1, 0, 0), false},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0x80}, false},
	} {
		if got := simkit.AllZero(tc.b); got != tc.want {
			t.Errorf("AllZero(%d bytes, last %v) = %v", len(tc.b), tc.b[max(len(tc.b)-1, 0):], got)
		}
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestReadFull: bytes past the end read as zeros (over a dirty buffer);
// other errors come back.
func TestReadFull(t *testing.T) {
	r := bytes.NewReader([]byte("abcdef"))
	for _, tc := range []struct {
		off  int64
		want string
	}{
		{0, "abcd"},
		{4, "ef\x00\x00"},
		{6, "\x00\x00\x00\x00"},
		{100, "\x00\x00\x00\x00"},
	} {
		p := []byte("xxxx")
		if err := simkit.ReadFull(r, p, tc.off); err != nil || string(p) != tc.want {
			t.Errorf("ReadFull at %d = %q, %v; want %q", tc.off, p, err, tc.want)
		}
	}
	if err := simkit.ReadFull(failingReader{}, make([]byte, 4), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v", err)
	}
}

// TestBlankDisk: a blank disk is size bytes of zeros, allocating nothing,
// and replaces what was there.
func TestBlankDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vms", "a", "disk-0.raw")
	if err := simkit.BlankDisk(p, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := simkit.BlankDisk(p, 8*mib); err != nil {
		t.Fatal(err)
	}
	b := readFile(t, p)
	if len(b) != 8*mib || !simkit.AllZero(b) {
		t.Fatalf("blank disk: %d bytes, zero %v", len(b), simkit.AllZero(b))
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= 8*mib {
		t.Errorf("blank disk allocates %d bytes", st.Blocks*512)
	}
}

// TestInitStateDir: the directory and its subdirectories exist, the path
// comes back absolute, and an existing state directory is kept.
func TestInitStateDir(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	dir, err := simkit.InitStateDir("st", "vms", "vdis")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "st"); dir != want {
		t.Fatalf("dir %q, want %q", dir, want)
	}
	keep := filepath.Join(dir, "vms", "keep")
	if err := os.WriteFile(keep, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := simkit.InitStateDir(dir, "vms", "cbt"); err != nil || again != dir {
		t.Fatalf("again: %q, %v", again, err)
	}
	for _, p := range []string{"vdis", "cbt", "vms/keep"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
	if _, err := simkit.InitStateDir(filepath.Join(keep, "below")); err == nil {
		t.Error("a state directory below a file")
	}
}

// recorder is an io.WriterAt that records where it was written and can
// fail from a given offset.
type recorder struct {
	at     []int64
	failAt int64
}

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	if r.failAt > 0 && off >= r.failAt {
		return 0, io.ErrShortWrite
	}
	r.at = append(r.at, off, int64(len(p)))
	return len(p), nil
}

// TestWriteSparse: only the 64 KiB pieces holding data are written, at
// their offsets; a failure reports how far it got.
func TestWriteSparse(t *testing.T) {
	const blk = 64 << 10
	p := make([]byte, 3*blk+100)
	p[blk+5] = 1    // second piece
	p[3*blk+99] = 1 // the short last piece
	var r recorder
	if n, err := simkit.WriteSparse(&r, p, 1000); err != nil || n != len(p) {
		t.Fatalf("n %d, %v", n, err)
	}
	if want := []int64{1000 + blk, blk, 1000 + 3*blk, 100}; !reflect.DeepEqual(r.at, want) {
		t.Errorf("writes %v, want %v", r.at, want)
	}
	r = recorder{failAt: 1000 + 2*blk}
	if n, err := simkit.WriteSparse(&r, p, 1000); !errors.Is(err, io.ErrShortWrite) || n != 3*blk {
		t.Errorf("failing: n %d, %v", n, err)
	}
	if n, err := simkit.WriteSparse(&r, make([]byte, blk), 0); err != nil || n != blk || len(r.at) != 2 {
		t.Errorf("zeros: n %d, %v, writes %v", n, err, r.at)
	}
}

// TestCopyDiskReflink: on a file system with reflinks the copy is a clone,
// cut or extended to size; writing to it leaves the source alone.
func TestCopyDiskReflink(t *testing.T) {
	dir := testenv.ReflinkDir(t, 512<<20)
	tmp, data := writeImage(t, 4*mib, 0, 7, 63)
	src := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(src, readFile(t, tmp), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{4 * mib, mib, 5 * mib} {
		dst := filepath.Join(dir, "dst.raw")
		if err := simkit.CopyDisk(dst, src, size); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, size)
		copy(want, data)
		if !bytes.Equal(readFile(t, dst), want) {
			t.Fatalf("clone of %d bytes differs", size)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("changed"), 0)
		f.Close()
		if !bytes.Equal(readFile(t, src), data) {
			t.Fatal("writing the clone changed the source")
		}
	}
}
