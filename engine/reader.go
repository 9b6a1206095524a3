package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// lookup returns where a blob is stored.
func (r *Repository) lookup(id ID) (location, error) {
	v, err := r.indexGet(chunkKey(id))
	if err != nil {
		return location{}, fmt.Errorf("chunk %s: %w", id.Short(), err)
	}
	l, err := decodeLocation(v)
	if err != nil {
		return l, fmt.Errorf("chunk %s: %w", id.Short(), err)
	}
	return l, nil
}

// loadBlob reads and decodes a blob, checking it against its ID. Damaged
// stored bytes are rebuilt in memory from parity when it can (with a
// warning); damage beyond parity is ErrCorrupt.
func (r *Repository) loadBlob(ctx context.Context, id ID, dst []byte) ([]byte, location, error) {
	// A load is shared by every reader of the blob (chunk, page): one
	// reader giving up must not fail the others.
	ctx = context.WithoutCancel(ctx)
	l, f, release, err := r.openBlobPack(ctx, id)
	if err != nil {
		return nil, l, err
	}
	if v, ok := f.(backend.Viewer); ok {
		// Decoded straight from the bytes the backend holds (S3's read
		// cache); the output never aliases them.
		if stored, done, ok := v.View(int64(l.Offset), int64(l.Stored)); ok {
			out, err := r.codec.decodeAt(dst, stored, l, id, r.hash)
			done()
			release()
			if err != nil {
				return r.loadDamagedBlob(ctx, id, l, dst, fmt.Errorf("pack %s: %w", l.Pack, err))
			}
			return out, l, nil
		}
	}
	sp := r.storedBufs.Get().(*[]byte)
	defer r.storedBufs.Put(sp)
	if cap(*sp) < int(l.Stored) {
		*sp = make([]byte, l.Stored)
	}
	stored := (*sp)[:l.Stored]
	_, err = f.ReadAt(stored, int64(l.Offset))
	release()
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: pack %s ends before the chunk", ErrCorrupt, l.Pack)
	}
	if err != nil {
		return r.loadDamagedBlob(ctx, id, l, dst, fmt.Errorf("chunk %s: read pack %s at %d: %w", id.Short(), l.Pack, l.Offset, err))
	}
	out, err := r.codec.decodeAt(dst, stored, l, id, r.hash)
	if err != nil {
		// Damaged stored bytes: rebuild them from parity when it can.
		return r.loadDamagedBlob(ctx, id, l, dst, fmt.Errorf("pack %s: %w", l.Pack, err))
	}
	return out, l, nil
}

// openBlobPack looks blob id up and opens the pack that holds it. A
// reader whose pack is gone may have looked it up in an index a gc has
// since replaced (gc deletes a pack once no reader holds an older index,
// and a reader that refreshed between its lookup and its open holds none):
// it refreshes its index and looks again, as long as the blob moves.
func (r *Repository) openBlobPack(ctx context.Context, id ID) (location, backend.Object, func(), error) {
	for attempt := 0; ; attempt++ {
		l, err := r.lookup(id)
		if err != nil {
			return l, nil, nil, err
		}
		f, release, err := r.files.get(ctx, l.Pack)
		if err == nil {
			return l, f, release, nil
		}
		if !r.writable && errors.Is(err, backend.ErrNotExist) && attempt < 3 {
			if _, rerr := r.Refresh(ctx); rerr == nil {
				if l2, lerr := r.lookup(id); lerr == nil && l2.Pack != l.Pack {
					continue
				}
			}
		}
		return l, nil, nil, fmt.Errorf("chunk %s: %w", id.Short(), err)
	}
}

// chunk returns a decoded chunk from the cache or the pack, held for the
// caller, who must release it and not modify its bytes.
func (r *Repository) chunk(ctx context.Context, id ID) (*chunkBuf, error) {
	for {
		if b, ok := r.chunks.lru.get(id); ok {
			return b, nil
		}
		b, err := r.chunks.flight.do(id, func() (*chunkBuf, error) {
			if b, ok := r.chunks.lru.get(id); ok {
				b.release() // each caller holds it below
				return b, nil
			}
			out, _, err := r.loadBlob(ctx, id, r.chunks.buffer())
			if err != nil {
				return nil, err
			}
			b := &chunkBuf{b: out, c: r.chunks}
			b.refs.Store(1) // the cache's
			if !r.chunks.lru.add(id, b) {
				b.release()
			}
			return b, nil
		})
		if err != nil {
			return nil, err
		}
		// Every caller of the flight takes its own reference. In the rare
		// case the chunk left the cache (and was recycled) before that,
		// load it again.
		if b.tryHold() {
			return b, nil
		}
	}
}

