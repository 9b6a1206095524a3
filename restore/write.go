package restore

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/iscsi"
)

// writeLUNs writes each disk's non-zero chunks into its LUN (luns[i]
// holds p.disks[i]) and flushes it.
func writeLUNs(ctx context.Context, src Source, luns []*iscsi.LUN, p *plan, o Options, bw *clusterjob.Bandwidth, res *Result) error {
	for i, d := range p.disks {
		lun := luns[i]
		w, err := writeDisk(ctx, src, p.rp, d.Disk, clusterjob.LimitWrites(lun, bw), lun, o)
		res.Disks[i].Written = w
		if err != nil {
			return fmt.Errorf("write %s to its LUN: %w", d.Disk.Name(), err)
		}
		if err := lun.Sync(ctx); err != nil {
			return fmt.Errorf("%s: SYNCHRONIZE CACHE: %w", d.Disk.Name(), err)
		}
	}
	return nil
}

// ChunkWriter is where writeDisk puts a disk's bytes: an iSCSI LUN, or
// anything WriteAt-shaped and safe for concurrent callers.
type ChunkWriter interface {
	WriteAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// syncer is a ChunkWriter with a write cache to flush (an iSCSI LUN:
// SYNCHRONIZE CACHE).
type syncer interface {
	Sync(ctx context.Context) error
}

// flushEvery is how many bytes writeDisk writes between the flushes it
// starts in the background, so that the target writes back while data
// still arrives and the final flush has only the tail left.
const flushEvery = 256 << 20

// writeDisk copies the non-zero chunks of d into w with o.Concurrency
// writes in flight and returns the bytes written. With sy (w's write
// cache), a flush is started every flushEvery bytes without waiting (the
// caller still flushes at the end).
func writeDisk(ctx context.Context, src Source, rp *engine.RestorePoint, d *engine.Disk, w ChunkWriter, sy syncer, o Options) (int64, error) {
	ids, err := src.ChunkIDs(ctx, d)
	if err != nil {
		return 0, err
	}
	dr, err := src.OpenDisk(ctx, rp, d.Index)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	cs := int64(src.ChunkSize())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		done    atomic.Int64
		written atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; cancel() })
	}
	var (
		flushing atomic.Bool
		flushes  sync.WaitGroup
	)
	flush := func() {
		if sy == nil || !flushing.CompareAndSwap(false, true) {
			return // one at a time; the next threshold catches up
		}
		flushes.Add(1)
		go func() {
			defer flushes.Done()
			defer flushing.Store(false)
			if err := sy.Sync(ctx); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("SYNCHRONIZE CACHE: %w", err))
			}
		}()
	}
	workers := min(o.Concurrency, max(1, len(ids)))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, cs)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(ids)) || ctx.Err() != nil {
					return
				}
				off := i * cs
				n := min(cs, d.Size-off)
				if !ids[i].IsZero() {
					b := buf[:n]
					if _, err := dr.ReadAtContext(ctx, b, off); err != nil && err != io.EOF {
						fail(err)
						return
					}
					if _, err := w.WriteAtContext(ctx, b, off); err != nil {
						fail(fmt.Errorf("at %d: %w", off, err))
						return
					}
					if t := written.Add(n); t/flushEvery != (t-n)/flushEvery {
						flush()
					}
				}
				if o.Progress != nil {
					o.Progress(d.Index, done.Add(n), d.Size)
				}
			}
		}()
	}
	wg.Wait()
	flushes.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return written.Load(), first
}

// diskStream reads a disk sequentially (the engine reads ahead in
// parallel) for an upload.
type diskStream struct {
	ctx      context.Context
	bw       *clusterjob.Bandwidth
	d        *engine.DiskReader
	off      int64
	size     int64
	err      error
	index    int
	progress func(int, int64, int64)
}

func (s *diskStream) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if int64(len(p)) > s.size-s.off {
		p = p[:s.size-s.off]
	}
	if err := s.bw.Wait(s.ctx, len(p)); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.d.ReadAtContext(s.ctx, p, s.off)
	s.off += int64(n)
	if s.progress != nil && n > 0 {
		s.progress(s.index, s.off, s.size)
	}
	if err == io.EOF && s.off >= s.size {
		err = nil
	}
	if err != nil {
		s.err = err
		return n, err
	}
	return n, nil
}
