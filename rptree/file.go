package rptree

import (
	"context"
	"io"
	"io/fs"
	"sync"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/rofile"
)

// File is an open file or directory of a Tree. ReadAt, ReadAtContext,
// ReadSpan, SeekData and SeekHole are safe for concurrent callers and
// take no lock; Read and Seek share one position.
type File struct {
	t       *Tree
	e       *entry
	info    fs.FileInfo
	src     rofile.ReaderAtContext // nil for directories and symlinks
	content *rofile.Content
	release func()
	dir     rofile.Dir

	mu     sync.Mutex
	closed bool
}

var (
	_ fs.ReadDirFile = (*File)(nil)
	_ io.ReaderAt    = (*File)(nil)
	_ io.ReadSeeker  = (*File)(nil)
)

// Stat returns the file's FileInfo.
func (f *File) Stat() (fs.FileInfo, error) { return f.info, nil }

// Path is the tree path the file was opened by.
func (f *File) Path() string { return f.e.path }

// RestorePoint is the restore point the file belongs to (nil above
// restore points).
func (f *File) RestorePoint() *engine.RestorePoint { return f.e.rp }

// Close releases the file's disk. It is idempotent.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed && f.release != nil {
		f.release()
	}
	f.closed = true
	return nil
}

// ReadAt implements io.ReaderAt.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	return f.content.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off; it returns io.EOF when fewer
// remain. Errors wrap engine.ErrCorrupt for damaged data, ErrNotRegular
// for a directory.
func (f *File) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return f.content.ReadAtContext(ctx, p, off)
}

// Read reads from the current position.
func (f *File) Read(p []byte) (int, error) { return f.content.Read(p) }

// Seek sets the position for Read.
func (f *File) Seek(offset int64, whence int) (int64, error) { return f.content.Seek(offset, whence) }

// spanReader is what a disk reader offers to read without copying.
type spanReader interface {
	ReadSpan(ctx context.Context, s *engine.Span, off int64, n int) error
}

// ReadSpan sets s to the file's bytes in [off, off+n) without copying
// them: they are shared with the engine's chunk cache until s is released
// (by the caller, also after an error). Only disks (disk-N.raw) can; for
// other files ok is false and nothing is read: use ReadAtContext. Past the
// end of the disk s holds fewer bytes, without an error.
func (f *File) ReadSpan(ctx context.Context, s *engine.Span, off int64, n int) (ok bool, err error) {
	sr, ok := f.src.(spanReader)
	if !ok {
		return false, nil
	}
	if err := sr.ReadSpan(ctx, s, off, n); err != nil && err != io.EOF {
		return true, &fs.PathError{Op: "read", Path: f.e.path, Err: err}
	}
	return true, nil
}

// dataHoleSeeker is what a disk reader offers for SEEK_DATA/SEEK_HOLE.
type dataHoleSeeker interface {
	SeekData(ctx context.Context, off int64) (int64, error)
	SeekHole(ctx context.Context, off int64) (int64, error)
}

// SeekData returns the first offset at or after off that holds data
// (lseek SEEK_DATA), or io.EOF when there is none. A disk's holes are the
// chunks its manifest records as zero; other files are all data.
func (f *File) SeekData(ctx context.Context, off int64) (int64, error) {
	return f.seekDataHole(ctx, off, false)
}

// SeekHole returns the first offset at or after off that starts a hole
// (lseek SEEK_HOLE; the end of the file counts as one), or io.EOF when
// off is at or past the end.
func (f *File) SeekHole(ctx context.Context, off int64) (int64, error) {
	return f.seekDataHole(ctx, off, true)
}

func (f *File) seekDataHole(ctx context.Context, off int64, hole bool) (int64, error) {
	size := f.content.Size()
	if off < 0 || off >= size {
		return 0, io.EOF
	}
	if s, ok := f.src.(dataHoleSeeker); ok {
		var pos int64
		var err error
		if hole {
			pos, err = s.SeekHole(ctx, off)
		} else {
			pos, err = s.SeekData(ctx, off)
		}
		if err != nil && err != io.EOF {
			err = &fs.PathError{Op: "seek", Path: f.e.path, Err: err}
		}
		return pos, err
	}
	if hole {
		return size, nil
	}
	return off, nil
}

// ReadDir reads the directory's entries in name order (fs.ReadDirFile).
func (f *File) ReadDir(n int) ([]fs.DirEntry, error) {
	if !f.info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: f.e.path, Err: ErrNotDir}
	}
	return f.dir.ReadDir(n, func() ([]fs.DirEntry, error) { return f.t.readDir(context.Background(), f.e) })
}
