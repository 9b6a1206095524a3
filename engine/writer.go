package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// RestorePointSpec describes a restore point to write.
type RestorePointSpec struct {
	VM          string
	VMUUID      string
	Time        time.Time // snapshot time; stored at second precision, UTC
	Level       string    // LevelFull, LevelIncremental, LevelDifferential, LevelImport
	Consistency string    // "crash" or "app" as the cluster delivered it
	Parent      string    // restore point ID this one was taken against
	Config      json.RawMessage
	Meta        map[string]string
	// LockUntil, when set, commits the restore point with a retention
	// lock until that time (see Repository.LockRestorePoint).
	LockUntil time.Time
}

// DiskSpec describes one disk of a restore point.
type DiskSpec struct {
	Index    int
	Bus      string
	BusIndex int
	UUID     string
	Size     int64
	// Parent is the same disk in an earlier restore point, the source of
	// Unchanged ranges (optional).
	Parent *Disk
	// Reason records why a disk was read in full in an incremental job.
	Reason string
}

// RestorePointWriter collects the disks of one restore point. Disks may be
// written concurrently; Commit makes the restore point visible atomically.
type RestorePointWriter struct {
	r       *Repository
	spec    RestorePointSpec
	started time.Time
	mu      sync.Mutex
	disks   []*DiskWriter
	done    bool
}

// NewRestorePoint starts a restore point. Nothing is visible until Commit.
func (r *Repository) NewRestorePoint(ctx context.Context, spec RestorePointSpec) (*RestorePointWriter, error) {
	if !r.writable {
		return nil, ErrReadOnly
	}
	if err := ValidateVMName(spec.VM); err != nil {
		return nil, fmt.Errorf("new restore point: %w", err)
	}
	if spec.Time.IsZero() {
		spec.Time = time.Now()
	}
	spec.Time = spec.Time.UTC().Truncate(time.Second)
	if err := CheckTime(spec.Time); err != nil {
		return nil, fmt.Errorf("new restore point of %s: %w", spec.VM, err)
	}
	if spec.Level == "" {
		spec.Level = LevelFull
	}
	if !spec.LockUntil.IsZero() {
		if err := CheckTime(spec.LockUntil); err != nil || !spec.LockUntil.After(time.Now()) {
			return nil, fmt.Errorf("new restore point of %s: lock until %s: want a time in the future (until 2261-12-31)", spec.VM, FormatTime(spec.LockUntil))
		}
	}
	if _, err := getValue(r.db, rpKey(r.meta.vmPart(spec.VM), spec.Time)); err == nil {
		return nil, fmt.Errorf("new restore point %s@%s: %w", spec.VM, FormatTime(spec.Time), ErrExists)
	}
	return &RestorePointWriter{r: r, spec: spec, started: time.Now()}, nil
}

// AddDisk adds a disk to the restore point and returns its writer.
func (w *RestorePointWriter) AddDisk(spec DiskSpec) (*DiskWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.disks {
		if d.spec.Index == spec.Index {
			return nil, fmt.Errorf("add disk-%d: already added", spec.Index)
		}
	}
	if spec.Size < 0 {
		return nil, fmt.Errorf("add disk-%d: negative size", spec.Index)
	}
	n := chunksFor(spec.Size, w.r.cfg.ChunkSize)
	d := &DiskWriter{w: w, spec: spec, ids: make([]ID, n), set: make([]atomic.Bool, n)}
	w.disks = append(w.disks, d)
	return d, nil
}

// DiskWriter receives one disk's content. Every chunk must be covered by
// exactly one of WriteAt, Zero or Unchanged before Commit. Its methods are
// safe for concurrent use on distinct chunks; hashing and compression run in
// the calling goroutine, so callers get parallelism by calling from several
// goroutines (see cbt.Ingest).
type DiskWriter struct {
	w    *RestorePointWriter
	spec DiskSpec
	ids  []ID
	set  []atomic.Bool

	parentOnce sync.Once
	parentIDs  []ID
	parentErr  error
	written    atomic.Int64
	zero       atomic.Int64
	unchanged  atomic.Int64
	newChunks  atomic.Int64
	newRaw     atomic.Int64
	newStored  atomic.Int64
}

// Size is the disk's size in bytes.
func (d *DiskWriter) Size() int64 { return d.spec.Size }

// ChunkSize is the repository's chunk size.
func (d *DiskWriter) ChunkSize() int { return d.w.r.cfg.ChunkSize }

