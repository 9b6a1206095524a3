package dr

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Re-encoding: between repositories whose blobs are not interchangeable
// (other keys, another chunk size), a restore point is written into the
// target anew, as a backup would: every chunk read decoded from the source
// and stored the target's way (its own IDs, compression and keys), the
// target's dedup skipping what it holds. That reads the whole point, like
// restic copy; both repositories must be opened here.

// SourceIDMeta is the meta key under which a re-encoded restore point keeps
// the ID of the source point it was made from: a later sync finds it there.
const SourceIDMeta = "sync.source_id"

// reencodable reports whether the sync can re-encode: both sides in this
// process.
func (s *syncer) reencodable() (src, dst *engine.Repository, ok bool) {
	ls, ok1 := s.src.(*Local)
	ld, ok2 := s.dst.(*Local)
	if !ok1 || !ok2 {
		return nil, nil, false
	}
	return ls.R, ld.R, true
}

// reencodePoint writes p into the target as a new restore point with p's
// VM, time, level, consistency, configuration, meta and unexpired lock.
func (s *syncer) reencodePoint(ctx context.Context, p Point) error {
	src, dst, _ := s.reencodable()
	meta := maps.Clone(p.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[SourceIDMeta] = p.ID
	spec := engine.RestorePointSpec{VM: p.VM, VMUUID: p.VMUUID, Time: p.Time, Level: p.Level, Consistency: p.Consistency,
		Config: p.Config, Meta: meta}
	if p.LockedUntil.After(time.Now()) {
		spec.LockUntil = p.LockedUntil
	}
	w, err := dst.NewRestorePoint(ctx, spec)
	if err != nil {
		return fmt.Errorf("sync %s: target: %w", p.Name(), err)
	}
	for _, d := range p.Disks {
		if err := s.reencodeDisk(ctx, src, w, p, d); err != nil {
			w.Abort()
			return fmt.Errorf("sync %s %s: %w", p.Name(), d.Name(), err)
		}
	}
	rp, err := w.Commit(ctx)
	if err != nil {
		return fmt.Errorf("sync %s: target: %w", p.Name(), err)
	}
	s.chunks.Add(rp.Stats.NewChunks)
	s.stored.Add(rp.Stats.NewChunks)
	s.bytes.Add(rp.Stats.NewStoredBytes)
	s.setProgress(nil)
	return nil
}

// reencodeDisk copies one disk, chunk by chunk of the target's size, on
// four goroutines; the bandwidth limit paces what is read.
func (s *syncer) reencodeDisk(ctx context.Context, src *engine.Repository, w *engine.RestorePointWriter, p Point, d engine.Disk) error {
	dw, err := w.AddDisk(engine.DiskSpec{Index: d.Index, Bus: d.Bus, BusIndex: d.BusIndex, UUID: d.UUID, Size: d.Size})
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	rd, err := src.OpenDisk(ctx, p.RestorePoint, d.Index)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer rd.Close()
	cs := int64(dw.ChunkSize())
	n := int((d.Size + cs - 1) / cs)
	return parallel(ctx, 4, n, func(ctx context.Context, i int) error {
		off := int64(i) * cs
		buf := make([]byte, min(cs, d.Size-off))
		if _, err := rd.ReadAt(buf, off); err != nil {
			return fmt.Errorf("source: read at %d: %w", off, err)
		}
		if err := s.bw.Wait(ctx, len(buf)); err != nil {
			return err
		}
		if err := dw.WriteAt(ctx, buf, off); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		return nil
	})
}
