package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"time"
)

// Backend stores the repository's objects. Its methods are safe for
// concurrent use.
type Backend interface {
	// Put stores size bytes read from data (at offsets 0 to size) as the
	// object name, replacing any object of that name. It is atomic and
	// durable when it returns nil: until then readers see the previous
	// object (or none), afterwards the new one, and a crash at any moment
	// leaves the previous object or the complete new one, never a part.
	//
	// Put may read data more than once and from several goroutines (a
	// retry, a multipart upload), but not after it returns. data yielding
	// fewer than size bytes is an error and stores nothing.
	//
	// When Put returns an error the object is normally unchanged. An error
	// from a step after the new object became visible (the final directory
	// sync of Local, a lost reply from a remote store) can leave the new
	// object in place; a caller that must know Stats or reads it again.
	//
	// Overwriting is allowed (config.json is rewritten when a repository is
	// upgraded; the engine writes its other objects once). On Local
	// a name cannot be both an object and a directory of other objects'
	// names ("a" and "a/b"): that Put fails.
	Put(ctx context.Context, name string, data io.ReaderAt, size int64) error

	// Open opens an object for reading. A missing object is an error
	// satisfying errors.Is(err, ErrNotExist). ctx bounds the Open call only:
	// the Object's reads do not use it (a cache may keep an Object open
	// across many requests).
	Open(ctx context.Context, name string) (Object, error)

	// Stat describes an object; a missing one is ErrNotExist.
	Stat(ctx context.Context, name string) (Info, error)

	// List yields every object whose name starts with prefix, sorted by
	// name (byte order). The empty prefix lists everything. An error
	// (an invalid prefix, ctx done, an I/O failure) is yielded once, with a
	// zero Info, and ends the sequence. Objects stored or deleted while a
	// listing runs may or may not appear in it.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]

	// Delete removes an object. Deleting a missing object is not an error.
	// It is durable when it returns.
	Delete(ctx context.Context, name string) error

	// Close releases the backend. Later calls fail with an error
	// satisfying errors.Is(err, fs.ErrClosed); Objects opened earlier stay
	// usable until they are closed. Closing twice returns nil.
	Close() error

	// String names the backend for messages: "local /srv/repo".
	String() string
}

// Object is an open object. ReadAt behaves like os.File's: it is safe for
// concurrent callers, a read cut short by the end returns the bytes before
// it with io.EOF (one that ends exactly there returns nil or io.EOF), a
// read at or past the end returns 0, io.EOF, and a negative offset is an
// error.
//
// An Object reads the object as it was when it was opened, or fails: if
// the object is overwritten meanwhile, it never returns a mix of the two
// (S3 fails such a read with ErrChanged).
type Object interface {
	io.ReaderAt
	// Size is the object's length in bytes.
	Size() int64
	// Close releases the Object; later reads fail.
	Close() error
}

// Prefetcher is implemented by Objects that can take a hint that a range
// will be read soon (Local: the kernel starts reading it into the page
// cache). The hint never fails and may be ignored.
type Prefetcher interface {
	Prefetch(off, n int64)
}

// Viewer is implemented by Objects that can lend bytes they hold in
// memory (S3's read cache) instead of copying them into the caller's
// buffer. View returns the n bytes at off and a function to call once
// done with them (the bytes must not be used after it, nor modified), or
// ok false when the caller should use ReadAt.
type Viewer interface {
	View(off, n int64) (b []byte, release func(), ok bool)
}

// Info describes an object.
type Info struct {
	Name    string
	Size    int64
	ModTime time.Time // when it was stored; Local: the file's mtime
}

var (
	// ErrNotExist is the error a missing object satisfies (fs.ErrNotExist,
	// so os.IsNotExist-style checks work as well).
	ErrNotExist = fs.ErrNotExist
	// ErrInvalidName is the error an invalid name or prefix satisfies.
	ErrInvalidName = errors.New("invalid object name")
	// ErrChanged is the error of a read of an object that was overwritten
	// since it was opened, by a backend that cannot read the old version.
	ErrChanged = errors.New("the object changed since it was opened")
)

// Get reads an object whole; a missing one is ErrNotExist. An object
// overwritten between its Open and its read (ErrChanged) is read again.
func Get(ctx context.Context, b Backend, name string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		data, err := getOnce(ctx, b, name)
		if !errors.Is(err, ErrChanged) || attempt >= 10 {
			return data, err
		}
	}
}

func getOnce(ctx context.Context, b Backend, name string) ([]byte, error) {
	o, err := b.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	buf := make([]byte, o.Size())
	n, err := o.ReadAt(buf, 0)
	if n == len(buf) {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %d of %d bytes", io.ErrUnexpectedEOF, n, len(buf))
	}
	return nil, fmt.Errorf("get %s: %w", name, err)
}

// PutBytes stores data as the object name (Backend.Put with a byte slice).
func PutBytes(ctx context.Context, b Backend, name string, data []byte) error {
	return b.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
}

// ListAll returns every object whose name starts with prefix, sorted by
// name.
func ListAll(ctx context.Context, b Backend, prefix string) ([]Info, error) {
	var out []Info
	for info, err := range b.List(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// checkSize refuses a negative Put size.
func checkSize(op, name string, size int64) error {
	if size < 0 {
		return fmt.Errorf("%s %s: negative size %d", op, name, size)
	}
	return nil
}

// shortData is the error for data that ends before size.
func shortData(got, size int64) error {
	return fmt.Errorf("%w: data holds %d of %d bytes", io.ErrUnexpectedEOF, got, size)
}

// errClosed is the error of a call on a closed backend.
func errClosed(op, name string) error {
	return fmt.Errorf("%s %s: backend %w", op, name, fs.ErrClosed)
}
