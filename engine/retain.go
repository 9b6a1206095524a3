package engine

import (
	"context"
	"fmt"
	"time"
)

// Retention in the store (docs/FORMAT.md, "Shared repositories"): on a
// bucket with object lock enabled, a retention lock is also set as the
// store's own retention on every object the locked point needs, so that
// nobody — not ahvfs, not a user of the bucket with stolen credentials —
// can delete them before it ends. The lock's record file stays the truth
// for ahvfs; the store's retention is what an attacker cannot undo.

// retainer is a backend whose store can refuse deletions itself.
type retainer interface {
	// ObjectLockEnabled reports whether the store enforces retention.
	ObjectLockEnabled() bool
	// Retain makes the store keep name until at least until.
	Retain(ctx context.Context, name string, until time.Time) error
}

// retainPoint has the store retain, until until, every object rp needs:
// config.json, its record file and lock files, and the packs (with their
// parity sidecars) that hold its pages and chunks. Without object lock it
// does nothing.
func (r *Repository) retainPoint(ctx context.Context, rp *RestorePoint, until time.Time) error {
	ret, ok := r.be.(retainer)
	if !ok || !ret.ObjectLockEnabled() {
		return nil
	}
	names, err := r.pointObjects(ctx, rp)
	if err != nil {
		return fmt.Errorf("retention in the store: %w", err)
	}
	err = eachParallel(ctx, backendWidth, names, func(name string) error {
		return ret.Retain(ctx, name, until)
	})
	if err != nil {
		return fmt.Errorf("retention in the store (run 'ahvfs lock' with the same time again to finish it): %w", err)
	}
	return nil
}

// pointObjects lists the objects restore point rp needs.
func (r *Repository) pointObjects(ctx context.Context, rp *RestorePoint) ([]string, error) {
	names := []string{configName, rpRecordName(rp.ID)}
	locks, err := r.locksOf(r.db, rp.ID)
	if err != nil {
		return nil, err
	}
	for _, l := range locks {
		names = append(names, lockRecordName(l.id))
	}
	packs := map[PackID]bool{}
	add := func(id ID) error {
		l, err := r.lookup(id)
		if err != nil {
			return fmt.Errorf("blob %s: %w", id.Short(), err)
		}
		packs[l.Pack] = true
		return nil
	}
	var buf []byte
	for _, d := range rp.Disks {
		for _, pid := range d.Pages {
			if pid.IsZero() {
				continue
			}
			if err := add(pid); err != nil {
				return nil, err
			}
			b, _, err := r.loadBlob(ctx, pid, buf)
			if err == nil {
				buf, err = b, checkPage(b, r.cfg.PageEntries)
			}
			if err != nil {
				return nil, fmt.Errorf("%s %s: manifest page: %w", rp.Name(), d.Name(), err)
			}
			for off := 0; off < len(b); off += IDSize {
				if id := ID(b[off : off+IDSize]); !id.IsZero() {
					if err := add(id); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	for p := range packs {
		names = append(names, packName(p), parityName(p))
	}
	return names, nil
}
