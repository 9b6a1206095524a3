package guestfs

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// extent maps file bytes [log, log+n) to device bytes [phys, phys+n).
// An extent with zero set reads as zeros (an unwritten/preallocated extent);
// bytes covered by no extent are a hole and read as zeros too.
type extent struct {
	log, phys, n int64
	zero         bool
	dev          io.ReaderAt // the device to read from (nil: the reader's)
}

// extentReader reads a file (or a logical volume) from its extent map
// straight off the device: one ReadAt per extent touched, so large reads
// stay large. It is immutable and safe for concurrent callers.
type extentReader struct {
	dev  io.ReaderAt
	ext  []extent // sorted by log, non-overlapping
	size int64
}

// newExtentReader sorts and checks exts; devSize bounds the physical
// ranges (a corrupt extent pointing past the device is an error at open,
// not a short read later).
func newExtentReader(dev io.ReaderAt, devSize int64, exts []extent, size int64) (*extentReader, error) {
	sort.Slice(exts, func(i, j int) bool { return exts[i].log < exts[j].log })
	out := exts[:0]
	for _, e := range exts {
		if e.n <= 0 || e.log < 0 || e.log >= size {
			continue // empty, or entirely past EOF
		}
		if !e.zero && (e.phys < 0 || e.phys > devSize || e.n > devSize-e.phys) {
			return nil, fmt.Errorf("extent at file offset %d points outside the volume (%d+%d > %d): %w", e.log, e.phys, e.n, devSize, ErrCorrupt)
		}
		if len(out) > 0 {
			prev := &out[len(out)-1]
			if e.log < prev.log+prev.n {
				return nil, fmt.Errorf("overlapping extents at file offset %d: %w", e.log, ErrCorrupt)
			}
			if !e.zero && !prev.zero && prev.dev == e.dev && prev.log+prev.n == e.log && prev.phys+prev.n == e.phys {
				prev.n += e.n // merge physically contiguous extents
				continue
			}
		}
		out = append(out, e)
	}
	return &extentReader{dev: dev, ext: out, size: size}, nil
}

func (r *extentReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	done := 0
	want := len(p)
	if int64(want) > r.size-off {
		want = int(r.size - off)
	}
	// First extent ending after off.
	i := sort.Search(len(r.ext), func(i int) bool { return r.ext[i].log+r.ext[i].n > off })
	for done < want {
		pos := off + int64(done)
		rest := p[done:want]
		if i >= len(r.ext) || r.ext[i].log > pos {
			// A hole up to the next extent (or EOF).
			end := int64(want - done)
			if i < len(r.ext) && r.ext[i].log-pos < end {
				end = r.ext[i].log - pos
			}
			clear(rest[:end])
			done += int(end)
			continue
		}
		e := r.ext[i]
		k := min(int64(len(rest)), e.log+e.n-pos)
		if e.zero {
			clear(rest[:k])
		} else {
			dev := r.dev
			if e.dev != nil {
				dev = e.dev
			}
			n, err := dev.ReadAt(rest[:k], e.phys+(pos-e.log))
			if n < int(k) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return done + n, err
			}
		}
		done += int(k)
		i++
	}
	if want < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// sectionReader is a bounds-checked window of a ReaderAt that reports a
// short read past its end as io.EOF (like io.SectionReader, without the
// Seek state).
type sectionReader struct {
	r    io.ReaderAt
	off  int64
	size int64
}

func (s *sectionReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	if max := s.size - off; int64(len(p)) > max {
		n, err := s.r.ReadAt(p[:max], s.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return s.r.ReadAt(p, s.off+off)
}

// readFull reads exactly len(p) bytes at off or fails.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}
