package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// Every blocking read and write of the CLI returns when the root context is
// cancelled (SIGINT/SIGTERM), even when the system call under it cannot be
// interrupted: a pipe nobody reads, a FIFO nobody writes, a hung block
// device or network file. The call then goes on in a goroutine the
// process abandons: main exits right after.

// cancelable runs f and returns its result, or ctx's error as soon as ctx
// is done (f then finishes unobserved; it must own what it touches).
func cancelable[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, context.Cause(ctx)
	}
}

// ctxWriter is a writer whose Write returns when ctx is done. After an
// error the caller must not reuse the buffer it passed.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (w ctxWriter) Write(p []byte) (int, error) {
	return cancelable(w.ctx, func() (int, error) { return w.w.Write(p) })
}

// ctxReader is a reader whose Read returns when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	return cancelable(r.ctx, func() (int, error) { return r.r.Read(p) })
}

// ctxFile is an image file read by import: cbt.Ingest calls ReadAtContext,
// which returns when the job is cancelled even if the read hangs.
type ctxFile struct{ *os.File }

func (f ctxFile) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return cancelable(ctx, func() (int, error) { return f.ReadAt(p, off) })
}

// readFileContext reads a small file (a password, a configuration) of at
// most limit bytes; it returns when ctx is done, so a FIFO nobody writes
// to does not hang the command.
func readFileContext(ctx context.Context, path string, limit int64) ([]byte, error) {
	return cancelable(ctx, func() ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("read %s: larger than %s", path, formatSize(limit))
		}
		return b, nil
	})
}