// span checks that [off, off+n) is chunk-aligned (the end may be the disk's
// end) and returns its chunk range.
func (d *DiskWriter) span(off, n int64) (first, last int, err error) {
	cs := int64(d.w.r.cfg.ChunkSize)
	end := off + n
	if off < 0 || n < 0 || end > d.spec.Size {
		return 0, 0, fmt.Errorf("disk-%d: range [%d, %d) outside the disk (%d bytes)", d.spec.Index, off, end, d.spec.Size)
	}
	if off%cs != 0 || (end%cs != 0 && end != d.spec.Size) {
		return 0, 0, fmt.Errorf("disk-%d: range [%d, %d) is not aligned to %d-byte chunks", d.spec.Index, off, end, cs)
	}
	return int(off / cs), int((end + cs - 1) / cs), nil
}

func (d *DiskWriter) mark(i int, id ID) error {
	if d.set[i].Swap(true) {
		return fmt.Errorf("disk-%d: chunk %d written twice", d.spec.Index, i)
	}
	d.ids[i] = id
	return nil
}

// WriteAt stores data at off: chunk-aligned, a whole number of chunks or
// ending at the disk's end. All-zero chunks are recorded, not stored.
func (d *DiskWriter) WriteAt(ctx context.Context, data []byte, off int64) error {
	first, last, err := d.span(off, int64(len(data)))
	if err != nil {
		return err
	}
	cs := d.w.r.cfg.ChunkSize
	for i := first; i < last; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		lo := (i - first) * cs
		piece := data[lo:min(lo+cs, len(data))]
		var id ID
		if isZero(piece) {
			d.zero.Add(int64(len(piece)))
		} else {
			id = d.w.r.hash.sum(piece)
			stored, isNew, err := d.w.r.pw.submit(ctx, id, piece, false)
			if err != nil {
				return fmt.Errorf("disk-%d: store chunk at %d: %w", d.spec.Index, int64(i)*int64(cs), err)
			}
			if isNew {
				d.newChunks.Add(1)
				d.newRaw.Add(int64(len(piece)))
				d.newStored.Add(int64(stored))
			}
		}
		if err := d.mark(i, id); err != nil {
			return err
		}
	}
	d.written.Add(int64(len(data)))
	return nil
}

// Zero records [off, off+n) as all zeros.
func (d *DiskWriter) Zero(off, n int64) error {
	first, last, err := d.span(off, n)
	if err != nil {
		return err
	}
	for i := first; i < last; i++ {
		if err := d.mark(i, ZeroID); err != nil {
			return err
		}
	}
	d.zero.Add(n)
	return nil
}

// Unchanged takes [off, off+n) from the parent disk given in DiskSpec.
func (d *DiskWriter) Unchanged(ctx context.Context, off, n int64) error {
	first, last, err := d.span(off, n)
	if err != nil {
		return err
	}
	if d.spec.Parent == nil {
		return fmt.Errorf("disk-%d: unchanged range without a parent disk", d.spec.Index)
	}
	d.parentOnce.Do(func() { d.parentIDs, d.parentErr = d.w.r.diskChunkIDs(ctx, d.spec.Parent) })
	if d.parentErr != nil {
		return fmt.Errorf("disk-%d: read parent manifest: %w", d.spec.Index, d.parentErr)
	}
	if last > len(d.parentIDs) {
		return fmt.Errorf("disk-%d: unchanged range [%d, %d) beyond the parent disk (%d bytes)", d.spec.Index, off, off+n, d.spec.Parent.Size)
	}
	cs := int64(d.w.r.cfg.ChunkSize)
	if last == len(d.parentIDs) && d.spec.Parent.Size != d.spec.Size && off+n == d.spec.Size {
		// The last chunk's length differs from the parent's: not the same bytes.
		if d.spec.Parent.Size%cs != d.spec.Size%cs {
			return fmt.Errorf("disk-%d: the disk was resized; its tail cannot be unchanged", d.spec.Index)
		}
	}
	for i := first; i < last; i++ {
		if err := d.mark(i, d.parentIDs[i]); err != nil {
			return err
		}
	}
	d.unchanged.Add(n)
	return nil
}

func (d *DiskWriter) stats() WriteStats {
	return WriteStats{WrittenBytes: d.written.Load(), ZeroBytes: d.zero.Load(), UnchangedBytes: d.unchanged.Load(),
		NewChunks: d.newChunks.Load(), NewRawBytes: d.newRaw.Load(), NewStoredBytes: d.newStored.Load()}
}

// Stats reports what has been written to the disk so far.
func (d *DiskWriter) Stats() WriteStats { return d.stats() }

