package nbdtest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Image is a raw disk image made by NewImage.
type Image struct {
	Path string
	Data []byte // the whole content
	// Holes are the ranges never written (sparse in the file), aligned
	// to 64 KiB; [2]int64{offset, length}.
	Holes [][2]int64
	// Zeroes are ranges written with zeroes (allocated, reading as
	// zeroes).
	Zeroes [][2]int64
}

// NewImage writes a raw image of size bytes (a multiple of 64 KiB) of
// random data from seed into dir, with about a quarter of its 1 MiB
// regions left as holes, some written as zeroes, and a few odd-sized
// zero runs in the data.
func NewImage(t testing.TB, dir string, size int64, seed uint64) *Image {
	t.Helper()
	if size%(64<<10) != 0 {
		t.Fatalf("nbdtest: image size %d is not a multiple of 64 KiB", size)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	img := &Image{Path: filepath.Join(dir, "disk.raw"), Data: make([]byte, size)}
	f, err := os.Create(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	const region = 1 << 20
	for off := int64(0); off < size; off += region {
		n := min(region, size-off)
		switch r := rng.IntN(8); {
		case r < 2 && off > 0: // a hole
			img.Holes = append(img.Holes, [2]int64{off, n})
			continue
		case r == 2: // allocated zeroes
			img.Zeroes = append(img.Zeroes, [2]int64{off, n})
		default:
			b := img.Data[off : off+n]
			for i := 0; i+8 <= len(b); i += 8 {
				v := rng.Uint64()
				for k := range 8 {
					b[i+k] = byte(v >> (8 * k))
				}
			}
			// An odd-sized zero run inside the data.
			zo := rng.Int64N(n / 2)
			clear(b[zo : zo+rng.Int64N(5000)+1])
		}
		if _, err := f.WriteAt(img.Data[off:off+n], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}
