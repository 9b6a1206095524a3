package engine

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// upgrade brings a repository of format 1 (index version 1 or 2) to format
// 2 when a writer opens it: every restore-point record is written out as a
// record file; in an encrypted repository the index is rebuilt with a
// sealed catalog (so no plaintext VM name or record stays in its files);
// then the index version and config.json say so. Each step can be
// repeated, so an upgrade killed at any point is finished by the next
// writer (testdata/format1 holds repositories of format 1).
func (r *Repository) upgrade(ctx context.Context, v byte) error {
	if v < 3 {
		n, err := r.writeRecordsFromCatalog(ctx, r.db)
		if err != nil {
			return fmt.Errorf("upgrade %s: %w", r.dir, err)
		}
		if r.keys != nil {
			old := r.db
			err = r.buildIndex(func() error { return copySpaces(old, r.db, keyChunk, keyPack, keyState) })
		} else {
			err = r.db.Set([]byte{keyVersion}, []byte{indexVersion}, pebble.Sync)
		}
		if err != nil {
			return fmt.Errorf("upgrade %s: index: %w", r.dir, err)
		}
		r.log.Info(fmt.Sprintf("upgraded the index of %s to version %d: %d restore-point records written to %s/", r.dir, indexVersion, n, dirRPs))
	}
	r.useIndexVersion(indexVersion)
	return r.writeFormat(ctx)
}

// writeFormat records in config.json that the repository is of the format
// this code writes.
func (r *Repository) writeFormat(ctx context.Context) error {
	if r.cfg.Format >= FormatVersion {
		return nil
	}
	c := *r.cfg
	c.Format = FormatVersion
	if err := backend.PutBytes(ctx, r.be, configName, encodeConfig(&c)); err != nil {
		return fmt.Errorf("upgrade %s: %w", r.dir, err)
	}
	r.cfg.Format = FormatVersion
	return nil
}

// writeRecordsFromCatalog writes a record file for every restore point of
// an index older than version 3 (whose catalog is never sealed) that has
// none, and returns how many it wrote.
func (r *Repository) writeRecordsFromCatalog(ctx context.Context, db pebble.Reader) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyRP}, UpperBound: []byte{keyRP + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		rec := it.Value()
		rp, err := decodeRestorePoint(rec, r.cfg.ChunkSize, r.cfg.PageEntries)
		if err != nil {
			return n, fmt.Errorf("restore point record %q: %w", it.Key()[1:], err)
		}
		if _, _, err := r.readRPFile(ctx, rp.ID); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, ErrCorrupt) {
			return n, err
		}
		if err := r.writeRPFile(ctx, rp.ID, rec); err != nil {
			return n, err
		}
		n++
	}
	return n, it.Error()
}

// copySpaces copies every key of the given spaces from src to dst, in
// batches, unsynced (the caller flushes dst).
func copySpaces(src pebble.Reader, dst *pebble.DB, spaces ...byte) error {
	for _, s := range spaces {
		it, err := src.NewIter(&pebble.IterOptions{LowerBound: []byte{s}, UpperBound: []byte{s + 1}})
		if err != nil {
			return err
		}
		b := dst.NewBatch()
		for it.First(); it.Valid() && err == nil; it.Next() {
			err = b.Set(it.Key(), it.Value(), nil)
			if err == nil && b.Len() > 4<<20 {
				err = b.Commit(pebble.NoSync)
				b.Close()
				b = dst.NewBatch()
			}
		}
		if err == nil {
			err = it.Error()
		}
		if err == nil {
			err = b.Commit(pebble.NoSync)
		}
		it.Close()
		b.Close()
		if err != nil {
			return fmt.Errorf("copy index space %q: %w", s, err)
		}
	}
	return nil
}
