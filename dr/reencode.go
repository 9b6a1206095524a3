package dr

import (
	"bytes"
	"context"
	"fmt"
)

// Re-encoding: between repositories whose blobs are not interchangeable
// (other keys, another chunk size), a restore point is written into the
// target anew, as a backup would: every chunk read decoded from the source
// and stored the target's way (its own IDs, compression and keys), the
// target's dedup skipping what it holds. That reads the whole point, like
// restic copy. Either side may be a server (plain.go): a server source
// sends decoded bytes, a server target receives them and writes the point.

// SourceIDMeta is the meta key under which a re-encoded restore point keeps
// the ID of the source point it was made from: a later sync finds it there.
const SourceIDMeta = "sync.source_id"

// reencodable reports whether the sync can re-encode between its sides.
func (s *syncer) reencodable() (plainSource, importer, bool) {
	src, ok1 := s.src.(plainSource)
	dst, ok2 := s.dst.(importer)
	return src, dst, ok1 && ok2
}

// reencodePoint writes p into the target as a new restore point with p's
// VM, time, level, consistency, configuration, meta and unexpired lock.
func (s *syncer) reencodePoint(ctx context.Context, p Point) error {
	src, dst, _ := s.reencodable()
	cs, err := dst.ChunkSize(ctx)
	if err != nil {
		return fmt.Errorf("sync %s: target: %w", p.Name(), err)
	}
	stats, err := dst.Import(ctx, headerOf(p), func(ctx context.Context, w plainWriter) error {
		for _, d := range p.Disks {
			if err := s.reencodeDisk(ctx, src, w, p, d.Index, d.Size, int64(cs)); err != nil {
				return fmt.Errorf("%s: %w", d.Name(), err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", p.Name(), err)
	}
	s.chunks.Add(stats.NewChunks)
	s.stored.Add(stats.NewChunks)
	s.setProgress(nil)
	return nil
}

// reencodeDisk copies one disk, chunk by chunk of the target's size cs,
// on four goroutines; the bandwidth limit paces what is read, and zero
// chunks go as such.
func (s *syncer) reencodeDisk(ctx context.Context, src plainSource, w plainWriter, p Point, disk int, size, cs int64) error {
	rd, err := src.OpenPlain(ctx, p, disk)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer rd.Close()
	n := int((size + cs - 1) / cs)
	return parallel(ctx, 4, n, func(ctx context.Context, i int) error {
		off := int64(i) * cs
		buf := make([]byte, min(cs, size-off))
		if err := rd.ReadAt(ctx, buf, off); err != nil {
			return fmt.Errorf("source: read at %d: %w", off, err)
		}
		if allZero(buf) {
			return w.Zero(ctx, disk, off, int64(len(buf)))
		}
		if err := s.bw.Wait(ctx, len(buf)); err != nil {
			return err
		}
		s.bytes.Add(int64(len(buf)))
		if err := w.WriteAt(ctx, disk, buf, off); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		return nil
	})
}

// allZero reports whether b holds only zero bytes: its first byte is
// zero and every byte equals the one before it (one memory compare).
func allZero(b []byte) bool {
	return len(b) == 0 || (b[0] == 0 && bytes.Equal(b[1:], b[:len(b)-1]))
}