// page returns a decoded manifest page.
func (r *Repository) page(ctx context.Context, id ID) ([]ID, error) {
	if id.IsZero() {
		return nil, nil
	}
	if p, ok := r.pages.lru.get(id); ok {
		return p, nil
	}
	return r.pages.flight.do(id, func() ([]ID, error) {
		b, _, err := r.loadBlob(ctx, id, nil)
		if err != nil {
			return nil, fmt.Errorf("manifest page: %w", err)
		}
		ids, err := decodePage(b, r.cfg.PageEntries)
		if err != nil {
			return nil, err
		}
		r.pages.lru.add(id, ids)
		return ids, nil
	})
}

// diskChunkIDs expands a disk's manifest into its chunk IDs.
func (r *Repository) diskChunkIDs(ctx context.Context, d *Disk) ([]ID, error) {
	n := chunksFor(d.Size, r.cfg.ChunkSize)
	out := make([]ID, n)
	E := r.cfg.PageEntries
	for p, pid := range d.Pages {
		ids, err := r.page(ctx, pid)
		if err != nil {
			return nil, err
		}
		want := min(E, n-p*E)
		if pid.IsZero() {
			continue
		}
		if len(ids) != want {
			return nil, fmt.Errorf("%w: manifest page %d of disk-%d holds %d IDs, want %d", ErrCorrupt, p, d.Index, len(ids), want)
		}
		copy(out[p*E:], ids)
	}
	return out, nil
}

// ChunkIDs returns disk d's chunk IDs in order (ZeroID for zero chunks).
func (r *Repository) ChunkIDs(ctx context.Context, d *Disk) ([]ID, error) {
	return r.diskChunkIDs(ctx, d)
}

// DataBytes is how many bytes of disk d hold data: its chunks that are not
// all zero, the last one cut at the disk's end. A restore writes these and
// skips the rest, so on thin-provisioned storage the restored disk takes
// about this much room.
func (r *Repository) DataBytes(ctx context.Context, d *Disk) (int64, error) {
	ids, err := r.diskChunkIDs(ctx, d)
	if err != nil {
		return 0, err
	}
	cs := int64(r.cfg.ChunkSize)
	var n int64
	for i, id := range ids {
		if !id.IsZero() {
			n += min(cs, d.Size-int64(i)*cs)
		}
	}
	return n, nil
}

// DiskReader reads one disk of a restore point. ReadAt is safe for
// concurrent callers and never short unless at the disk's end. Sequential
// reads trigger parallel read-ahead of the following chunks.
type DiskReader struct {
	r      *Repository
	rp     *RestorePoint
	disk   *Disk
	cs     int64
	chunks int64 // the disk's chunk count

	lastEnd   atomic.Int64
	ahead     atomic.Int64 // chunks requested ahead so far (the read-ahead front)
	sem       chan struct{}
	hinted    atomic.Int64 // chunks whose pack bytes the kernel was asked for
	hinting   atomic.Bool  // a hintPacks goroutine is running
	prefetchW sync.WaitGroup
	closed    atomic.Bool
	noAhead   atomic.Bool
}

// DisableReadAhead stops read-ahead, for a caller that reads scattered
// chunks (patching an incremental) where prefetching neighbours is waste.
func (d *DiskReader) DisableReadAhead() { d.noAhead.Store(true) }

// ReadAheadChunks is how many chunks a sequential reader fetches ahead.
const ReadAheadChunks = 32

// hintAheadChunks is how far ahead of a sequential reader the kernel is
// asked to start reading the packs (posix_fadvise WILLNEED), so that the
// decoders find the bytes in memory instead of waiting for the disk.
const hintAheadChunks = 64

// OpenDisk opens disk n of rp for reading.
func (r *Repository) OpenDisk(ctx context.Context, rp *RestorePoint, n int) (*DiskReader, error) {
	d, err := rp.Disk(n)
	if err != nil {
		return nil, err
	}
	// Fetches in flight: decoding is CPU-bound, but a fetch also waits for
	// pread, so keep several per core.
	dr := &DiskReader{r: r, rp: rp, disk: d, cs: int64(r.cfg.ChunkSize), chunks: int64(chunksFor(d.Size, r.cfg.ChunkSize)), sem: make(chan struct{}, max(8, 4*r.workers))}
	dr.lastEnd.Store(-1)
	return dr, nil
}

// Size is the disk's size in bytes.
func (d *DiskReader) Size() int64 { return d.disk.Size }

// RestorePoint is the restore point the disk belongs to.
func (d *DiskReader) RestorePoint() *RestorePoint { return d.rp }

// Disk is the disk's catalog record.
func (d *DiskReader) Disk() *Disk { return d.disk }

// Close stops read-ahead. Reads after Close still work but do not prefetch.
func (d *DiskReader) Close() error {
	d.closed.Store(true)
	d.prefetchW.Wait()
	return nil
}

