package engine

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// Garbage collection (docs/FORMAT.md, "Garbage collection"). gc runs as
// the repository's only writer, holding the writer lock from start to end:
// no backup or import can deduplicate against a chunk while gc decides
// it is unused. It marks every page and chunk a restore point references
// (locked ones included: they exist) in a Bloom filter, sums per pack the
// stored bytes of the referenced blobs its index locations point into,
// deletes the packs that hold none, and rewrites the most-unused of the
// others until the repository's unused share is at most MaxUnused
// (planPacks): their referenced blobs are stored again through the pack
// writer (new packs, new parity) and then the old packs are deleted.
// The index changes before any file goes, so a kill at any moment leaves
// either indexed packs (the next gc deletes them) or unindexed ones (the
// next writer indexes them again as orphans); nothing referenced is ever
// without a pack.

// GCOptions tune a gc.
type GCOptions struct {
	// MaxUnused is the share of unused bytes the packs gc keeps may hold
	// in all; packs above it are rewritten, most-unused first, until the
	// whole is at or below it (planPacks). Default 0.05; 1 never rewrites.
	MaxUnused float64
	// DryRun computes and reports, and changes nothing.
	DryRun bool
	// Without are restore point IDs to count as already forgotten (prune
	// --dry-run asks what gc would reclaim after it). Only with DryRun.
	Without []string
	// ReaderWait bounds how long gc waits, after publishing its index, for
	// readers of older checkpoints (a mount, a cat) to finish before it
	// deletes the packs they may still read; default 1 minute, negative
	// does not wait. Packs it cannot delete in time stay as unindexed
	// packs for the next gc.
	ReaderWait time.Duration
	// QuarantineAge, when positive, deletes the files in quarantine/ set
	// aside more than that long ago; default (zero) keeps them all: a
	// quarantined pack may hold the only copy of a chunk someone wants to
	// recover by hand.
	QuarantineAge time.Duration
}

// GCReport says what a gc found and did (or would do, in a dry run).
type GCReport struct {
	DryRun          bool  `json:"dry_run"`
	RestorePoints   int   `json:"restore_points"`
	Packs           int   `json:"packs"`
	Blobs           int64 `json:"blobs"`            // indexed blobs (chunks and pages)
	UnusedBlobs     int64 `json:"unused_blobs"`     // of them, referenced by no restore point
	StoredBytes     int64 `json:"stored_bytes"`     // bytes of the packs' blobs
	ReferencedBytes int64 `json:"referenced_bytes"` // of them, blobs a restore point references
	PacksDeleted    int   `json:"packs_deleted"`
	PacksRewritten  int   `json:"packs_rewritten"`
	BytesRewritten  int64 `json:"bytes_rewritten"` // referenced bytes copied into new packs
	ReclaimedBytes  int64 `json:"reclaimed_bytes"` // pack and sidecar bytes freed (estimated in a dry run)
	PacksLeft       int   `json:"packs_left,omitempty"`
	Quarantine      int   `json:"quarantine_removed,omitempty"`
	// UploadsAborted are multipart uploads older than a day that killed
	// processes left in an object store (S3).
	UploadsAborted int     `json:"uploads_aborted,omitempty"`
	Seconds        float64 `json:"seconds"`
	// Phases are the seconds of each step: check, mark, plan, unindex
	// (the dropped packs; their deletion overlaps the rewrite), rewrite,
	// publish (the rewritten packs leave the index), delete.
	Phases map[string]float64 `json:"phase_seconds"`
}

// phase records the seconds since *t under name and restarts *t.
func (rep *GCReport) phase(name string, t *time.Time) {
	rep.Phases[name] = time.Since(*t).Seconds()
	*t = time.Now()
}

// packUse is what gc learns of one pack.
type packUse struct {
	rec       packRecord
	live      int64 // stored bytes of referenced blobs located in it
	liveBlobs int
}

// blobBytes is the length of the pack's blob region (before its table).
func (u *packUse) blobBytes() int64 { return u.rec.DataLen - int64(u.rec.Blobs)*packEntrySize }

