package clusterjob

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// Bandwidth caps the bytes per second a job moves to or from a cluster
// (`--bwlimit`), shared by all of the job's streams. The zero rate (a nil
// *Bandwidth) is unlimited.
type Bandwidth struct {
	l     *rate.Limiter
	burst int
}

// NewBandwidth limits to bytesPerSecond; 0 or less: nil (unlimited).
func NewBandwidth(bytesPerSecond int64) *Bandwidth {
	if bytesPerSecond <= 0 {
		return nil
	}
	// A burst of a tenth of a second, at least 64 KiB: smooth enough on a
	// link, coarse enough for 1 MiB reads not to wait in tiny steps.
	burst := int(min(max(bytesPerSecond/10, 64<<10), 1<<30))
	return &Bandwidth{l: rate.NewLimiter(rate.Limit(bytesPerSecond), burst), burst: burst}
}

// Wait blocks until n more bytes may move, or ctx ends.
func (b *Bandwidth) Wait(ctx context.Context, n int) error {
	if b == nil {
		return nil
	}
	for n > 0 {
		step := min(n, b.burst)
		if err := b.l.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}

// ReaderAt is a random-read source whose reads can be cancelled (an iSCSI
// LUN, a REST image download): what LimitReads wraps.
type ReaderAt interface {
	io.ReaderAt
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// WriterAt is the narrow random-write interface LimitWrites wraps.
type WriterAt interface {
	WriteAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

type limitedReader struct {
	r ReaderAt
	b *Bandwidth
}

func (l limitedReader) ReadAt(p []byte, off int64) (int, error) {
	return l.ReadAtContext(context.Background(), p, off)
}

func (l limitedReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := l.b.Wait(ctx, len(p)); err != nil {
		return 0, err
	}
	return l.r.ReadAtContext(ctx, p, off)
}

// LimitReads makes every read of r wait for its share of b (r itself
// when b is nil).
func LimitReads(r ReaderAt, b *Bandwidth) ReaderAt {
	if b == nil {
		return r
	}
	return limitedReader{r, b}
}

type limitedWriter struct {
	w WriterAt
	b *Bandwidth
}

func (l limitedWriter) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := l.b.Wait(ctx, len(p)); err != nil {
		return 0, err
	}
	return l.w.WriteAtContext(ctx, p, off)
}

// LimitWrites makes every write of w wait for its share of b (w itself
// when b is nil).
func LimitWrites(w WriterAt, b *Bandwidth) WriterAt {
	if b == nil {
		return w
	}
	return limitedWriter{w, b}
}