// ReadAt implements io.ReaderAt.
func (d *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	return d.ReadAtContext(context.Background(), p, off)
}

// chunkID returns the ID of chunk i.
func (d *DiskReader) chunkID(ctx context.Context, i int64) (ID, error) {
	E := int64(d.r.cfg.PageEntries)
	pid := d.disk.Pages[i/E]
	if pid.IsZero() {
		return ZeroID, nil
	}
	ids, err := d.r.page(ctx, pid)
	if err != nil {
		return ZeroID, err
	}
	j := i % E
	if j >= int64(len(ids)) {
		return ZeroID, fmt.Errorf("%w: manifest page of disk-%d too short", ErrCorrupt, d.disk.Index)
	}
	return ids[j], nil
}

// ReadAtContext reads len(p) bytes at off; ctx cancels waiting for data.
func (d *DiskReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	var s Span
	err := d.ReadSpan(ctx, &s, off, len(p))
	n := 0
	for _, b := range s.Bytes() {
		n += copy(p[n:], b)
	}
	s.Release()
	return n, err
}

// zeroChunk is what a Span holds for zero chunks: shared, never written.
var zeroChunk = sync.OnceValue(func() []byte { return make([]byte, maxChunkSize) })

// Span is a range of a disk's bytes as read-only slices of the engine's
// cached chunks (and of a shared zero buffer for zero chunks), for readers
// that pass data on without copying it, such as the FUSE server. It holds
// the chunks until Release; a zero Span is ready for ReadSpan. A Span must
// not be copied once used (it points into itself).
type Span struct {
	segs    [][]byte
	held    []*chunkBuf
	segsArr [4][]byte // backing for small spans: a 1 MiB read covers a few chunks
	heldArr [4]*chunkBuf
}

// Bytes returns the span's data in order. Do not modify it, nor use it
// after Release.
func (s *Span) Bytes() [][]byte { return s.segs }

// Len is the span's length in bytes.
func (s *Span) Len() int {
	n := 0
	for _, b := range s.segs {
		n += len(b)
	}
	return n
}

// Release lets go of the span's chunks and empties it for reuse.
func (s *Span) Release() {
	for _, b := range s.held {
		b.release()
	}
	clear(s.held)
	clear(s.segs)
	s.segs, s.held = s.segs[:0], s.held[:0]
}

// ReadSpan sets s (released first) to the disk's bytes in [off, off+n).
// Fewer than n bytes come back, with io.EOF, only at the disk's end; on an
// error s holds what came before the failing chunk. The caller must
// Release s when done with it.
func (d *DiskReader) ReadSpan(ctx context.Context, s *Span, off int64, n int) error {
	s.Release()
	if s.segs == nil {
		s.segs, s.held = s.segsArr[:0], s.heldArr[:0]
	}
	if off < 0 {
		return fmt.Errorf("read %s %s: negative offset", d.rp.Name(), d.disk.Name())
	}
	if off >= d.disk.Size {
		return io.EOF
	}
	want := n
	if int64(n) > d.disk.Size-off {
		n = int(d.disk.Size - off)
	}
	// A read is sequential when it starts at the disk's start or near where
	// the last one ended: the kernel (FUSE, NFS) issues read-ahead requests
	// in parallel, so they arrive slightly out of order.
	end := off + int64(n)
	if prev := d.lastEnd.Swap(end); off == 0 || (prev >= 0 && off >= prev-4*d.cs && off <= prev+4*d.cs) {
		next := (end + d.cs - 1) / d.cs // the first chunk after this read
		d.readAhead(ctx, next)
		d.hintPacks(next)
	}
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		ci := pos / d.cs
		within := pos - ci*d.cs
		seg := min(end-pos, d.cs-within)
		id, err := d.chunkID(ctx, ci)
		if err != nil {
			return fmt.Errorf("read %s %s at %d: %w", d.rp.Name(), d.disk.Name(), pos, err)
		}
		if id.IsZero() {
			s.segs = append(s.segs, zeroChunk()[:seg:seg])
			pos += seg
			continue
		}
		b, err := d.r.chunk(ctx, id)
		if err != nil {
			return fmt.Errorf("read %s %s at %d: %w", d.rp.Name(), d.disk.Name(), pos, err)
		}
		s.held = append(s.held, b)
		if within+seg > int64(len(b.b)) {
			return fmt.Errorf("read %s %s at %d: %w: chunk shorter than the disk says", d.rp.Name(), d.disk.Name(), pos, ErrCorrupt)
		}
		s.segs = append(s.segs, b.b[within:within+seg:within+seg])
		pos += seg
	}
	if n < want {
		return io.EOF
	}
	return nil
}