// Commit stores the manifests and makes the restore point visible in one
// synced index commit, then publishes it to readers.
func (w *RestorePointWriter) Commit(ctx context.Context) (*RestorePoint, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, errors.New("commit: restore point already committed or aborted")
	}
	r := w.r
	rp := &RestorePoint{VM: w.spec.VM, VMUUID: w.spec.VMUUID, Time: w.spec.Time, Level: w.spec.Level,
		Consistency: w.spec.Consistency, Parent: w.spec.Parent, Config: w.spec.Config, Meta: w.spec.Meta}
	var idb [16]byte
	rand.Read(idb[:])
	rp.ID = hex.EncodeToString(idb[:])
	for _, d := range w.disks {
		for i := range d.set {
			if !d.set[i].Load() {
				return nil, fmt.Errorf("commit %s: disk-%d: chunk at offset %d was neither written, zeroed nor unchanged",
					rp.Name(), d.spec.Index, int64(i)*int64(r.cfg.ChunkSize))
			}
		}
		disk := Disk{Index: d.spec.Index, Bus: d.spec.Bus, BusIndex: d.spec.BusIndex, UUID: d.spec.UUID, Size: d.spec.Size, Reason: d.spec.Reason}
		E := r.cfg.PageEntries
		for p := 0; p*E < len(d.ids); p++ {
			ids := d.ids[p*E : min((p+1)*E, len(d.ids))]
			allZero := true
			for _, id := range ids {
				if !id.IsZero() {
					allZero = false
					break
				}
			}
			if allZero {
				disk.Pages = append(disk.Pages, ZeroID)
				continue
			}
			page := encodePage(ids)
			pid := r.hash.sum(page)
			stored, isNew, err := r.pw.submit(ctx, pid, page, true)
			if err != nil {
				return nil, fmt.Errorf("commit %s: store manifest page: %w", rp.Name(), err)
			}
			if isNew {
				d.newChunks.Add(1)
				d.newRaw.Add(int64(len(page)))
				d.newStored.Add(int64(stored))
			}
			disk.Pages = append(disk.Pages, pid)
		}
		disk.Stats = d.stats()
		rp.Disks = append(rp.Disks, disk)
	}
	sortDisks(rp.Disks)
	if err := r.pw.flush(ctx); err != nil {
		return nil, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	if err := fault(fpPagesFlushed); err != nil {
		return nil, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	for _, d := range rp.Disks {
		rp.Stats.add(d.Stats)
	}
	rp.Committed = time.Now().UTC()
	rp.Stats.DurationMS = time.Since(w.started).Milliseconds()
	committed, err := r.commitRecord(ctx, rp, w.spec.LockUntil)
	if committed {
		w.done = true
		return rp, err
	}
	return nil, err
}

// commitRecord makes rp, whose pages and chunks are durable, visible: its
// lock (when lockUntil is set), its record file, its index entries in one
// synced batch, then the publication to readers. committed reports whether
// the index holds it (an error after that is reported with the point).
func (r *Repository) commitRecord(ctx context.Context, rp *RestorePoint, lockUntil time.Time) (committed bool, err error) {
	rec, err := encodeRestorePoint(rp)
	if err != nil {
		return false, err
	}
	b := r.db.NewBatch()
	defer b.Close()
	// Its lock before the record file: a point is never visible unlocked.
	if !lockUntil.IsZero() {
		if _, err := r.addLock(ctx, b, rp.ID, lockUntil); err != nil {
			return false, fmt.Errorf("commit %s: %w", rp.Name(), err)
		}
	}
	// The record file next: once it is durable, the restore point exists
	// even if the index loses this commit (the next writer indexes it).
	if err := r.rlock.check(); err != nil {
		return false, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	if err := r.writeRPFile(ctx, rp.ID, rec); err != nil {
		return false, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	if err := fault(fpRecordWritten); err != nil {
		return false, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	if err := r.indexRP(r.db, b, rp, rec); err != nil {
		return false, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("commit %s: %w", rp.Name(), err)
	}
	rp.LockedUntil = lockUntil.UTC().Truncate(time.Second)
	if err := fault(fpRPIndexed); err != nil {
		return true, fmt.Errorf("commit %s: committed, but: %w", rp.Name(), err)
	}
	if err := r.publish(); err != nil {
		return true, fmt.Errorf("commit %s: committed, but publishing to readers failed: %w", rp.Name(), err)
	}
	if !lockUntil.IsZero() {
		if err := r.retainPoint(ctx, rp, rp.LockedUntil); err != nil {
			return true, fmt.Errorf("commit %s: committed and locked, but: %w", rp.Name(), err)
		}
	}
	return true, nil
}

// Abort drops the restore point. Chunks already stored stay in the
// repository (a later backup may reuse them; gc reclaims them otherwise).
func (w *RestorePointWriter) Abort() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func sortDisks(d []Disk) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j].Index < d[j-1].Index; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// publish makes the writer's index visible to readers in other processes.
// Publishes run one at a time: two restore points committed at once by
// concurrent jobs would otherwise race for the same generation, and the
// loser's restore point would stay invisible to readers.
func (r *Repository) publish() error {
	r.publishMu.Lock()
	defer r.publishMu.Unlock()
	cur, _ := readCurrent(r.dir)
	_, err := publishCheckpoint(r.db, r.dir, cur)
	if err == nil {
		r.dirty.Store(false)
	}
	return err
}
