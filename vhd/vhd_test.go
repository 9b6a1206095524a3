package vhd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/vhd"
)

func TestReadHandBuilt(t *testing.T) {
	cases := []struct {
		name string
		s    spec
	}{
		{"qemu layout", spec{size: 7*mib + 4096, blockSize: 2 * mib, order: []int64{0, 2, 3}}},
		{"vhd-tool layout", spec{size: 6 * mib, blockSize: 2 * mib, tableOffset: 2048, order: []int64{1, 2}}},
		{"padding before the blocks", spec{size: 16384, blockSize: 4096, order: []int64{0, 3}, gap: 1536}},
		{"no blocks", spec{size: 4 * mib, blockSize: 2 * mib}},
		{"empty disk", spec{size: 0, blockSize: 2 * mib}},
		{"small blocks", spec{size: 2048, blockSize: 512, order: []int64{1, 3}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := vhd.NewReader(bytes.NewReader(build(c.s)))
			if err != nil {
				t.Fatal(err)
			}
			if r.Size() != c.s.size || r.BlockSize() != c.s.blockSize || r.Differencing() {
				t.Errorf("size %d block size %d differencing %v", r.Size(), r.BlockSize(), r.Differencing())
			}
			var want []int64
			for _, i := range c.s.order {
				want = append(want, i*c.s.blockSize)
			}
			if got := r.Present(); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
				t.Errorf("Present %v, want %v", got, want)
			}
			img, blocks, err := readImage(t, r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img, c.s.image()) {
				t.Error("image differs")
			}
			if len(blocks) != len(c.s.order) {
				t.Errorf("%d blocks, want %d", len(blocks), len(c.s.order))
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("Next after the end: %v", err)
			}
		})
	}
}

func TestDifferencing(t *testing.T) {
	s := spec{size: 6 * mib, blockSize: 2 * mib, tableOffset: 2048, diskType: 4, order: []int64{1}, parent: [16]byte{1, 2, 3}}
	r, err := vhd.NewReader(bytes.NewReader(build(s)))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Differencing() || r.ParentID() != s.parent || r.UniqueID() != [16]byte([]byte("0123456789abcdef")) {
		t.Errorf("differencing %v parent %x id %x", r.Differencing(), r.ParentID(), r.UniqueID())
	}
	img, _, err := readImage(t, r)
	if err != nil || !bytes.Equal(img, s.image()) {
		t.Fatalf("image differs (%v)", err)
	}
}

