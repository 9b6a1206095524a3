package rofile

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"sync"
)

// ErrNotRegular is wrapped by the errors of reading a Reader without a
// source (a directory or a symbolic link).
var ErrNotRegular = errors.New("not a regular file")

// ReaderAtContext is a random-access source that takes a context; it must
// be safe for concurrent callers.
type ReaderAtContext interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// WithoutContext adapts an io.ReaderAt, which ignores the context.
func WithoutContext(r io.ReaderAt) ReaderAtContext { return ctxless{r} }

type ctxless struct{ r io.ReaderAt }

func (c ctxless) ReadAtContext(_ context.Context, p []byte, off int64) (int, error) {
	return c.r.ReadAt(p, off)
}

// Content is the content of a file of a known size. The zero value is not
// usable; call NewContent.
type Content struct {
	path string
	size int64
	src  ReaderAtContext // nil: not a regular file

	mu  sync.Mutex
	off int64
}

var (
	_ io.ReaderAt   = (*Content)(nil)
	_ io.ReadSeeker = (*Content)(nil)
)

// NewContent returns the content of the file at path (used in errors),
// size bytes read from src. A nil src makes every read fail with
// ErrNotRegular.
func NewContent(path string, size int64, src ReaderAtContext) *Content {
	return &Content{path: path, size: size, src: src}
}

// Size is the file's size in bytes.
func (r *Content) Size() int64 { return r.size }

// ReadAt implements io.ReaderAt.
func (r *Content) ReadAt(p []byte, off int64) (int, error) {
	return r.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off; it returns io.EOF when fewer
// remain. A source that returns fewer bytes than the size promises (with
// io.EOF or without an error) gives io.ErrUnexpectedEOF.
func (r *Content) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if r.src == nil {
		return 0, &fs.PathError{Op: "read", Path: r.path, Err: ErrNotRegular}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: r.path, Err: fs.ErrInvalid}
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > r.size-off {
		want = p[:r.size-off]
	}
	n, err := r.src.ReadAtContext(ctx, want, off)
	if n < len(want) && (err == nil || err == io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && !(err == io.EOF && n == len(want)) {
		return n, &fs.PathError{Op: "read", Path: r.path, Err: err}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read reads from the current position and advances it.
func (r *Content) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.src == nil {
		return 0, &fs.PathError{Op: "read", Path: r.path, Err: ErrNotRegular}
	}
	if r.off >= r.size {
		return 0, io.EOF
	}
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek sets the position for Read (io.SeekStart, io.SeekCurrent,
// io.SeekEnd); a position past the end is allowed and reads io.EOF.
func (r *Content) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, &fs.PathError{Op: "seek", Path: r.path, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: r.path, Err: fs.ErrInvalid}
	}
	r.off = offset
	return offset, nil
}