// readAhead fetches the chunks from `from` up to ReadAheadChunks ahead into
// the cache, in parallel, without blocking the reader. The front of what was
// already requested only moves forward, so each chunk is fetched once.
func (d *DiskReader) readAhead(ctx context.Context, from int64) {
	if d.closed.Load() || d.noAhead.Load() {
		return
	}
	limit := min(from+ReadAheadChunks, d.chunks)
	for {
		front := d.ahead.Load()
		if front < from {
			// The reader jumped past the front: start again from here.
			if !d.ahead.CompareAndSwap(front, from) {
				continue
			}
			front = from
		}
		if front >= limit {
			return
		}
		select {
		case d.sem <- struct{}{}:
		default:
			return // enough in flight; a later read moves on
		}
		if !d.ahead.CompareAndSwap(front, front+1) {
			<-d.sem
			continue
		}
		d.prefetchW.Add(1)
		ci := front
		started := d.r.bg.spawn(func(ctx context.Context) {
			defer func() { <-d.sem; d.prefetchW.Done() }()
			id, err := d.chunkID(ctx, ci)
			if err != nil || id.IsZero() {
				return
			}
			if b, err := d.r.chunk(ctx, id); err == nil { // errors surface on the real read
				b.release()
			}
		})
		if !started { // the repository is closing
			<-d.sem
			d.prefetchW.Done()
			return
		}
	}
}

// hintPacks asks the kernel, from a background goroutine, to read the
// pack bytes of the chunks from `from` up to hintAheadChunks ahead, merging
// neighbouring blobs of a pack into one request. One hinter runs at a time.
func (d *DiskReader) hintPacks(from int64) {
	if d.closed.Load() || d.noAhead.Load() || !d.hinting.CompareAndSwap(false, true) {
		return
	}
	limit := min(from+hintAheadChunks, d.chunks)
	start := max(d.hinted.Load(), from)
	if start >= limit {
		d.hinting.Store(false)
		return
	}
	d.prefetchW.Add(1)
	started := d.r.bg.spawn(func(ctx context.Context) {
		defer func() { d.hinting.Store(false); d.prefetchW.Done() }()
		var run location // the pack range being merged; Stored 0: none
		var runEnd uint64
		flush := func() {
			if run.Stored == 0 {
				return
			}
			if o, release, err := d.r.files.get(ctx, run.Pack); err == nil {
				if p, ok := o.(backend.Prefetcher); ok {
					p.Prefetch(int64(run.Offset), int64(runEnd-run.Offset))
				}
				release()
			}
			run.Stored = 0
		}
		for ci := start; ci < limit && ctx.Err() == nil; ci++ {
			id, err := d.chunkID(ctx, ci)
			if err != nil || id.IsZero() {
				continue
			}
			l, err := d.r.lookup(id)
			if err != nil {
				continue
			}
			if run.Stored != 0 && l.Pack == run.Pack && l.Offset >= run.Offset && l.Offset <= runEnd+1<<20 {
				runEnd = max(runEnd, l.Offset+uint64(l.Stored))
				continue
			}
			flush()
			run, runEnd = l, l.Offset+uint64(l.Stored)
		}
		flush()
		d.hinted.Store(limit)
	})
	if !started {
		d.hinting.Store(false)
		d.prefetchW.Done()
	}
}

// SeekData returns the first offset at or after off that lies in a stored
// (non-zero) chunk, like lseek(SEEK_DATA); io.EOF when only zeros follow.
// Callers such as qemu-img use it to skip the zero regions of a disk.
func (d *DiskReader) SeekData(ctx context.Context, off int64) (int64, error) {
	return d.seek(ctx, off, false)
}

// SeekHole returns the first offset at or after off that lies in an
// all-zero chunk, or the disk's size, like lseek(SEEK_HOLE).
func (d *DiskReader) SeekHole(ctx context.Context, off int64) (int64, error) {
	return d.seek(ctx, off, true)
}

func (d *DiskReader) seek(ctx context.Context, off int64, hole bool) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("seek %s %s: negative offset", d.rp.Name(), d.disk.Name())
	}
	if off >= d.disk.Size {
		return 0, io.EOF
	}
	E := int64(d.r.cfg.PageEntries)
	for ci := off / d.cs; ci < d.chunks; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		pid := d.disk.Pages[ci/E]
		if pid.IsZero() { // a whole page of zero chunks
			if hole {
				return max(off, ci*d.cs), nil
			}
			ci = (ci/E + 1) * E
			continue
		}
		id, err := d.chunkID(ctx, ci)
		if err != nil {
			return 0, fmt.Errorf("seek %s %s: %w", d.rp.Name(), d.disk.Name(), err)
		}
		if id.IsZero() == hole {
			return max(off, ci*d.cs), nil
		}
		ci++
	}
	if hole {
		return d.disk.Size, nil
	}
	return 0, io.EOF
}