func TestSectorBitmap(t *testing.T) {
	bm := make([]byte, 512)
	bm[0] = 0xA0 // sectors 0 and 2
	bm[1] = 0x01 // sector 15
	s := spec{size: 4 * mib, blockSize: 2 * mib, order: []int64{1}, bitmap: bm}
	r, err := vhd.NewReader(bytes.NewReader(build(s)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var present []int
	for i := 0; i < int(r.BlockSize()/512); i++ {
		if b.SectorPresent(i) {
			present = append(present, i)
		}
	}
	if !reflect.DeepEqual(present, []int{0, 2, 15}) || b.SectorPresent(-1) || b.SectorPresent(1<<20) {
		t.Errorf("present sectors %v, want [0 2 15]", present)
	}
}

func TestReaderErrors(t *testing.T) {
	base := spec{size: 16384, blockSize: 4096, order: []int64{0, 2, 3}}
	good := build(base)
	end := len(good) - 512 // the final footer
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	put32 := func(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
	bothFooters := func(b []byte, f func(foot []byte)) []byte {
		f(b[0:512])
		fixFooter(b, 0)
		f(b[len(b)-512:])
		fixFooter(b, len(b)-512)
		return b
	}
	batAt := 1536
	cases := []struct {
		name  string
		input []byte
		want  string
		eof   bool
	}{
		{"empty", nil, "the stream ends early, at byte 0, in the footer copy", true},
		{"not a VHD", []byte(strings.Repeat("x", 600)), `the footer copy's cookie is "xxxxxxxx", want "conectix"`, false},
		{"footer checksum", mut(func(b []byte) []byte { b[100] ^= 1; return b }), "the footer copy's checksum is", false},
		{"fixed disk", mut(func(b []byte) []byte { put32(b, 60, 2); fixFooter(b, 0); return b }), "disk type 2 (fixed)", false},
		{"unknown type", mut(func(b []byte) []byte { put32(b, 60, 7); fixFooter(b, 0); return b }), "disk type 7, want 3 (dynamic) or 4 (differencing)", false},
		{"footer version", mut(func(b []byte) []byte { put32(b, 12, 0x20000); fixFooter(b, 0); return b }), "file format version 00020000", false},
		{"data offset", mut(func(b []byte) []byte { binary.BigEndian.PutUint64(b[16:], 100); fixFooter(b, 0); return b }), "data offset 100 does not point after the footer copy", false},
		{"header cookie", mut(func(b []byte) []byte { copy(b[512:], "cxsparsX"); fixHeader(b); return b }), `cookie is "cxsparsX", want "cxsparse"`, false},
		{"header checksum", mut(func(b []byte) []byte { b[512+800] ^= 1; return b }), "the dynamic disk header's checksum is", false},
		{"block size not a power of two", mut(func(b []byte) []byte { put32(b, 512+32, 3000); fixHeader(b); return b }), "block size 3000 is not a power of two", false},
		{"block size too large", mut(func(b []byte) []byte { put32(b, 512+32, 128<<20); fixHeader(b); return b }), "block size 134217728 is not a power of two from 512 to 67108864", false},
		{"entries do not match the size", mut(func(b []byte) []byte { put32(b, 512+28, 5); fixHeader(b); return b }), "max table entries 5 does not fit the size: 16384 bytes in blocks of 4096 need 4", false},
		{"size does not match entries", mut(func(b []byte) []byte {
			return bothFooters(b, func(f []byte) { binary.BigEndian.PutUint64(f[48:], 20000) })
		}), "max table entries 4 does not fit the size: 20000 bytes in blocks of 4096 need 5", false},
		{"too many entries", mut(func(b []byte) []byte { put32(b, 512+28, 1<<30); fixHeader(b); return b }), "max table entries 1073741824 is more than", false},
		{"table inside the header", mut(func(b []byte) []byte { binary.BigEndian.PutUint64(b[512+16:], 1000); fixHeader(b); return b }), "the BAT's offset 1000 is not after the dynamic disk header", false},
		{"BAT out of order", mut(func(b []byte) []byte {
			s0, s2 := binary.BigEndian.Uint32(b[batAt:]), binary.BigEndian.Uint32(b[batAt+8:])
			put32(b, batAt, s2)
			put32(b, batAt+8, s0)
			return b
		}), "BAT entries out of order: block 2 is at sector", false},
		{"BAT overlap", mut(func(b []byte) []byte { put32(b, batAt+8, binary.BigEndian.Uint32(b[batAt:])+1); return b }), "BAT entries overlap: block 2 at sector 5 starts inside block 0 at sector 4", false},
		{"block inside the BAT", mut(func(b []byte) []byte { put32(b, batAt, 3); return b }), "BAT entry 0 points at byte 1536, inside the headers or the BAT (blocks start at 2048)", false},
		{"truncated in the BAT", good[:batAt+6], "the stream ends early, at byte 1542, in the BAT", true},
		{"truncated in a block", good[:2048+512+100], "in block 0 (disk offset 0)", true},
		{"truncated in a bitmap", good[:2048+4608+10], "in the sector bitmap of block 2 (disk offset 8192)", true},
		{"no final footer", good[:end], "the stream ends without the final footer (0 bytes after the last block)", true},
		{"half a final footer", good[:end+300], "the stream ends without the final footer (300 bytes after the last block)", true},
		{"final footer differs", mut(func(b []byte) []byte { b[end+24] ^= 1; fixFooter(b, end); return b }), "the final footer differs from the footer copy", false},
		{"final footer corrupt", mut(func(b []byte) []byte { b[end] = 'X'; return b }), `the final footer's cookie is "Xonectix"`, false},
		{"data before the final footer", append(append(append([]byte(nil), good[:end]...), bytes.Repeat([]byte{0xAA}, 700)...), good[end:]...), "unexpected data", false},
		{"data after the final footer", append(append([]byte(nil), good...), 1, 2, 3), "unexpected data", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := vhd.NewReader(bytes.NewReader(c.input))
			if err == nil {
				_, _, err = readImage(t, r)
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			if !errors.Is(err, vhd.ErrCorrupt) {
				t.Errorf("error %q does not wrap ErrCorrupt", err)
			}
			if c.eof != errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %q: errors.Is io.ErrUnexpectedEOF = %v", err, !c.eof)
			}
			if r != nil {
				if _, err2 := r.Next(); err2 == nil || err2 == io.EOF {
					t.Errorf("Next after the error: %v (errors are sticky)", err2)
				}
			}
		})
	}
}

func TestZeroPaddingBeforeFinalFooter(t *testing.T) {
	s := spec{size: 16384, blockSize: 4096, order: []int64{1}}
	b := build(s)
	end := len(b) - 512
	padded := append(append(append([]byte(nil), b[:end]...), make([]byte, 1500)...), b[end:]...)
	r, err := vhd.NewReader(bytes.NewReader(padded))
	if err != nil {
		t.Fatal(err)
	}
	if img, _, err := readImage(t, r); err != nil || !bytes.Equal(img, s.image()) {
		t.Fatalf("padded stream: %v", err)
	}
}

// errReader fails after its data.
type errReader struct {
	data []byte
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestIOErrorIsNotCorruption(t *testing.T) {
	b := build(spec{size: 16384, blockSize: 4096, order: []int64{1}})
	boom := errors.New("connection reset")
	r, err := vhd.NewReader(&errReader{data: b[:3000], err: boom})
	if err == nil {
		_, _, err = readImage(t, r)
	}
	if !errors.Is(err, boom) || errors.Is(err, vhd.ErrCorrupt) {
		t.Errorf("error %v: want the reader's error, not ErrCorrupt", err)
	}
}

// qemuImg converts raw to a dynamic VHD with qemu-img.
func qemuImg(t *testing.T, raw []byte, opts string) string {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhd")
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", opts, in, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	return out
}

// rawWithHoles is a disk of 7 MiB + 4 KiB (blocks of 2 MiB: the fourth is
// partial) with data in blocks 0, 2 and 3 and block 1 all zero.
func rawWithHoles() []byte {
	raw := make([]byte, 7*mib+4096)
	copy(raw[100:], pattern(1, 5000))                     // block 0
	copy(raw[5*mib+777:], pattern(2, 300000))             // block 2
	copy(raw[len(raw)-512:], pattern(3, 512))             // block 3, its last sector
	copy(raw[6*mib+4096:], bytes.Repeat([]byte("x"), 10)) // block 3
	return raw
}

func TestQemuImgDynamic(t *testing.T) {
	testenv.Commands(t, "qemu-img")
	raw := rawWithHoles()
	path := qemuImg(t, raw, "subformat=dynamic,force_size=on")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := vhd.NewReader(f) // as a stream: f is only read forward
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != int64(len(raw)) {
		t.Errorf("size %d, want %d exactly (force_size=on)", r.Size(), len(raw))
	}
	if r.BlockSize() != 2*mib {
		t.Errorf("block size %d", r.BlockSize())
	}
	if got, want := r.Present(), []int64{0, 4 * mib, 6 * mib}; !reflect.DeepEqual(got, want) {
		t.Errorf("present %v, want %v (qemu-img leaves zero blocks out)", got, want)
	}
	img, blocks, err := readImage(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, raw) {
		t.Error("image differs from the raw file")
	}
	for _, b := range blocks {
		if !bytes.Equal(b.Bitmap, bytes.Repeat([]byte{0xFF}, 512)) {
			t.Errorf("block at %d: qemu's bitmap is not all ones", b.Off)
		}
	}
}

func TestQemuImgCHSSize(t *testing.T) {
	// Without force_size qemu rounds the size up to a CHS geometry; the
	// footer's current size is then that product, and the geometry the
	// spec's calculation gives for it.
	testenv.Commands(t, "qemu-img")
	raw := rawWithHoles()
	path := qemuImg(t, raw, "subformat=dynamic")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := vhd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() < int64(len(raw)) || r.Size()%512 != 0 {
		t.Fatalf("size %d for a raw disk of %d", r.Size(), len(raw))
	}
	c, h, s := vhd.Geometry(r.Size() / 512)
	geo := data[56:60]
	if int64(binary.BigEndian.Uint16(geo)) != c || int64(geo[2]) != h || int64(geo[3]) != s {
		t.Errorf("geometry %d/%d/%d, qemu wrote %d/%d/%d", c, h, s, binary.BigEndian.Uint16(geo), geo[2], geo[3])
	}
	if c*h*s*512 != r.Size() {
		t.Errorf("qemu's size %d is not its CHS product %d", r.Size(), c*h*s*512)
	}
	img, _, err := readImage(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img[:len(raw)], raw) || !bytes.Equal(img[len(raw):], make([]byte, len(img)-len(raw))) {
		t.Error("image differs from the raw file (plus zeros)")
	}
}

func TestGeometry(t *testing.T) {
	// Values from the spec's algorithm worked by hand: small disks use 17
	// sectors per track and at least 4 heads; the maximum is 65535/16/255.
	cases := []struct{ sectors, c, h, s int64 }{
		{10268, 151, 4, 17},
		{20480, 301, 4, 17},
		{65535 * 16 * 255 * 2, 65535, 16, 255},
	}
	for _, c := range cases {
		if gc, gh, gs := vhd.Geometry(c.sectors); gc != c.c || gh != c.h || gs != c.s {
			t.Errorf("Geometry(%d) = %d/%d/%d, want %d/%d/%d", c.sectors, gc, gh, gs, c.c, c.h, c.s)
		}
	}
}
