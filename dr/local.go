package dr

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Local is a repository opened in this process, as either side of a sync
// (a Target must be opened writable).
type Local struct {
	R *engine.Repository
	// Own closes R with the endpoint.
	Own bool
	// AppendOnly is reported in Info (ahvfs serve --append-only).
	AppendOnly bool
}

// Info implements Source and Target.
func (l *Local) Info(ctx context.Context) (Info, error) {
	return Info{RepoID: l.R.Config().ID, TransferKey: l.R.TransferKey(), Location: l.R.Location(), AppendOnly: l.AppendOnly,
		ChunkSize: l.R.ChunkSize()}, nil
}

// Points implements Source and Target.
func (l *Local) Points(ctx context.Context) ([]Point, error) {
	vms, err := l.R.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Point
	for _, vm := range vms {
		rps, err := l.R.ListRestorePoints(ctx, vm.Name)
		if err != nil {
			return nil, err
		}
		for _, rp := range rps {
			out = append(out, Point{RestorePoint: rp, LockedUntil: rp.LockedUntil})
		}
	}
	return out, nil
}

// PageIDs implements Source.
func (l *Local) PageIDs(ctx context.Context, pages []engine.ID) ([][]engine.ID, error) {
	out := make([][]engine.ID, len(pages))
	for i, p := range pages {
		ids, err := l.R.PageIDs(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		out[i] = ids
	}
	return out, nil
}

// readers is how many blobs a local source reads at once.
const readers = 4

// ReadBlobs implements Source.
func (l *Local) ReadBlobs(ctx context.Context, ids []engine.ID, fn func(*engine.StoredBlob) error) error {
	return parallel(ctx, readers, len(ids), func(ctx context.Context, i int) error {
		b, err := l.R.ReadStoredBlob(ctx, ids[i], nil)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		return fn(&b)
	})
}

// Have implements Target.
func (l *Local) Have(ctx context.Context, ids []engine.ID, check bool) ([]bool, error) {
	return l.R.HaveBlobs(ctx, ids, check)
}

// StoreBlobs implements Target: blobs are checked (decoded and hashed) on
// every core.
func (l *Local) StoreBlobs(ctx context.Context, replace bool, in <-chan *engine.StoredBlob) (int, error) {
	return storeAll(ctx, l.R, replace, in)
}

// storeAll stores blobs from in on every core until in closes, and drains
// in after a failure so its sender never blocks.
func storeAll(ctx context.Context, r *engine.Repository, replace bool, in <-chan *engine.StoredBlob) (int, error) {
	var (
		mu       sync.Mutex
		n        int
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range in {
				if ctx.Err() != nil {
					continue
				}
				stored, err := r.StoreBlob(ctx, *b, replace)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("target: %w", err)
					cancel()
				}
				if stored {
					n++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return n, firstErr
}

// WholePacks implements PackSource.
func (l *Local) WholePacks(ctx context.Context, ids []engine.ID) (map[engine.PackID][]engine.ID, []engine.ID, error) {
	return l.R.WholePacks(ctx, ids)
}

// ReadPack implements PackSource.
func (l *Local) ReadPack(ctx context.Context, id engine.PackID, buf []byte) ([]byte, error) {
	return l.R.ReadPack(ctx, id, buf)
}

// PrefetchPack implements packPrefetcher.
func (l *Local) PrefetchPack(ctx context.Context, id engine.PackID) { l.R.PrefetchPack(ctx, id) }

// AdoptPack implements PackTarget.
func (l *Local) AdoptPack(ctx context.Context, id engine.PackID, data []byte) (int, error) {
	return l.R.AdoptPack(ctx, id, data)
}

// Flush implements Target.
func (l *Local) Flush(ctx context.Context) error { return l.R.FlushBlobs(ctx) }

// Adopt implements Target.
func (l *Local) Adopt(ctx context.Context, p Point) error {
	rp := *p.RestorePoint
	rp.LockedUntil = p.LockedUntil
	return l.R.AdoptRestorePoint(ctx, &rp)
}

// Lock implements Target.
func (l *Local) Lock(ctx context.Context, name string, until time.Time) error {
	rp, err := l.R.Resolve(ctx, name)
	if err != nil {
		return err
	}
	return l.R.LockRestorePoint(ctx, rp, until)
}

// Close implements Source and Target.
func (l *Local) Close() error {
	if l.Own {
		return l.R.Close()
	}
	return nil
}

// packBufs holds spare buffers of whole packs (tens of MiB each). It is a
// free list rather than a sync.Pool, which every GC empties: allocating,
// page-faulting and zeroing a pack's buffer again cost a sync a tenth of
// its time. It keeps at most as many as a sync and a server have in
// flight.
var packBufs = make(chan []byte, 8)

// getPackBuf returns a spare buffer, or nil when there is none.
func getPackBuf() []byte {
	select {
	case b := <-packBufs:
		return b[:0]
	default:
		return nil
	}
}

// putPackBuf keeps b for a later getPackBuf (or drops it when enough are
// kept).
func putPackBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	select {
	case packBufs <- b:
	default:
	}
}

// parallel runs fn(i) for i in [0, n) on up to workers goroutines and
// returns the first error (the others are cancelled).
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
