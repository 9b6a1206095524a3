package simkit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ahvfs/ahvfs/internal/sparsefile"
)

// InitStateDir makes a simulator's state directory dir and the
// subdirectories named, and returns dir's absolute path.
func InitStateDir(dir string, subdirs ...string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for _, d := range append([]string{""}, subdirs...) {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// Extent is a half-open byte range [Off, End) of a file.
type Extent struct{ Off, End int64 }

// DataExtents lists the data (non-hole) ranges of f within [start, end),
// in order, with SEEK_DATA/SEEK_HOLE. On a file system without hole
// support the whole range is data.
func DataExtents(f *os.File, start, end int64) ([]Extent, error) {
	var out []Extent
	fd := int(f.Fd())
	for off := start; off < end; {
		d, err := sparsefile.Data(fd, off)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break // only a hole remains
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return []Extent{{start, end}}, nil
			}
			return nil, fmt.Errorf("seek data %s: %w", f.Name(), err)
		}
		if d >= end {
			break
		}
		h, err := sparsefile.Hole(fd, d)
		if err != nil {
			return nil, fmt.Errorf("seek hole %s: %w", f.Name(), err)
		}
		h = min(h, end)
		out = append(out, Extent{d, h})
		off = h
	}
	return out, nil
}

// AllZero reports whether every byte of b is zero.
func AllZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ReadFull reads len(p) bytes at off; bytes past the end of the file read
// as zeros (a disk file may be shorter than its disk).
func ReadFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if err == io.EOF || (err == nil && n == len(p)) {
		clear(p[n:])
		return nil
	}
	return err
}

// CopyDisk makes dst a point-in-time copy of src, size bytes long: src's
// first size bytes, then zeros when src is shorter. It clones src with
// FICLONE (a reflink) when the file system can, else copies it sparsely,
// keeping holes and skipping all-zero 64 KiB blocks. dst is written as
// dst.tmp and renamed over dst, so it is the old file or the new one.
func CopyDisk(dst, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(tmp)
		}
	}()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if err := sparseCopy(out, in, min(st.Size(), size)); err != nil {
			return fmt.Errorf("copy disk %s: %w", src, err)
		}
	}
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	ok = true
	return os.Rename(tmp, dst)
}

// sparseCopy writes the non-zero 64 KiB blocks of in's first size bytes
// to the same offsets of out.
func sparseCopy(out, in *os.File, size int64) error {
	exts, err := DataExtents(in, 0, size)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, e := range exts {
		for off := e.Off; off < e.End; {
			n := min(int64(len(buf)), e.End-off)
			b := buf[:n]
			if err := ReadFull(in, b, off); err != nil {
				return err
			}
			if _, err := WriteSparse(out, b, off); err != nil {
				return err
			}
			off += n
		}
	}
	return nil
}

// sparseBlock is the granularity at which sparse writes skip zeros.
const sparseBlock = 64 << 10

// WriteSparse writes p at off but for its all-zero 64 KiB pieces (from
// the start of p), which it skips: over a hole, or a file being filled,
// they stay holes. n counts the bytes of p dealt with before an error.
func WriteSparse(w io.WriterAt, p []byte, off int64) (n int, err error) {
	for i := 0; i < len(p); i += sparseBlock {
		j := min(i+sparseBlock, len(p))
		if AllZero(p[i:j]) {
			continue
		}
		if _, err := w.WriteAt(p[i:j], off+int64(i)); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// BlankDisk creates (or empties) the disk file path, size bytes of holes,
// and the directories above it.
func BlankDisk(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
