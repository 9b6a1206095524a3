package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A shared repository (OpenOptions.Remote) lives in a backend several
// hosts write, and each host keeps only a cache of it: the index and its
// checkpoints, in <cache>/<repository ID>/. The cache can be deleted at
// any time; the next open builds it again from the backend. Every open
// brings it up to date (docs/FORMAT.md, "Shared repositories"):
//
//   - under the lock object it took first (repolock.go), so no gc runs
//     meanwhile;
//   - record files first (restore points and locks other hosts added are
//     indexed, those they forgot are unindexed: the backend is the truth);
//   - then packs/: new packs are indexed from their tables, packs the
//     index holds and the backend no longer has (another host's gc) are
//     unindexed. A pack is stored before any record that needs it, so
//     listing packs after records finds every pack a record names.
//
// A reader takes its lock object, then brings the cache up to date through
// a writer's open of the cache (unless a writer of this host has it open,
// whose own open did that), then opens the checkpoint as usual.

// cacheDir is the cache directory of repository id under base, created
// with the layout a writer expects.
func cacheDir(base, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") {
		return "", fmt.Errorf("open repository: %w: config.json has repository ID %q", ErrCorrupt, id)
	}
	dir := filepath.Join(base, id)
	for _, d := range []string{dirPacks, dirTmp, dirSnapshots} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", fmt.Errorf("create cache directory: %w", err)
		}
	}
	return dir, nil
}

// CacheDir is where Open keeps the cache of the shared repository with
// this ID under base.
func CacheDir(base, id string) string { return filepath.Join(base, id) }

// indexExists reports whether dir holds an index (or a rebuilt one that
// the next writer swaps in).
func indexExists(dir string) bool {
	for _, p := range []string{dirIndex, dirIndex + suffixReady} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return true
		}
	}
	return false
}

// lockCmd is the command a lock object names: the program and its verb,
// not the arguments (they may name VMs of an encrypted repository).
func lockCmd() string {
	return strings.Join(os.Args[:min(len(os.Args), 2)], " ")
}

// catchUpPacks indexes the packs other hosts stored and unindexes those
// their gc removed.
func (r *Repository) catchUpPacks(ctx context.Context) error {
	orphans, err := r.findOrphans(ctx)
	if err != nil {
		return err
	}
	// Unindex the removed packs first: the new packs then add the
	// locations of the blobs gc moved (an existing location is kept).
	if err := r.unindexPacksGone(); err != nil {
		return err
	}
	return r.settleOrphans(ctx, orphans)
}

// unindexPacksGone unindexes the packs the index holds that the last
// listing did not find.
func (r *Repository) unindexPacksGone() error {
	var gone []PackID
	err := scanSpace(r.db, keyPack, func(k, _ []byte) error {
		var id PackID
		copy(id[:], k[1:])
		if !r.listedPacks[id] {
			gone = append(gone, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list indexed packs: %w", err)
	}
	if len(gone) == 0 {
		return nil
	}
	if err := r.unindexGonePacks(gone); err != nil {
		return err
	}
	r.log.Debug(fmt.Sprintf("unindexed %d packs another host's gc removed", len(gone)))
	return nil
}

// unindexGonePacks removes the pack records of ids and every location
// pointing into them. The blobs gc kept were stored again in packs that
// catchUpPacks indexes next; a blob left without a location was not
// needed by any restore point when gc ran.
func (r *Repository) unindexGonePacks(ids []PackID) error {
	if err := r.dropPacksFromIndex(ids, nil); err != nil {
		return fmt.Errorf("unindex packs removed from %s: %w", r.be, err)
	}
	return nil
}

// unindexForgotten removes restore points another host forgot (their
// record files are gone) from this host's index.
func (r *Repository) unindexForgotten(ids iter.Seq[string]) error {
	list := slices.Collect(ids)
	if len(list) == 0 {
		return nil
	}
	b := r.db.NewIndexedBatch()
	defer b.Close()
	if _, err := r.unindexRPs(b, list); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("unindex forgotten restore points: %w", err)
	}
	r.dirty.Store(true)
	return nil
}

// openRemoteReader opens a shared repository for reading: its lock object
// first, then the cache brought up to date, then the newest checkpoint.
func (r *Repository) openRemoteReader(ctx context.Context, o OpenOptions) error {
	l, err := acquireRepoLock(ctx, r.be, false, o.LockWait, lockCmd(), r.log)
	if err != nil {
		return err
	}
	r.rlock, r.ownLock = l, true
	if err := r.catchUpCache(ctx, o); err != nil {
		return err
	}
	return r.openReader()
}

// catchUpCache brings this host's cache up to date with the backend
// through a writer's open of the cache, unless a writer of this host has
// it open now (its open did that, and no gc can have run since: it holds a
// lock object). A cache that has no checkpoint yet waits for that writer.
func (r *Repository) catchUpCache(ctx context.Context, o OpenOptions) error {
	w := o
	w.Writable, w.Exclusive, w.LockWait, w.held, w.OwnBackend = true, false, 0, r.rlock, false
	_, cerr := readCurrent(r.dir)
	if cerr != nil {
		w.LockWait = max(o.LockWait, 0)
	}
	wr, err := Open(ctx, filepath.Dir(r.dir), w)
	if err == nil {
		return wr.Close()
	}
	if errors.Is(err, ErrLocked) && cerr == nil {
		r.log.Debug("a writer of this host has the cache open: reading its last checkpoint")
		return nil
	}
	return err
}

// remoteRefreshEvery bounds how often Refresh of a shared repository's
// reader lists the backend.
var remoteRefreshEvery = 30 * time.Second

// catchUpForRefresh brings the cache up to date before a reader's Refresh,
// at most once per remoteRefreshEvery, so that restore points other hosts
// committed appear. A failure is logged: the reader keeps its index.
func (r *Repository) catchUpForRefresh(ctx context.Context) {
	r.catchMu.Lock()
	defer r.catchMu.Unlock()
	if time.Since(r.lastCatchUp) < remoteRefreshEvery {
		return
	}
	r.lastCatchUp = time.Now()
	if err := r.catchUpCache(ctx, r.opts); err != nil {
		r.log.Warn("bring this host's cache up to date with "+r.be.String(), "err", err)
	}
}
