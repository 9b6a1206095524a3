package xapisim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ahvfs/ahvfs/internal/sparsefile"
)

// extent is a half-open byte range [off, end).
type extent struct{ off, end int64 }

// dataExtents lists the data (non-hole) ranges of f within [0, end) with
// SEEK_DATA/SEEK_HOLE. Without hole support the whole range is data.
func dataExtents(f *os.File, end int64) ([]extent, error) {
	var out []extent
	fd := int(f.Fd())
	for off := int64(0); off < end; {
		d, err := sparsefile.Data(fd, off)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return []extent{{0, end}}, nil
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
		out = append(out, extent{d, h})
		off = h
	}
	return out, nil
}

// overlaps reports whether [off, off+n) meets one of the sorted extents.
func overlaps(exts []extent, off, n int64) bool {
	for _, e := range exts {
		if e.end <= off {
			continue
		}
		return e.off < off+n
	}
	return false
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

// readFull reads len(p) bytes at off; bytes past the end of the file read
// as zeros (disk files may be shorter than their virtual size).
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if err == io.EOF || (err == nil && n == len(p)) {
		clear(p[n:])
		return nil
	}
	return err
}

// copyDisk makes dst a point-in-time copy of src, size bytes long: a
// FICLONE reflink when the file system has them, else a sparse copy that
// keeps holes and skips all-zero 64 KiB blocks.
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

func sparseCopy(out, in *os.File, size int64) error {
	exts, err := dataExtents(in, size)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	const blk = 64 << 10
	for _, e := range exts {
		for off := e.off; off < e.end; {
			n := min(int64(len(buf)), e.end-off)
			b := buf[:n]
			if err := readFull(in, b, off); err != nil {
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

// allocated is a VDI's physical utilisation: the bytes its file occupies.
func (s *Sim) allocated(d *vdiRec) int64 {
	if d.File == "" {
		return 0
	}
	st, err := os.Stat(s.abs(d.File))
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Blocks * 512
	}
	return st.Size()
}

// fileCache keeps the disk files the NBD server reads open, one handle
// per file, until the VDI's data goes away or the simulator closes.
type fileCache struct {
	mu    sync.Mutex
	files map[string]*os.File
}

func (c *fileCache) init() { c.files = map[string]*os.File{} }

func (c *fileCache) get(path string) (*os.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[path]; f != nil {
		return f, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	c.files[path] = f
	return f, nil
}

// drop closes the cached handle of path (its file was replaced or
// removed); reads through it fail from now on.
func (c *fileCache) drop(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[path]; f != nil {
		f.Close()
		delete(c.files, path)
	}
}

func (c *fileCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, f := range c.files {
		f.Close()
		delete(c.files, p)
	}
}

// removeFile deletes a data or CBT file (and its cached handle).
func (s *Sim) removeFile(rel string) {
	if rel == "" {
		return
	}
	p := s.abs(rel)
	s.files.drop(p)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logf("remove %s: %v", p, err)
	}
}
