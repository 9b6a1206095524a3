package xapisim

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// overlaps reports whether [off, off+n) meets one of the sorted extents.
func overlaps(exts []simkit.Extent, off, n int64) bool {
	for _, e := range exts {
		if e.End <= off {
			continue
		}
		return e.Off < off+n
	}
	return false
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
