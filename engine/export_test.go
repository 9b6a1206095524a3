package engine

import (
	"path/filepath"
	"time"
)

// packPath is the file of pack p in the repository directory dir, as a
// backend.Local keeps it (tests).
func packPath(dir string, p PackID) string {
	return filepath.Join(dir, filepath.FromSlash(packName(p)))
}

// PackOf is the path of the pack that holds blob id (tests).
func PackOf(r *Repository, id ID) (string, error) {
	l, err := r.lookup(id)
	if err != nil {
		return "", err
	}
	return packPath(r.dir, l.Pack), nil
}

// SetFaultHook makes fault call hook at every fault point until the
// returned function is called (tests).
func SetFaultHook(hook func(step string) error) (restore func()) {
	faultHook.Store(&hook)
	return func() { faultHook.Store(nil) }
}

// FaultRecordWritten is the fault point after a commit's record file is
// durable: from there on the restore point exists (tests).
const FaultRecordWritten = fpRecordWritten

// FaultRPIndexed is the fault point after a commit's index batch, before
// it is published (tests).
const FaultRPIndexed = fpRPIndexed

// FaultForgetMarked is the fault point after a forget's tombstones are
// durable: from there on the restore points are as good as gone (tests).
const FaultForgetMarked = fpForgetMarked

// BlobAt is the pack file holding blob id and the blob's offset in it
// (tests).
func BlobAt(r *Repository, id ID) (string, int64, error) {
	l, err := r.lookup(id)
	if err != nil {
		return "", 0, err
	}
	return packPath(r.dir, l.Pack), int64(l.Offset), nil
}

// IndexedPacks are the pack files the index of r names (tests).
func IndexedPacks(r *Repository) (map[string]bool, error) {
	db, release := r.reader()
	defer release()
	out := map[string]bool{}
	err := scanSpace(db, keyPack, func(k, _ []byte) error {
		var p PackID
		copy(p[:], k[1:])
		out[packPath(r.dir, p)] = true
		return nil
	})
	return out, err
}

// SetRemoteRefreshEvery sets how often a shared repository's reader lists
// the backend on Refresh, until the returned function is called (tests).
func SetRemoteRefreshEvery(d time.Duration) (restore func()) {
	old := remoteRefreshEvery
	remoteRefreshEvery = d
	return func() { remoteRefreshEvery = old }
}

// SetLockTimes sets the refresh interval and staleness of lock objects,
// until the returned function is called (tests).
func SetLockTimes(refresh, stale time.Duration) (restore func()) {
	r, s := lockRefresh, lockStale
	lockRefresh, lockStale = refresh, stale
	return func() { lockRefresh, lockStale = r, s }
}
