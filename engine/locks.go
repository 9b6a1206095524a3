package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/cockroachdb/pebble/v2"
)

// Retention locks (docs/FORMAT.md, "Retention locks"). A lock is an
// immutable record file records/lock/<lock id>.rec naming a restore point
// and a time until which nothing may remove it, nor any chunk or page it
// references. Locks are only ever added: a restore point's lock is the
// latest "until" of its lock files, so a lock cannot be shortened, and
// removing a lock file by hand does not unlock (the index keeps a copy and
// a writer writes the file again).
const (
	dirLocks       = "records/lock"
	prefixLocks    = dirLocks + "/"
	recordKindLock = 'l'
	lockVersion    = 1
)

// ErrRetentionLocked: an operation would remove a restore point whose
// retention lock has not expired.
var ErrRetentionLocked = errors.New("restore point is under a retention lock")

type lockRecord struct {
	V     int       `json:"v"`
	ID    string    `json:"id"`
	RP    string    `json:"rp"`
	Until time.Time `json:"until"`
	Set   time.Time `json:"set"`
}

// lockKey is a lock's index key: l + restore point ID + lock ID → until
// (u64 big-endian unix seconds), so a prefix scan finds a point's locks.
func lockKey(rpID, lockID string) []byte {
	return append(append([]byte{keyLock}, rpID...), lockID...)
}

func lockRecordName(id string) string { return prefixLocks + id + recordExt }

// LockRestorePoint sets a retention lock on rp until until (rounded down to
// the second). It fails when until is not in the future or is before the
// lock rp already has; a lock until the same time is a no-op.
func (r *Repository) LockRestorePoint(ctx context.Context, rp *RestorePoint, until time.Time) (err error) {
	defer r.guardIndex(&err, "lock "+rp.Name())
	if !r.writable {
		return fmt.Errorf("lock: %w", ErrReadOnly)
	}
	until = until.UTC().Truncate(time.Second)
	cur, err := r.lockedUntil(r.db, rp.ID)
	if err != nil {
		return fmt.Errorf("lock %s: %w", rp.Name(), err)
	}
	if err := CheckTime(until); err != nil {
		return fmt.Errorf("lock %s until %s: %w", rp.Name(), FormatTime(until), err)
	}
	switch {
	case !until.After(time.Now()):
		return fmt.Errorf("lock %s until %s: that time has passed", rp.Name(), FormatTime(until))
	case until.Equal(cur):
		// Already locked so: the store's retention is set again (it may
		// have failed the first time).
		return r.retainPoint(ctx, rp, until)
	case until.Before(cur):
		return fmt.Errorf("lock %s until %s: %w until %s, and a retention lock cannot be shortened", rp.Name(), FormatTime(until), ErrRetentionLocked, FormatTime(cur))
	}
	b := r.db.NewBatch()
	defer b.Close()
	if _, err := r.addLock(ctx, b, rp.ID, until); err != nil {
		return fmt.Errorf("lock %s: %w", rp.Name(), err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("lock %s: %w", rp.Name(), err)
	}
	if err := r.publish(); err != nil {
		return fmt.Errorf("lock %s: locked, but publishing to readers failed: %w", rp.Name(), err)
	}
	return r.retainPoint(ctx, rp, until)
}

// addLock writes a new lock file for restore point rpID durably and adds
// its index entry to b.
func (r *Repository) addLock(ctx context.Context, b *pebble.Batch, rpID string, until time.Time) (string, error) {
	var idb [16]byte
	rand.Read(idb[:])
	rec := lockRecord{V: lockVersion, ID: hex.EncodeToString(idb[:]), RP: rpID, Until: until.UTC().Truncate(time.Second), Set: time.Now().UTC().Truncate(time.Second)}
	if err := r.putLockFile(ctx, rec); err != nil {
		return "", err
	}
	return rec.ID, b.Set(lockKey(rpID, rec.ID), lockValue(rec.Until), nil)
}

// putLockFile stores lock record rec durably.
func (r *Repository) putLockFile(ctx context.Context, rec lockRecord) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("lock record %s: %w", rec.ID, err)
	}
	if err := backend.PutBytes(ctx, r.be, lockRecordName(rec.ID), encodeRecordFile(r.fileMeta(), recordKindLock, rec.ID, body)); err != nil {
		return fmt.Errorf("write lock record %s: %w", rec.ID, err)
	}
	return nil
}

func lockValue(until time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(until.Unix()))
}

// lockedUntil returns the latest lock of restore point rpID, or the zero
// time when it has none.
func (r *Repository) lockedUntil(db pebble.Reader, rpID string) (time.Time, error) {
	locks, err := r.locksOf(db, rpID)
	if err != nil {
		return time.Time{}, err
	}
	var until time.Time
	for _, l := range locks {
		if l.until.After(until) {
			until = l.until
		}
	}
	return until, nil
}

