package engine

import "sync/atomic"

// Fault points name the steps of a seal, a commit, a publish, a reconcile
// and an index rebuild between which a crash or an error can fall. In
// production nothing is set and fault returns nil; the crash tests set a
// hook (export_test.go) that kills the process with SIGKILL, or returns an
// error, at each step in turn.
const (
	fpPackStored      = "seal: pack stored"
	fpParityStored    = "seal: sidecar stored"
	fpPackIndexed     = "seal: index batch committed"
	fpPagesFlushed    = "commit: manifest pages sealed"
	fpRecordWritten   = "commit: record file written"
	fpRPIndexed       = "commit: index batch committed"
	fpCheckpointMade  = "publish: checkpoint made"
	fpCheckpointNamed = "publish: checkpoint renamed"
	fpCurrentWritten  = "publish: CURRENT written"
	fpReconciled      = "open: record files reconciled"
	fpOrphanIndexed   = "open: unindexed pack indexed"
	fpRebuildFilled   = "rebuild: new index filled"
	fpRebuildReady    = "rebuild: new index renamed to index.ready"
	fpRebuildOldMoved = "rebuild: old index renamed to index.old"
	fpRebuildSwapped  = "rebuild: index.ready renamed to index"
	fpForgetMarked    = "forget: tombstones written"
	fpForgetChecked   = "forget: no hold found"
	fpForgetIndexed   = "forget: index batch committed"
	fpForgetFilesGone = "forget: record and lock files deleted"
	fpGCRewritten     = "gc: kept blobs stored in new packs"
	fpGCUnindexed     = "gc: old packs removed from the index"
	fpGCPackDeleted   = "gc: a pack and its sidecar deleted"
	fpHoldWritten     = "hold: record written"
)

var faultHook atomic.Pointer[func(step string) error]

// fault runs the test hook at step, if one is set.
func fault(step string) error {
	if h := faultHook.Load(); h != nil {
		return (*h)(step)
	}
	return nil
}
