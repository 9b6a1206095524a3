package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// Forgetting a restore point (docs/FORMAT.md, "Forgetting"). Its record
// file is the truth, and a writer that finds a record file the index lacks
// indexes it again, so forgetting cannot simply delete: it first stores a
// tombstone records/forget/<id>.rec, then removes the index entries, the
// record file and the point's lock files, and last the tombstone. A writer
// that opens the repository finishes every forget a tombstone names, so a
// kill at any step leaves the point either whole or on its way out, never
// half-indexed. The chunks and pages stay until gc.
const (
	dirForgets       = "records/forget"
	prefixForgets    = dirForgets + "/"
	recordKindForget = 'f'
	forgetVersion    = 1
)

type forgetRecord struct {
	V    int       `json:"v"`
	ID   string    `json:"id"`
	Name string    `json:"name"`
	At   time.Time `json:"at"`
	// By is random, per forget: a forget that backs out deletes only the
	// tombstones that are still its own.
	By string `json:"by,omitempty"`
}

func forgetRecordName(id string) string { return prefixForgets + id + recordExt }

// Forget removes restore points from the repository. It removes none when
// any of them is under a retention lock that has not expired: the error
// (ErrRetentionLocked) names each such point and its lock. Expired locks
// go with their point.
func (r *Repository) Forget(ctx context.Context, rps []*RestorePoint) (err error) {
	defer r.guardIndex(&err, "forget")
	if !r.writable {
		return fmt.Errorf("forget: %w", ErrReadOnly)
	}
	now := time.Now()
	var locked []string
	for _, rp := range rps {
		until, err := r.lockedUntil(r.db, rp.ID)
		if err != nil {
			return fmt.Errorf("forget %s: %w", rp.Name(), err)
		}
		if until.After(now) {
			locked = append(locked, fmt.Sprintf("%s is locked until %s", rp.Name(), FormatTime(until)))
		}
	}
	if len(locked) > 0 {
		return fmt.Errorf("forget: %w: %s; nothing was removed", ErrRetentionLocked, strings.Join(locked, "; "))
	}
	r.forgetMu.Lock()
	defer r.forgetMu.Unlock()
	var byb [8]byte
	rand.Read(byb[:])
	by := hex.EncodeToString(byb[:])
	// The tombstones, like the deletions below, go eachParallel: their
	// syncs overlap, and forgetting 20 points takes one disk wait, not 20.
	if err := eachParallel(ctx, backendWidth, rps, func(rp *RestorePoint) error {
		body, err := json.Marshal(forgetRecord{V: forgetVersion, ID: rp.ID, Name: rp.Name(), At: now.UTC().Truncate(time.Second), By: by})
		if err != nil {
			return fmt.Errorf("forget %s: %w", rp.Name(), err)
		}
		if err := backend.PutBytes(ctx, r.be, forgetRecordName(rp.ID), encodeRecordFile(r.fileMeta(), recordKindForget, rp.ID, body)); err != nil {
			return fmt.Errorf("forget %s: write tombstone: %w", rp.Name(), err)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := fault(fpForgetMarked); err != nil {
		return err
	}
	ids := make([]string, len(rps))
	for i, rp := range rps {
		ids[i] = rp.ID
	}
	// Only now, with the tombstones stored, are the holds listed: a hold
	// added from here on sees a tombstone and backs out (AddHold).
	if err := r.checkHolds(ctx, ids, by); err != nil {
		return err
	}
	if err := fault(fpForgetChecked); err != nil {
		return err
	}
	if err := r.finishForgets(ctx, ids); err != nil {
		return fmt.Errorf("forget: %w", err)
	}
	return nil
}

// checkHolds fails with ErrHeld when a hold keeps any of restore points
// ids, after deleting the tombstones forget by wrote for them again.
func (r *Repository) checkHolds(ctx context.Context, ids []string, by string) error {
	holds, err := r.Holds(ctx)
	if err != nil {
		return fmt.Errorf("forget: %w", errors.Join(err, r.dropTombstones(context.WithoutCancel(ctx), ids, by)))
	}
	held := heldBy(holds, idSet(ids))
	if len(held) == 0 {
		return nil
	}
	err = heldError("forget", held)
	if derr := r.dropTombstones(context.WithoutCancel(ctx), ids, by); derr != nil {
		err = fmt.Errorf("%w; but removing its tombstones failed, and the forget finishes once nothing holds the points: %w", err, derr)
	}
	return err
}

func idSet(ids []string) map[string]bool {
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// dropTombstones deletes the tombstones of ids that forget by wrote (a
// tombstone another forget of the same point wrote since is its own).
func (r *Repository) dropTombstones(ctx context.Context, ids []string, by string) error {
	return eachParallel(ctx, backendWidth, ids, func(id string) error {
		rec, err := r.readTombstone(ctx, id)
		if errors.Is(err, backend.ErrNotExist) {
			return nil
		}
		if err == nil && rec.By != by {
			return nil
		}
		if err := r.be.Delete(ctx, forgetRecordName(id)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("delete tombstone: %w", err)
		}
		return nil
	})
}

// finishForgets removes restore points ids from the index (their records,
// ID entries and locks, and the VM record of a VM left without points) in
// one batch, publishes the index, and only then deletes their record and
// lock files and last their tombstones: a reader never sees a restore point
// whose record file is gone without its tombstone. Each step tolerates that
// an earlier, interrupted run already did it.
func (r *Repository) finishForgets(ctx context.Context, ids []string) error {
	b := r.db.NewIndexedBatch()
	defer b.Close()
	files, err := r.unindexRPs(b, ids)
	if err != nil {
		return err
	}
	if b.Count() > 0 {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("remove from the index: %w", err)
		}
		r.dirty.Store(true)
	}
	if err := fault(fpForgetIndexed); err != nil {
		return err
	}
	if err := r.publish(); err != nil {
		return fmt.Errorf("removed from the index, but publishing to readers failed: %w", err)
	}
	if err := eachParallel(ctx, backendWidth, files, func(name string) error {
		if err := r.be.Delete(ctx, name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := fault(fpForgetFilesGone); err != nil {
		return err
	}
	return eachParallel(ctx, backendWidth, ids, func(id string) error {
		if err := r.be.Delete(ctx, forgetRecordName(id)); err != nil {
			return fmt.Errorf("delete tombstone: %w", err)
		}
		return nil
	})
}

// unindexRPs removes restore points ids from the index through b: their
// records, ID entries and locks, and the VM record of a VM left without
// points. It returns the names of their record and lock files.
func (r *Repository) unindexRPs(b *pebble.Batch, ids []string) ([]string, error) {
	var files []string
	for _, id := range ids {
		locks, err := r.locksOf(b, id)
		if err != nil {
			return nil, err
		}
		for _, l := range locks {
			if err := b.Delete(lockKey(l.rp, l.id), nil); err != nil {
				return nil, err
			}
			files = append(files, lockRecordName(l.id))
		}
		files = append(files, rpRecordName(id))
		key, err := getValue(b, rpIDKey(id))
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return nil, err
		}
		if len(key) < 10 || key[0] != keyRP {
			return nil, fmt.Errorf("%w: the index entry of restore point %s names key %x; run 'ahvfs repair index'", ErrCorrupt, id, key)
		}
		if err := b.Delete(key, nil); err != nil {
			return nil, err
		}
		if err := b.Delete(rpIDKey(id), nil); err != nil {
			return nil, err
		}
		if err := r.dropVMIfEmpty(b, key[1:len(key)-9]); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// dropVMIfEmpty deletes the VM record of vm (its index form) when b holds
// no restore point of it any more.
func (r *Repository) dropVMIfEmpty(b *pebble.Batch, vm []byte) error {
	prefix := rpPrefix(vm)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	empty := !it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	if !empty {
		return nil
	}
	return b.Delete(vmKey(vm), nil)
}

// forgetsPending returns the IDs of the tombstones in records/forget/:
// forgets a kill interrupted.
func (r *Repository) forgetsPending(ctx context.Context) ([]string, error) {
	return r.listRecordIDs(ctx, prefixForgets)
}

// resumeForgets completes, when a writer opens the repository, every
// forget whose tombstone is still there. A tombstone must be a sealed,
// intact record of its ID, and must not name a point under a lock that
// has not expired (Forget checks locks before it writes one): any other
// file there is set aside in quarantine/ and removes nothing.
func (r *Repository) resumeForgets(ctx context.Context) error {
	names, err := r.forgetsPending(ctx)
	if err != nil || len(names) == 0 {
		return err
	}
	var ids []string
	for _, id := range names {
		bad := r.checkTombstone(ctx, id)
		if bad == nil {
			ids = append(ids, id)
			continue
		}
		dst, qerr := r.quarantine(ctx, forgetRecordName(id))
		if qerr != nil {
			return fmt.Errorf("%v; %w", bad, qerr)
		}
		r.log.Warn(fmt.Sprintf("%v: nothing removed, the file was moved to %s", bad, dst))
	}
	if len(ids) == 0 {
		return nil
	}
	// A forget killed before it listed the holds may name a held point:
	// that point waits, tombstone and all, until nothing holds it. The
	// tombstone stays, since this process cannot tell an interrupted forget
	// from one still running elsewhere (a shared repository), which may
	// rely on it (AddHold backs out on seeing it).
	holds, err := r.Holds(ctx)
	if err != nil {
		return err
	}
	if held := heldBy(holds, idSet(ids)); len(held) > 0 {
		waiting := idSet(nil)
		for _, h := range held {
			if h.RP == "" { // a damaged hold holds all
				return nil
			}
			waiting[h.RP] = true
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return waiting[id] })
		r.log.Warn(fmt.Sprintf("%d interrupted forget(s) wait until nothing holds their restore points: %v", len(waiting), heldError("finish the forget", held)))
		if len(ids) == 0 {
			return nil
		}
	}
	if err := r.finishForgets(ctx, ids); err != nil {
		return fmt.Errorf("finish the interrupted forget of %d restore point(s): %w", len(ids), err)
	}
	r.log.Info(fmt.Sprintf("finished the interrupted forget of %d restore point(s)", len(ids)))
	return nil
}

// readTombstone reads and checks the tombstone of id.
func (r *Repository) readTombstone(ctx context.Context, id string) (forgetRecord, error) {
	var rec forgetRecord
	name := forgetRecordName(id)
	body, err := r.readRecord(ctx, name, recordKindForget, id)
	if err != nil {
		return rec, fmt.Errorf("tombstone: %w", err)
	}
	if err := json.Unmarshal(body, &rec); err != nil || rec.V != forgetVersion || rec.ID != id {
		return rec, fmt.Errorf("tombstone %s: %w: not a tombstone of version %d for %s", name, ErrCorrupt, forgetVersion, id)
	}
	return rec, nil
}

// checkTombstone says why tombstone id must not be acted on, or nil.
func (r *Repository) checkTombstone(ctx context.Context, id string) error {
	name := forgetRecordName(id)
	rec, err := r.readTombstone(ctx, id)
	if err != nil {
		return err
	}
	until, err := r.lockedUntil(r.db, id)
	if err != nil {
		return fmt.Errorf("tombstone %s: %w", name, err)
	}
	if until.After(time.Now()) {
		return fmt.Errorf("tombstone %s names %s, which is locked until %s", name, rec.Name, FormatTime(until))
	}
	return nil
}
