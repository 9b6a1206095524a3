package prismsim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ahvfs/ahvfs/internal/sparsefile"
)

// extent is a half-open byte range [off, end).
type extent struct{ off, end int64 }

// dataExtents lists the data (non-hole) ranges of f within [start, end) using
// SEEK_DATA/SEEK_HOLE. Without hole support the whole range is data.
func dataExtents(f *os.File, start, end int64) ([]extent, error) {
	var out []extent
	fd := int(f.Fd())
	off := start
	for off < end {
		d, err := sparsefile.Data(fd, off)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break // only a hole remains
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return []extent{{start, end}}, nil
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
		if h > end {
			h = end
		}
		out = append(out, extent{d, h})
		off = h
	}
	return out, nil
}

func allZero(b []byte) bool {
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

// copyDisk makes dst a point-in-time copy of src of the given size (0: src's
// size): a FICLONE reflink when the filesystem supports it, else a sparse
// copy that skips holes and all-zero 64 KiB blocks. dst is replaced.
func copyDisk(dst, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	if size < st.Size() {
		size = st.Size()
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
		if err := sparseCopy(out, in, st.Size()); err != nil {
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

func sparseCopy(out, in *os.File, size int64) error {
	exts, err := dataExtents(in, 0, size)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	const blk = 64 << 10
	for _, e := range exts {
		for off := e.off; off < e.end; {
			n := min(int64(len(buf)), e.end-off)
			b := buf[:n]
			if _, err := in.ReadAt(b, off); err != nil && err != io.EOF {
				return err
			}
			for i := int64(0); i < n; i += blk {
				j := min(i+blk, n)
				if allZero(b[i:j]) {
					continue
				}
				if _, err := out.WriteAt(b[i:j], off+i); err != nil {
					return err
				}
			}
			off += n
		}
	}
	return nil
}

// blankDisk creates an empty (sparse) disk file of size bytes.
func blankDisk(path string, size int64) error {
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

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
