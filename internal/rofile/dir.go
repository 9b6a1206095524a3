package rofile

import (
	"io"
	"io/fs"
	"sync"
)

// Dir is an open directory's position for fs.ReadDirFile.ReadDir: its
// entries are listed once, on the first call, then handed out in pages.
// The zero value is ready to use; a Dir is safe for concurrent callers.
type Dir struct {
	mu     sync.Mutex
	listed bool
	list   []fs.DirEntry
	err    error
	off    int
}

// ReadDir implements fs.ReadDirFile.ReadDir with list, which is called
// once to list the directory (its error is returned by every call). With
// n > 0 it returns at most n entries, and io.EOF at the end; with n <= 0,
// all the remaining entries.
func (d *Dir) ReadDir(n int, list func() ([]fs.DirEntry, error)) ([]fs.DirEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.listed {
		d.list, d.err = list()
		d.listed = true
	}
	if d.err != nil {
		return nil, d.err
	}
	rest := d.list[d.off:]
	if n <= 0 {
		d.off = len(d.list)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n:n], nil
}
