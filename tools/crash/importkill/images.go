package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
)

// source is a base image, a file in the work directory.
type source struct {
	name string
	f    *os.File
	size int64
}

// makeSources writes three images: random data; half random blocks, half
// zero (holes and written zeros); and a few blocks (one of them text)
// repeated in random order.
func (k *killer) makeSources() error {
	dir := filepath.Join(k.work, "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mib := int64(k.o.SizeMiB) << 20
	data := newChaCha(k.rnd.Uint64())
	block := make([]byte, 64<<10)
	specs := []struct {
		name string
		size int64
		fill func(f *os.File, size int64) error
	}{
		{"random", mib/2 + 100_003, func(f *os.File, size int64) error {
			_, err := io.CopyN(f, data, size)
			return err
		}},
		{"sparse", mib, func(f *os.File, size int64) error {
			if err := f.Truncate(size); err != nil {
				return err
			}
			for off := int64(0); off < size; off += int64(len(block)) {
				switch k.rnd.IntN(4) {
				case 0: // a hole
					continue
				case 1:
					clear(block)
				default:
					data.Read(block)
				}
				if _, err := f.WriteAt(block, off); err != nil {
					return err
				}
			}
			return nil
		}},
		{"repeat", mib * 3 / 4, func(f *os.File, size int64) error {
			pool := make([][]byte, 6)
			for i := range pool {
				pool[i] = make([]byte, 48<<10) // not chunk-aligned: chunks repeat less often than blocks
				data.Read(pool[i])
			}
			text := []byte("ahvfs importkill: the same words, over and over again. ")
			for i := range pool[0] {
				pool[0][i] = text[i%len(text)]
			}
			for off := int64(0); off < size; off += int64(len(pool[0])) {
				b := pool[k.rnd.IntN(len(pool))]
				if _, err := f.WriteAt(b[:min(int64(len(b)), size-off)], off); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, s := range specs {
		path := filepath.Join(dir, s.name+".raw")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := s.fill(f, s.size); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		k.sources = append(k.sources, &source{name: s.name, f: f, size: s.size})
	}
	return nil
}

// variant is what one imported disk holds: a source image with patches of
// fresh random data written over it, so that an import brings new data.
type variant struct {
	src     *source
	patches []patch
}

// patch is n bytes of the ChaCha8 stream of seed, written at off.
type patch struct {
	off  int64
	n    int
	seed uint64
}

func (v variant) String() string {
	n := 0
	for _, p := range v.patches {
		n += p.n
	}
	return fmt.Sprintf("%s image with %d patches (%s)", v.src.name, len(v.patches), humanize.IBytes(uint64(n)))
}

// newVariant draws up to four patches over src (or a source drawn too),
// each up to 1 MiB; none a quarter of the time: an import of nothing new.
func (k *killer) newVariant(src *source) variant {
	if src == nil {
		src = k.sources[k.rnd.IntN(len(k.sources))]
	}
	v := variant{src: src}
	if k.rnd.IntN(4) == 0 {
		return v
	}
	for range 1 + k.rnd.IntN(4) {
		n := 1 + k.rnd.IntN(int(min(1<<20, v.src.size/8)))
		v.patches = append(v.patches, patch{off: k.rnd.Int64N(v.src.size - int64(n)), n: n, seed: k.rnd.Uint64()})
	}
	return v
}

// content is a variant's bytes, as an io.ReaderAt.
type content struct {
	src     *source
	patches [][]byte // of the variant's patches, in order
	v       variant
}

func (v variant) content() *content {
	c := &content{src: v.src, v: v}
	for _, p := range v.patches {
		b := make([]byte, p.n)
		newChaCha(p.seed).Read(b)
		c.patches = append(c.patches, b)
	}
	return c
}

func (c *content) size() int64 { return c.src.size }

func (c *content) ReadAt(b []byte, off int64) (int, error) {
	if _, err := c.src.f.ReadAt(b, off); err != nil {
		return 0, err
	}
	end := off + int64(len(b))
	for i, p := range c.v.patches {
		lo, hi := max(off, p.off), min(end, p.off+int64(p.n))
		if lo < hi {
			copy(b[lo-off:hi-off], c.patches[i][lo-p.off:hi-p.off])
		}
	}
	return len(b), nil
}

// write writes the variant to path, keeping the source's holes.
func (c *content) write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(c.size()); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < c.size(); off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), c.size()-off)]
		if _, err := c.ReadAt(b, off); err != nil {
			return err
		}
		if isZero(b) {
			continue
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Close()
}

// checker compares what is written to it with a variant's content as it
// arrives; it never fails a write, so the process writing is not disturbed.
type checker struct {
	want *content
	n    int64 // bytes written
	bad  int64 // first byte that differs, or -1
	buf  []byte
}

func newChecker(v variant) *checker {
	return &checker{want: v.content(), bad: -1, buf: make([]byte, 1<<20)}
}

func (c *checker) Write(p []byte) (int, error) {
	n := len(p)
	for c.bad < 0 && len(p) > 0 && c.n < c.want.size() {
		b := c.buf[:min(len(p), len(c.buf), int(c.want.size()-c.n))]
		if _, err := c.want.ReadAt(b, c.n); err != nil {
			return 0, err
		}
		if !bytes.Equal(b, p[:len(b)]) {
			for i := range b {
				if b[i] != p[i] {
					c.bad = c.n + int64(i)
					break
				}
			}
		}
		c.n += int64(len(b))
		p = p[len(b):]
	}
	c.n += int64(len(p))
	return n, nil
}

// problem says what is wrong with what was written; complete means that
// the writer finished, so that the whole content must have come.
func (c *checker) problem(complete bool) string {
	switch {
	case c.bad >= 0:
		return fmt.Sprintf("differs from the %v at byte %d (of %d read)", c.want.v, c.bad, c.n)
	case c.n > c.want.size():
		return fmt.Sprintf("is %d bytes long, the %v only %d", c.n, c.want.v, c.want.size())
	case complete && c.n < c.want.size():
		return fmt.Sprintf("is %d bytes long, the %v %d", c.n, c.want.v, c.want.size())
	}
	return ""
}

func newChaCha(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
