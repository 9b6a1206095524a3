package cbt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// Sink receives a disk's content; *engine.DiskWriter implements it. Its
// methods must be safe for concurrent calls on distinct chunks.
type Sink interface {
	WriteAt(ctx context.Context, data []byte, off int64) error
	Zero(off, n int64) error
	Unchanged(ctx context.Context, off, n int64) error
	ChunkSize() int
	Size() int64
}

// Options tune Ingest. Zero means default.
type Options struct {
	// Workers read, hash and compress in parallel (default: CPUs, at least
	// 2); patched chunks get twice as many workers besides.
	Workers int
	// ReadSize is the unit of one read, a multiple of the chunk size
	// (default: the chunk size rounded up to 4 MiB).
	ReadSize int
	// Progress, when set, is called after each unit with the bytes of the
	// plan completed so far (read, zero and unchanged alike). Calls come
	// from the workers one at a time, with growing values.
	Progress func(done int64)
	// Base is the parent restore point's disk, where Patch extents take
	// their unchanged bytes from; required when the plan has any.
	Base io.ReaderAt
}

// Stats report what Ingest did.
type Stats struct {
	ReadBytes      int64 // from the source
	ZeroBytes      int64
	UnchangedBytes int64
	PatchedBytes   int64 // of chunks completed from Base
}

// Ingest executes plan: it reads the Read extents from src with several
// reads in flight and hands them to dst, completes Patch chunks (their
// parts from src, the rest from o.Base), and records Zero and Unchanged
// extents. Memory is bounded by Workers × ReadSize. The first error stops
// the work and is returned. A src that implements ContextReaderAt (an
// iSCSI LUN, a REST download, an engine disk) is read with Ingest's
// context, so cancelling ctx also abandons reads in flight.
func Ingest(ctx context.Context, src io.ReaderAt, plan Plan, dst Sink, o Options) (Stats, error) {
	var st Stats
	cs := dst.ChunkSize()
	if err := plan.Validate(dst.Size(), cs); err != nil {
		return st, err
	}
	if o.Workers <= 0 {
		o.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if o.ReadSize <= 0 {
		o.ReadSize = max(cs, 4<<20)
	}
	o.ReadSize = (o.ReadSize + cs - 1) / cs * cs
	if o.Base == nil && plan.Bytes(Patch) > 0 {
		return st, errors.New("ingest: the plan patches chunks but no base disk was given")
	}
	var (
		progressMu sync.Mutex
		done       int64
	)
	report := func(n int64) {
		progressMu.Lock()
		defer progressMu.Unlock()
		done += n
		if o.Progress != nil {
			o.Progress(done)
		}
	}
	for _, e := range plan {
		switch e.Kind {
		case Zero:
			if err := dst.Zero(e.Off, e.Len); err != nil {
				return st, err
			}
			st.ZeroBytes += e.Len
			report(e.Len)
		case Unchanged:
			if err := dst.Unchanged(ctx, e.Off, e.Len); err != nil {
				return st, err
			}
			st.UnchangedBytes += e.Len
			report(e.Len)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Patched chunks get workers of their own, twice as many: each waits
	// for two reads in turn (the parent chunk, then the changed parts), so
	// they keep the CPUs busy only with more of them in flight.
	units := make(chan Extent, o.Workers)
	var patches chan Extent
	if plan.Bytes(Patch) > 0 {
		patches = make(chan Extent, 2*o.Workers)
	}
	var wg sync.WaitGroup
	var readBytes, patched atomic.Int64
	work := func(in <-chan Extent, bufSize int) {
		defer wg.Done()
		buf := make([]byte, bufSize)
		for u := range in {
			b := buf[:u.Len]
			var err error
			if u.Kind == Patch {
				err = patch(ctx, src, o.Base, b, u, &readBytes)
				patched.Add(u.Len)
			} else if _, err = readFull(ctx, src, b, u.Off); err != nil {
				err = fmt.Errorf("read source at %d (+%d): %w", u.Off, u.Len, err)
			} else {
				readBytes.Add(u.Len)
			}
			if err != nil {
				cancel(err)
				return
			}
			if err := dst.WriteAt(ctx, b, u.Off); err != nil {
				cancel(err)
				return
			}
			report(u.Len)
		}
	}
	wg.Add(o.Workers)
	for range o.Workers {
		go work(units, o.ReadSize)
	}
	if patches != nil {
		wg.Add(2 * o.Workers)
		for range 2 * o.Workers {
			go work(patches, cs)
		}
	}
feed:
	for _, e := range plan {
		if e.Kind == Patch {
			select {
			case patches <- e:
			case <-ctx.Done():
				break feed
			}
			continue
		}
		if e.Kind != Read {
			continue
		}
		for off := e.Off; off < e.Off+e.Len; off += int64(o.ReadSize) {
			u := Extent{Off: off, Len: min(int64(o.ReadSize), e.Off+e.Len-off), Kind: Read}
			select {
			case units <- u:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(units)
	if patches != nil {
		close(patches)
	}
	wg.Wait()
	st.ReadBytes, st.PatchedBytes = readBytes.Load(), patched.Load()
	if err := context.Cause(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// patch fills b with chunk u: the base's bytes, overwritten by u's parts
// (read from src, or zeros).
func patch(ctx context.Context, src, base io.ReaderAt, b []byte, u Extent, read *atomic.Int64) error {
	if _, err := readFull(ctx, base, b, u.Off); err != nil {
		return fmt.Errorf("read the parent restore point at %d (+%d): %w", u.Off, u.Len, err)
	}
	for _, pt := range u.Parts {
		p := b[pt.Off-u.Off : pt.Off-u.Off+pt.Len]
		if pt.Zeroed {
			clear(p)
			continue
		}
		if _, err := readFull(ctx, src, p, pt.Off); err != nil {
			return fmt.Errorf("read source at %d (+%d): %w", pt.Off, pt.Len, err)
		}
		read.Add(pt.Len)
	}
	return nil
}

// ContextReaderAt is an io.ReaderAt whose reads can be cancelled. Ingest
// prefers ReadAtContext when its source has it. Implementations must be
// safe for concurrent callers, like io.ReaderAt.
type ContextReaderAt interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// readFull reads len(b) bytes at off; a short source is an error.
func readFull(ctx context.Context, src io.ReaderAt, b []byte, off int64) (int, error) {
	var n int
	var err error
	if c, ok := src.(ContextReaderAt); ok {
		n, err = c.ReadAtContext(ctx, b, off)
	} else {
		n, err = src.ReadAt(b, off)
	}
	if n == len(b) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
