package vhd_test

import (
	"bytes"
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

// writeVHD writes a disk image with the Writer, the blocks at offsets
// present (the last one passed cut at the disk's end).
func writeVHD(t *testing.T, img []byte, blockSize int64, present []int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := vhd.NewWriterBlockSize(&buf, int64(len(img)), blockSize, present)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range present {
		if err := w.WriteBlock(off, img[off:min(off+blockSize, int64(len(img)))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageWith returns size bytes with data in the given blocks.
func imageWith(size, blockSize int64, blocks []int64) []byte {
	img := make([]byte, size)
	for i, off := range blocks {
		copy(img[off:min(off+blockSize, size)], pattern(byte(i+1), int(blockSize)))
	}
	return img
}

func TestWriterRoundTrip(t *testing.T) {
	const size = 9*mib + 1024 // five blocks of 2 MiB, the last partial
	present := []int64{0, 4 * mib, 8 * mib}
	img := imageWith(size, vhd.DefaultBlockSize, present)
	data := writeVHD(t, img, vhd.DefaultBlockSize, present)
	r, err := vhd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != size || r.BlockSize() != vhd.DefaultBlockSize || r.Differencing() {
		t.Errorf("size %d block size %d", r.Size(), r.BlockSize())
	}
	if !reflect.DeepEqual(r.Present(), present) {
		t.Errorf("present %v", r.Present())
	}
	got, blocks, err := readImage(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Error("image differs after the round trip")
	}
	for _, b := range blocks {
		if !bytes.Equal(b.Bitmap, bytes.Repeat([]byte{0xFF}, 512)) {
			t.Errorf("block at %d: bitmap not all ones", b.Off)
		}
	}
	// Layout: the footer copy equals the footer; the header at 512; the
	// BAT at 1536.
	if !bytes.Equal(data[:512], data[len(data)-512:]) || string(data[512:520]) != "cxsparse" {
		t.Error("layout")
	}
}

func TestWriterSmallBlocks(t *testing.T) {
	present := []int64{512, 1536}
	img := imageWith(2048, 512, present)
	r, err := vhd.NewReader(bytes.NewReader(writeVHD(t, img, 512, present)))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := readImage(t, r)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("round trip with 512-byte blocks: %v", err)
	}
}

func TestWriterQemuReadsIt(t *testing.T) {
	testenv.Commands(t, "qemu-img")
	const size = 5*mib + 512
	present := []int64{2 * mib, 4 * mib}
	img := imageWith(size, vhd.DefaultBlockSize, present)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "w.vhd"), filepath.Join(dir, "w.raw")
	if err := os.WriteFile(in, writeVHD(t, img, vhd.DefaultBlockSize, present), 0o644); err != nil {
		t.Fatal(err)
	}
	// qemu takes the size of a VHD from an unknown creator from its CHS
	// geometry; force_size_calc=current_size makes it read the footer's
	// size, as XAPI's vhd-tool does.
	cmd := exec.Command("qemu-img", "convert", "--image-opts",
		"driver=vpc,force_size_calc=current_size,file.driver=file,file.filename="+in, "-O", "raw", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Errorf("qemu-img reads %d bytes that differ from the %d written", len(got), len(img))
	}
}

func TestWriterErrors(t *testing.T) {
	bs := int64(vhd.DefaultBlockSize)
	for _, c := range []struct {
		size, blockSize int64
		blocks          []int64
		want            string
	}{
		{10 * mib, 3000, nil, "block size 3000"},
		{10*mib + 1, bs, nil, "not a whole number of 512-byte sectors"},
		{10 * mib, bs, []int64{1 * mib}, "not a multiple of 2097152"},
		{10 * mib, bs, []int64{10 * mib}, "inside the disk's 10485760 bytes"},
		{10 * mib, bs, []int64{4 * mib, 2 * mib}, "offsets must increase"},
		{1 << 50, bs, nil, "more than"},
	} {
		if _, err := vhd.NewWriterBlockSize(io.Discard, c.size, c.blockSize, c.blocks); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewWriter(%d, %d, %v): %v, want %q", c.size, c.blockSize, c.blocks, err, c.want)
		}
	}
	w, err := vhd.NewWriter(io.Discard, 6*mib, []int64{0, 4 * mib})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlock(4*mib, make([]byte, bs)); err == nil || !strings.Contains(err.Error(), "want the next present block, 0") {
		t.Errorf("out of order: %v", err)
	}
	if err := w.WriteBlock(0, make([]byte, 100)); err == nil || !strings.Contains(err.Error(), "100 bytes") {
		t.Errorf("short block: %v", err)
	}
	if err := w.WriteBlock(0, make([]byte, bs)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "1 of 2 present blocks were not written") {
		t.Errorf("Close early: %v", err)
	}
}
