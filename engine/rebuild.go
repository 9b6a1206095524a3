package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/cockroachdb/pebble/v2"
)

// The index is a cache: RepairIndex rebuilds it from the packs and the
// record files alone. A new index is built beside the old one and swapped
// in by two renames, so a repair killed at any point leaves either index
// in place (docs/FORMAT.md, "Rebuilding the index"):
//
//	index.rebuild/  being built; removed by the next writer
//	index.ready/    complete; the next writer renames it to index/
//	index.old/      the index it replaced; removed once the swap is done
const (
	suffixRebuild = ".rebuild"
	suffixReady   = ".ready"
	suffixOld     = ".old"
)

// RepairReport is what RepairIndex rebuilt.
type RepairReport struct {
	Packs         int      `json:"packs"`
	Chunks        int      `json:"chunks"`
	RestorePoints int      `json:"restore_points"`
	Seconds       float64  `json:"seconds"`
	Problems      []string `json:"problems,omitempty"`
}

// RepairOptions control RepairIndex.
type RepairOptions struct {
	// ReadData decodes every blob and checks it against its ID; without
	// it, a pack is checked against its trailer, table and shard sums.
	ReadData bool
}

// repairRun marks an Open made by RepairIndex.
type repairRun struct{ RepairOptions }

// RepairIndex rebuilds the repository's index from its packs and record
// files, takes the writer lock while it does, and publishes the result to
// readers. The old index is not read, except to save the restore-point
// records of a repository of format 1, whose index is their only copy. Packs
// that cannot be read are moved to quarantine/ as a writer does. The report
// lists what the rebuilt index holds and what a quick verify finds missing.
func RepairIndex(ctx context.Context, dir string, o OpenOptions, ro RepairOptions) (*RepairReport, error) {
	start := time.Now()
	o.Writable = true
	o.repair = &repairRun{ro}
	r, err := Open(ctx, dir, o)
	if err != nil {
		return nil, fmt.Errorf("repair index of %s: %w", dir, err)
	}
	rep := &RepairReport{}
	for _, c := range []struct {
		space byte
		n     *int
	}{{keyPack, &rep.Packs}, {keyChunk, &rep.Chunks}, {keyRPByID, &rep.RestorePoints}} {
		if *c.n, err = countKeys(r.db, c.space); err != nil {
			r.Close()
			return nil, fmt.Errorf("repair index of %s: %w", dir, err)
		}
	}
	v, err := r.Verify(ctx, VerifyOptions{})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("repair index of %s: verify: %w", dir, err)
	}
	rep.Problems = v.Problems
	for _, a := range v.Affected {
		rep.Problems = append(rep.Problems, fmt.Sprintf("restore point %s: %d chunks missing, %d damaged", a.Name, a.MissingChunks, a.DamagedChunks))
	}
	if err := r.Close(); err != nil {
		return nil, fmt.Errorf("repair index of %s: %w", dir, err)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func countKeys(db pebble.Reader, space byte) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{space}, UpperBound: []byte{space + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n, it.Error()
}

// rebuildIndex replaces the index with one built from the packs; the
// writer's open then indexes the record files (reconcileRecords). The
// restore-point records of an index older than version 3 are first written
// out as record files, since that index is their only copy.
func (r *Repository) rebuildIndex(ctx context.Context) error {
	if err := r.saveOldRecords(ctx); err != nil {
		return err
	}
	r.saveOldLocks(ctx)
	if err := r.buildIndex(func() error { return r.sweepOrphans(ctx) }); err != nil {
		return fmt.Errorf("rebuild index of %s: %w", r.dir, err)
	}
	return r.writeFormat(ctx)
}

// saveOldRecords writes the record files of a repository of format 1 from
// its index, their only copy, and fails when that index is missing or
// cannot be read.
func (r *Repository) saveOldRecords(ctx context.Context) error {
	if r.cfg.Format >= 2 {
		return nil // its index is of version 3: every record has its file
	}
	path := filepath.Join(r.dir, dirIndex)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: the index of %s is missing, and this repository, made by an older ahvfs, keeps its restore-point records only there; put back a copy of %s/", ErrCorrupt, r.dir, dirIndex)
	}
	db, err := openIndex(path, pebbleOptions(r.log, false, 16<<20))
	if err == nil {
		defer db.Close()
		var v byte
		if v, err = checkIndexVersion(db); err == nil && v < 3 {
			_, err = r.writeRecordsFromCatalog(ctx, db)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: the index of %s does not open (%v), and this repository, made by an older ahvfs, keeps its restore-point records only there; put back a copy of %s/", ErrCorrupt, r.dir, err, dirIndex)
	}
	return nil
}

// saveOldLocks writes again, from the old index when it still opens, the
// lock files that are missing: a lock must not end because its file was
// removed, even when the next writer is a rebuild (which does not read the
// old index otherwise). An old index that does not open is no error here:
// the rebuild is what repairs it.
func (r *Repository) saveOldLocks(ctx context.Context) {
	path := filepath.Join(r.dir, dirIndex)
	if _, err := os.Stat(path); err != nil {
		return
	}
	db, err := openIndex(path, pebbleOptions(r.log, false, 16<<20))
	if err != nil {
		r.log.Info("the old index does not open: its locks are not checked against the lock files", "err", err)
		return
	}
	defer db.Close()
	locks, err := r.locksOf(db, "")
	if err != nil {
		r.log.Info("the old index's locks cannot be read", "err", err)
		return
	}
	for _, l := range locks {
		if _, err := r.be.Stat(ctx, lockRecordName(l.id)); !errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err := r.restoreLockFile(ctx, l, "the old index"); err != nil {
			r.log.Warn("a lock file missing could not be written again from the old index", "lock", l.id, "err", err)
		}
	}
}

// buildIndex builds a new index with fill (which writes through r.db,
// pointed at the new index while it runs) and swaps it in place of the old
// one, which it closes. r.db is the new index when it returns nil.
func (r *Repository) buildIndex(fill func() error) error {
	base := filepath.Join(r.dir, dirIndex)
	tmp := base + suffixRebuild
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	db, err := pebble.Open(tmp, pebbleOptions(r.log, false, 64<<20))
	if err != nil {
		return fmt.Errorf("create index: %w", err)
	}
	prev, prevMeta := r.db, r.meta
	r.db = db
	r.useIndexVersion(indexVersion)
	err = db.Set([]byte{keyVersion}, []byte{indexVersion}, pebble.Sync)
	if err == nil {
		err = fill()
	}
	if err == nil {
		err = db.Flush()
	}
	if err == nil {
		err = fault(fpRebuildFilled)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	r.db = prev
	if err != nil {
		r.meta = prevMeta
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, base+suffixReady); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(r.dir); err != nil {
		return err
	}
	if err := fault(fpRebuildReady); err != nil {
		return err
	}
	if prev != nil {
		prev.Close()
		r.db = nil
	}
	if err := finishIndexSwap(r.dir); err != nil {
		return err
	}
	if r.db, err = openIndex(base, pebbleOptions(r.log, false, 64<<20)); err != nil {
		return fmt.Errorf("open rebuilt index: %w", err)
	}
	return startManifest(r.db)
}

// finishIndexSwap completes a swap of a rebuilt index that a kill
// interrupted, and removes what a killed rebuild left. Only the writer
// (holding the lock) calls it.
func finishIndexSwap(dir string) error {
	base := filepath.Join(dir, dirIndex)
	ready, old := base+suffixReady, base+suffixOld
	if _, err := os.Stat(ready); err == nil {
		if _, err := os.Stat(base); err == nil {
			if err := os.RemoveAll(old); err != nil {
				return err
			}
			if err := os.Rename(base, old); err != nil {
				return fmt.Errorf("swap rebuilt index: %w", err)
			}
			if err := fault(fpRebuildOldMoved); err != nil {
				return err
			}
		}
		if err := os.Rename(ready, base); err != nil {
			return fmt.Errorf("swap rebuilt index: %w", err)
		}
		if err := atomicfile.SyncDir(dir); err != nil {
			return err
		}
		if err := fault(fpRebuildSwapped); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	return os.RemoveAll(base + suffixRebuild)
}