type indexedLock struct {
	rp, id string
	until  time.Time
}

// locksOf returns the locks the index holds for rpID (every restore point
// when rpID is empty).
func (r *Repository) locksOf(db pebble.Reader, rpID string) ([]indexedLock, error) {
	prefix := append([]byte{keyLock}, rpID...)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	defer it.Close()
	var out []indexedLock
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[1:]
		if len(k) != 64 || len(it.Value()) != 8 {
			continue
		}
		out = append(out, indexedLock{rp: string(k[:32]), id: string(k[32:]),
			until: time.Unix(int64(binary.BigEndian.Uint64(it.Value())), 0).UTC()})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return out, nil
}

// fillLocks sets the LockedUntil of each restore point from db.
func (r *Repository) fillLocks(db pebble.Reader, rps ...*RestorePoint) error {
	for _, rp := range rps {
		u, err := r.lockedUntil(db, rp.ID)
		if err != nil {
			return err
		}
		rp.LockedUntil = u
	}
	return nil
}

// readLockFile reads and checks lock record id.
func (r *Repository) readLockFile(ctx context.Context, id string) (lockRecord, error) {
	var rec lockRecord
	body, err := r.readRecord(ctx, lockRecordName(id), recordKindLock, id)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(body, &rec); err != nil || rec.V != lockVersion || rec.ID != id || !validRecordID(rec.RP) || rec.Until.IsZero() {
		return rec, fmt.Errorf("%s/%s%s: %w: not a lock record of version %d", dirLocks, id, recordExt, ErrCorrupt, lockVersion)
	}
	return rec, nil
}

// listRecordIDs returns the IDs of the record files under prefix.
func (r *Repository) listRecordIDs(ctx context.Context, prefix string) ([]string, error) {
	var ids []string
	for info, err := range r.be.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", strings.TrimSuffix(prefix, "/"), err)
		}
		if id, ok := strings.CutSuffix(strings.TrimPrefix(info.Name, prefix), recordExt); ok && validRecordID(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// reconcileLocks makes the index's locks agree with the lock files when a
// writer opens the repository: a lock file the index lacks is indexed (a
// lock whose restore point never committed stays harmless); a lock the
// index holds without its file gets the file written again, since a lock
// must not end because its file was removed.
func (r *Repository) reconcileLocks(ctx context.Context) error {
	ids, err := r.listRecordIDs(ctx, prefixLocks)
	if err != nil {
		return err
	}
	all, err := r.locksOf(r.db, "")
	if err != nil {
		return err
	}
	indexed := map[string]indexedLock{}
	for _, l := range all {
		indexed[l.id] = l
	}
	b := r.db.NewBatch()
	defer b.Close()
	for _, id := range ids {
		if _, ok := indexed[id]; ok {
			delete(indexed, id)
			continue
		}
		rec, err := r.readLockFile(ctx, id)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return err
			}
			dst, qerr := r.quarantine(ctx, lockRecordName(id))
			if qerr != nil {
				return fmt.Errorf("%v; %w", err, qerr)
			}
			r.log.Warn(fmt.Sprintf("%v: not indexed, moved to %s", err, dst))
			continue
		}
		if err := b.Set(lockKey(rec.RP, rec.ID), lockValue(rec.Until), nil); err != nil {
			return err
		}
	}
	if b.Count() > 0 {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("index lock records: %w", err)
		}
		r.dirty.Store(true)
	}
	if r.remote && len(indexed) > 0 {
		// Shared: a lock file goes only with its forgotten point, which
		// another host removed.
		b := r.db.NewBatch()
		defer b.Close()
		for _, l := range indexed {
			if err := b.Delete(lockKey(l.rp, l.id), nil); err != nil {
				return err
			}
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("unindex lock records: %w", err)
		}
		r.dirty.Store(true)
		return nil
	}
	for _, l := range indexed {
		if err := r.restoreLockFile(ctx, l, "the index"); err != nil {
			return err
		}
	}
	return nil
}

// restoreLockFile writes again the file of lock l, which an index holds
// but the backend lacks (from: which index, for the log).
func (r *Repository) restoreLockFile(ctx context.Context, l indexedLock, from string) error {
	if err := r.putLockFile(ctx, lockRecord{V: lockVersion, ID: l.id, RP: l.rp, Until: l.until, Set: time.Now().UTC().Truncate(time.Second)}); err != nil {
		return err
	}
	r.log.Warn(fmt.Sprintf("lock %s of restore point %s (until %s) had no record file: written again from %s", l.id, l.rp, FormatTime(l.until), from))
	return nil
}