// GC reclaims the space of blobs no restore point references. A dry run
// also works on a repository opened for reading.
func (r *Repository) GC(ctx context.Context, o GCOptions) (rep *GCReport, err error) {
	defer r.guardIndex(&err, "gc")
	if !r.writable && !o.DryRun {
		return nil, fmt.Errorf("gc: %w", ErrReadOnly)
	}
	if r.remote && !r.exclusive && !o.DryRun {
		return nil, errors.New("gc: a shared repository must be opened with its exclusive lock (OpenOptions.Exclusive)")
	}
	if len(o.Without) > 0 && !o.DryRun {
		return nil, errors.New("gc: Without is only for a dry run")
	}
	if o.MaxUnused == 0 {
		o.MaxUnused = 0.05
	}
	if o.MaxUnused < 0 || o.MaxUnused > 1 {
		return nil, fmt.Errorf("gc: max unused share %g: want 0 to 1", o.MaxUnused)
	}
	if o.ReaderWait == 0 {
		o.ReaderWait = time.Minute
	}
	start := time.Now()
	rep = &GCReport{DryRun: o.DryRun, Phases: map[string]float64{}}
	t := start
	if !o.DryRun {
		// gc marks from the index: it must hold every restore point the
		// record files hold.
		problems, pending, err := r.recordDrift(ctx, r.db)
		if err != nil {
			return nil, fmt.Errorf("gc: compare the index with the record files: %w", err)
		}
		if d := append(problems, pending...); len(d) > 0 {
			return nil, fmt.Errorf("gc: the index and the record files disagree (%s); run 'ahvfs verify', and 'ahvfs repair index' if it says so; nothing was removed", strings.Join(d, "; "))
		}
	}
	rep.phase("check", &t)
	live, n, err := r.markLive(ctx, o.Without)
	if err != nil {
		return nil, err
	}
	rep.phase("mark", &t)
	rep.RestorePoints = n
	packs, err := r.packUses(ctx, live, rep)
	if err != nil {
		return nil, err
	}
	drop, rewrite := planPacks(packs, o.MaxUnused)
	ratio := 1 + float64(r.cfg.Parity.Parity)/float64(r.cfg.Parity.Data)
	for _, id := range drop {
		rep.ReclaimedBytes += int64(float64(packs[id].rec.Size) * ratio)
	}
	for _, id := range rewrite {
		u := packs[id]
		rep.BytesRewritten += u.live
		rep.ReclaimedBytes += int64(float64(u.rec.Size-u.live) * ratio)
	}
	rep.PacksDeleted, rep.PacksRewritten = len(drop), len(rewrite)
	rep.phase("plan", &t)
	if o.DryRun {
		rep.Seconds = time.Since(start).Seconds()
		return rep, nil
	}
	// The packs that hold nothing referenced leave the index first, and
	// their deletion overlaps the rewrite when no reader holds an older
	// index: freeing a local disk's space costs about as much as writing
	// it.
	if err := r.unindexPacks(ctx, drop, live); err != nil {
		return nil, err
	}
	if len(drop) > 0 {
		if err := r.publish(); err != nil {
			return nil, fmt.Errorf("gc: publish the index: %w", err)
		}
	}
	dropped := make(chan error, 1)
	later := drop
	if len(drop) > 0 && r.waitOldReaders(ctx, 0) {
		later = nil
		go func() { dropped <- r.deletePacks(ctx, drop) }()
	} else {
		dropped <- nil
	}
	rep.phase("unindex", &t)
	if err := r.rewritePacks(ctx, rewrite, packs, live); err != nil {
		return nil, errors.Join(err, <-dropped)
	}
	rep.phase("rewrite", &t)
	if err := r.unindexPacks(ctx, rewrite, live); err != nil {
		return nil, errors.Join(err, <-dropped)
	}
	if err := r.publish(); err != nil {
		return nil, errors.Join(fmt.Errorf("gc: publish the index: %w", err), <-dropped)
	}
	rep.phase("publish", &t)
	gone := append(later, rewrite...)
	if len(gone) > 0 && !r.waitOldReaders(ctx, o.ReaderWait) {
		r.log.Warn(fmt.Sprintf("gc: a reader still uses an older index after %v: the %d packs it may read stay in place until the next gc", o.ReaderWait, len(gone)))
		rep.PacksLeft = len(gone)
	} else if err := r.deletePacks(ctx, gone); err != nil {
		return nil, errors.Join(err, <-dropped)
	}
	if err := <-dropped; err != nil {
		return nil, err
	}
	rep.phase("delete", &t)
	if rep.Quarantine, err = r.emptyQuarantine(ctx, o.QuarantineAge); err != nil {
		return nil, err
	}
	if a, ok := r.be.(uploadAborter); ok {
		// Housekeeping: gc's own work is done, so a store that cannot
		// list uploads only gets a warning.
		if rep.UploadsAborted, err = a.AbortUploads(ctx, staleUploadAge); err != nil {
			r.log.Warn("gc: unfinished uploads not aborted", "err", err)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// uploadAborter is a backend that keeps unfinished uploads (S3's
// multipart uploads of killed processes) and can abort old ones.
type uploadAborter interface {
	AbortUploads(ctx context.Context, age time.Duration) (int, error)
}

// staleUploadAge is the age from which gc aborts an unfinished upload: a
// pack's upload takes seconds, and gc holds the exclusive lock, so none
// is live anyway.
const staleUploadAge = 24 * time.Hour

// planPacks chooses the packs gc deletes (no referenced blob) and those
// it rewrites. Like restic's prune, maxUnused bounds the unused share of
// the whole repository, not of each pack: the packs whose own unused share
// is above it are rewritten most-unused first, and only until the unused
// bytes left in the kept packs are at most maxUnused of their blob bytes.
// Rewriting a pack that is 6% unused to reclaim 6% of it costs as much I/O
// as rewriting one that is 90% unused; the budget spends that I/O where it
// frees the most. maxUnused 0 rewrites every pack with an unused byte.
func planPacks(packs map[PackID]*packUse, maxUnused float64) (drop, rewrite []PackID) {
	var candidates []PackID
	var unused, stored int64 // over the packs that stay
	for id, u := range packs {
		if u.liveBlobs == 0 {
			drop = append(drop, id)
			continue
		}
		free := u.blobBytes() - u.live
		unused += free
		stored += u.blobBytes()
		if float64(free) > maxUnused*float64(u.blobBytes()) {
			candidates = append(candidates, id)
		}
	}
	share := func(id PackID) float64 {
		u := packs[id]
		return float64(u.blobBytes()-u.live) / float64(max(u.blobBytes(), 1))
	}
	slices.SortFunc(candidates, func(a, b PackID) int {
		if c := cmp.Compare(share(b), share(a)); c != 0 {
			return c
		}
		return comparePackIDs(a, b)
	})
	for _, id := range candidates {
		if float64(unused) <= maxUnused*float64(stored) {
			break
		}
		u := packs[id]
		rewrite = append(rewrite, id)
		// The rewritten blobs stay, in new packs with no unused byte.
		unused -= u.blobBytes() - u.live
		stored -= u.blobBytes() - u.live
	}
	slices.SortFunc(drop, comparePackIDs)
	slices.SortFunc(rewrite, comparePackIDs)
	return drop, rewrite
}

// deletePacks deletes the files of packs no index names any more, each
// sidecar before its pack, several packs at a time: a backend's Delete is
// durable when it returns (a directory sync on a local disk), and those
// waits overlap. What it does not delete, the next writer indexes again
// and the next gc deletes.
func (r *Repository) deletePacks(ctx context.Context, ids []PackID) error {
	if err := r.rlock.check(); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return eachParallel(ctx, backendWidth, ids, func(id PackID) error {
		r.files.forget(id)
		for _, name := range []string{parityName(id), packName(id)} {
			err := r.be.Delete(ctx, name)
			if errors.Is(err, backend.ErrRetained) {
				// A locked point needed it when it was locked: the store
				// keeps it until the retention ends, and the next writer
				// indexes it again.
				r.log.Info("gc: pack kept by the store's retention", "pack", id, "err", err)
				return nil
			}
			if err != nil {
				return fmt.Errorf("gc: delete %s: %w (the next gc deletes it)", name, err)
			}
		}
		return fault(fpGCPackDeleted)
	})
}

func comparePackIDs(a, b PackID) int { return bytes.Compare(a[:], b[:]) }

// markLive adds every page and chunk ID the restore points reference to
// a filter sized from the index (except the points of without). A page
// that cannot be read stops gc: nothing may be deleted on a guess.
func (r *Repository) markLive(ctx context.Context, without []string) (*idFilter, int, error) {
	n, err := countKeys(r.db, keyChunk)
	if err != nil {
		return nil, 0, fmt.Errorf("gc: count chunks: %w", err)
	}
	live := newIDFilter(n)
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return nil, 0, fmt.Errorf("gc: %w", err)
	}
	skip := map[string]bool{}
	for _, id := range without {
		skip[id] = true
	}
	seen := map[ID]struct{}{}
	marked := 0
	var buf []byte
	for _, rp := range rps {
		if skip[rp.ID] {
			continue
		}
		marked++
		for _, d := range rp.Disks {
			for _, pid := range d.Pages {
				if pid.IsZero() {
					continue
				}
				live.add(pid)
				if _, ok := seen[pid]; ok {
					continue
				}
				seen[pid] = struct{}{}
				// Straight from the decoded bytes into one reused buffer:
				// no page cache, no []ID per page.
				b, _, err := r.loadBlob(ctx, pid, buf)
				if err == nil {
					buf, err = b, checkPage(b, r.cfg.PageEntries)
				}
				if err != nil {
					return nil, 0, fmt.Errorf("gc: restore point %s %s: manifest page: %w; nothing was removed ('ahvfs verify --read-data' says more)", rp.Name(), d.Name(), err)
				}
				for off := 0; off < len(b); off += IDSize {
					if id := ID(b[off : off+IDSize]); !id.IsZero() {
						live.add(id)
					}
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
	return live, marked, nil
}

// packUses reads every pack record and every location of the index and
// sums, per pack, the referenced blobs its locations point into.
func (r *Repository) packUses(ctx context.Context, live *idFilter, rep *GCReport) (map[PackID]*packUse, error) {
	packs := map[PackID]*packUse{}
	err := scanSpace(r.db, keyPack, func(k, v []byte) error {
		rec, err := decodePackRecord(v)
		if err != nil {
			return err
		}
		var id PackID
		copy(id[:], k[1:])
		packs[id] = &packUse{rec: rec}
		rep.StoredBytes += rec.DataLen - int64(rec.Blobs)*packEntrySize
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc: read pack records: %w", err)
	}
	rep.Packs = len(packs)
	err = scanSpace(r.db, keyChunk, func(k, v []byte) error {
		l, err := decodeLocation(v)
		if err != nil {
			return err
		}
		rep.Blobs++
		var id ID
		copy(id[:], k[1:])
		if !live.has(id) {
			rep.UnusedBlobs++
			return nil
		}
		rep.ReferencedBytes += int64(l.Stored)
		if u := packs[l.Pack]; u != nil {
			u.live += int64(l.Stored)
			u.liveBlobs++
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("gc: read chunk locations: %w", err)
	}
	return packs, nil
}

// scanSpace calls fn with every key and value of an index key space.
func scanSpace(db pebble.Reader, space byte, fn func(k, v []byte) error) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{space}, UpperBound: []byte{space + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// rewritePacks stores the referenced blobs of the packs again, through the
// pack writer (new packs and sidecars, whose seal points the blobs' index
// locations at them), and waits until they are durable and indexed.
func (r *Repository) rewritePacks(ctx context.Context, ids []PackID, packs map[PackID]*packUse, live *idFilter) error {
	// In groups of at most rewriteGroupBlobs blobs, one index scan each:
	// what gc holds while it rewrites stays bounded however much it
	// rewrites.
	for len(ids) > 0 {
		n, blobs, keep := 0, 0, 0
		for n < len(ids) && (n == 0 || blobs+int(packs[ids[n]].rec.Blobs) <= rewriteGroupBlobs) {
			blobs += int(packs[ids[n]].rec.Blobs)
			keep += packs[ids[n]].liveBlobs
			n++
		}
		if err := r.rewriteGroup(ctx, ids[:n], keep, live); err != nil {
			return err
		}
		ids = ids[n:]
	}
	if err := r.pw.flush(ctx); err != nil {
		return fmt.Errorf("gc: store the kept blobs: %w", err)
	}
	return fault(fpGCRewritten)
}

// rewriteGroupBlobs bounds the blobs of the packs one rewriteGroup reads:
// 2^18 locations of ~80 bytes each.
const rewriteGroupBlobs = 1 << 18

// rewriteGroup stores again the referenced blobs of packs ids, about keep
// of them.
func (r *Repository) rewriteGroup(ctx context.Context, ids []PackID, keep int, live *idFilter) error {
	set := make(map[PackID]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	type blob struct {
		id  ID
		loc location
	}
	blobs := make([]blob, 0, keep)
	err := scanSpace(r.db, keyChunk, func(k, v []byte) error {
		l, err := decodeLocation(v)
		if err != nil {
			return err
		}
		var id ID
		copy(id[:], k[1:])
		if set[l.Pack] && live.has(id) {
			blobs = append(blobs, blob{id, l})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: find the blobs to keep: %w", err)
	}
	// In pack order, so each old pack is read front to back.
	slices.SortFunc(blobs, func(a, b blob) int {
		if c := comparePackIDs(a.loc.Pack, b.loc.Pack); c != 0 {
			return c
		}
		return cmp.Compare(a.loc.Offset, b.loc.Offset)
	})
	stored := make([]byte, 0, maxEncodedLen(r.cfg.ChunkSize))
	for _, b := range blobs {
		if err := r.keepBlob(ctx, b.id, b.loc, &stored); err != nil {
			return err
		}
	}
	return nil
}

// keepBlob stores blob id, located at l in a pack gc replaces, again: its
// stored bytes as they are when they match their CRC-32C, else decoded
// (checked against the ID, rebuilt from parity when damaged) and encoded
// anew.
func (r *Repository) keepBlob(ctx context.Context, id ID, l location, buf *[]byte) error {
	if l.HasCRC {
		f, release, err := r.files.get(ctx, l.Pack)
		if err != nil {
			return fmt.Errorf("gc: blob %s: %w", id.Short(), err)
		}
		if cap(*buf) < int(l.Stored) {
			*buf = make([]byte, l.Stored)
		}
		b := (*buf)[:l.Stored]
		_, err = f.ReadAt(b, int64(l.Offset))
		release()
		if err == nil && crc32.Checksum(b, crcTable) == l.CRC {
			if err := r.pw.rewriteStored(ctx, id, b, l.Raw, l.Flags, l.CRC); err != nil {
				return fmt.Errorf("gc: store blob %s again: %w", id.Short(), err)
			}
			return nil
		}
	}
	plain, _, err := r.loadBlob(ctx, id, nil)
	if err != nil {
		return fmt.Errorf("gc: read blob %s to keep it: %w; nothing was removed", id.Short(), err)
	}
	if err := r.pw.rewrite(ctx, id, plain, l.Flags&flagPage != 0); err != nil {
		return fmt.Errorf("gc: store blob %s again: %w", id.Short(), err)
	}
	return nil
}

// unindexPacks removes from the index the pack records of ids and every
// location still pointing into them. A referenced blob located there is a
// bug (it should have been rewritten): gc stops before changing anything.
func (r *Repository) unindexPacks(ctx context.Context, ids []PackID, live *idFilter) error {
	if len(ids) == 0 {
		return nil
	}
	err := r.dropPacksFromIndex(ids, func(id ID, p PackID) error {
		if live.has(id) {
			return fmt.Errorf("referenced blob %s is still located in pack %s", id.Short(), p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: remove packs from the index: %w; nothing was removed", err)
	}
	return fault(fpGCUnindexed)
}

// dropPacksFromIndex removes the pack records of ids and every location
// pointing into them, in one synced batch. check, when not nil, sees each
// blob located there first; its error stops everything.
func (r *Repository) dropPacksFromIndex(ids []PackID, check func(ID, PackID) error) error {
	set := map[PackID]bool{}
	for _, id := range ids {
		set[id] = true
	}
	b := r.db.NewBatch()
	defer b.Close()
	err := scanSpace(r.db, keyChunk, func(k, v []byte) error {
		l, err := decodeLocation(v)
		if err != nil {
			return err
		}
		if !set[l.Pack] {
			return nil
		}
		if check != nil {
			var id ID
			copy(id[:], k[1:])
			if err := check(id, l.Pack); err != nil {
				return err
			}
		}
		return b.Delete(k, nil)
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := b.Delete(packKey(id), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	r.dirty.Store(true)
	return nil
}

// waitOldReaders waits until no reader holds a checkpoint older than the
// current one (publish removes the ones no reader holds), or wait passes.
func (r *Repository) waitOldReaders(ctx context.Context, wait time.Duration) bool {
	snaps := filepath.Join(r.dir, dirSnapshots)
	deadline := time.Now().Add(wait)
	for {
		cur, err := readCurrent(r.dir)
		if err != nil {
			return false
		}
		pruneCheckpoints(snaps, cur)
		old := false
		entries, _ := os.ReadDir(snaps)
		for _, e := range entries {
			if g, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".lock"), 10, 64); err == nil && g < cur {
				old = true
			}
		}
		if !old {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// emptyQuarantine deletes what writers set aside in quarantine/ more than
// age ago (nothing when age is not positive), and returns how many files
// it deleted.
func (r *Repository) emptyQuarantine(ctx context.Context, age time.Duration) (int, error) {
	if age <= 0 {
		return 0, nil
	}
	var old []string
	for info, err := range r.be.List(ctx, prefixQuarantine) {
		if err != nil {
			return 0, fmt.Errorf("gc: list quarantine: %w", err)
		}
		if time.Since(info.ModTime) > age {
			old = append(old, info.Name)
		}
	}
	for _, name := range old {
		if err := r.be.Delete(ctx, name); err != nil {
			return 0, fmt.Errorf("gc: delete %s: %w", name, err)
		}
		r.log.Info(fmt.Sprintf("gc: deleted %s, in quarantine for more than %v", name, age))
	}
	return len(old), nil
}
