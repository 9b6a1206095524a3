package vhd_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/vhd"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz")

// seeds are small well-formed VHD streams: 512-byte and 4 KiB blocks,
// XAPI's and qemu's table offsets, a differencing disk, padding.
func seeds() [][]byte {
	return [][]byte{
		build(spec{size: 2048, blockSize: 512, order: []int64{1, 3}}),
		build(spec{size: 1536, blockSize: 512, tableOffset: 2048, diskType: 4, order: []int64{0}, gap: 512}),
		build(spec{size: 8192, blockSize: 4096, order: []int64{1}}),
		build(spec{size: 0, blockSize: 512}),
	}
}

// FuzzReader feeds arbitrary streams to the Reader: nothing may panic,
// every error describes a malformed stream (bytes.Reader has no I/O
// errors), and blocks come inside the disk, in increasing order.
func FuzzReader(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := vhd.NewReader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, vhd.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		bs, size := r.BlockSize(), r.Size()
		present := r.Present()
		prev := int64(-1)
		for i := 0; ; i++ {
			b, err := r.Next()
			if err == io.EOF {
				if i != len(present) {
					t.Fatalf("%d blocks, %d present", i, len(present))
				}
				return
			}
			if err != nil {
				if !errors.Is(err, vhd.ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", err)
				}
				return
			}
			if b.Off != present[i] || b.Off%bs != 0 || b.Off <= prev || b.Off >= size {
				t.Fatalf("block %d at %d (present %v, size %d)", i, b.Off, present, size)
			}
			if int64(len(b.Data)) != min(bs, size-b.Off) || len(b.Bitmap)%512 != 0 || int64(len(b.Bitmap))*8 < bs/512 {
				t.Fatalf("block at %d: %d bytes, bitmap %d", b.Off, len(b.Data), len(b.Bitmap))
			}
			prev = b.Off
		}
	})
}

// TestWriteFuzzSeeds rewrites testdata/fuzz with -update-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		return // only with -update-seeds
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
