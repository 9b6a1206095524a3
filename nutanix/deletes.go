package nutanix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Deletes are idempotent, and never report a deletion that did not
// happen:
//   - a DELETE answered 404 counts as done only when a GET of the same
//     object answers 404 too (a repeated DELETE can answer 404 while the
//     first one's task still runs, and that task may fail);
//   - a delete whose task cannot be found is done only when a GET of the
//     object answers 404;
//   - an object the backend cannot address (a volume group without v2.0)
//     is an error, not success;
//   - a snapshot ID alone does not say which API made it: a v4 recovery
//     point, a v3 vm_snapshot and a v2.0 snapshot live in different
//     namespaces (snapshot.API tells them apart). GetSnapshot and
//     DeleteSnapshot look for the ID in every snapshot namespace the
//     endpoint serves (as the probe found), the backend's own first. The
//     snapshot is gone only when all of them answer 404; when one of them
//     could not be asked (its probe got no answer) the answer is an error
//     wrapping ErrUnsupported: the snapshot may still exist. A namespace
//     the endpoint does not serve holds nothing made through it.

// absentError is what a delete returns when the object was not there: the
// DELETE (or the GET for an ETag) and a GET of it answered 404. It matches
// ErrNotFound; the public Delete methods turn it into success.
type absentError struct{ op string }

func (e *absentError) Error() string        { return e.op + ": not found" }
func (e *absentError) Is(target error) bool { return target == ErrNotFound }

func isAbsent(err error) bool {
	var a *absentError
	return errors.As(err, &a)
}

// ignoreAbsent turns "it was not there" into success (deletes are
// idempotent); every other error stays.
func ignoreAbsent(err error) error {
	if isAbsent(err) {
		return nil
	}
	return err
}

// confirmAbsent reads path after a delete that did not prove itself
// (why): an *absentError when the object is gone, else an error.
func confirmAbsent(ctx context.Context, r *rest, path, op, why string) error {
	_, err := r.do(ctx, request{method: http.MethodGet, path: path})
	switch {
	case errors.Is(err, ErrNotFound):
		return &absentError{op: op}
	case err == nil:
		return fmt.Errorf("%s: %s, yet it still exists", op, why)
	}
	return fmt.Errorf("%s: %s, and reading it back failed: %w", op, why, err)
}

// finishDelete interprets a DELETE of path: its error (a 404 is confirmed
// by reading path back), then waits for its task (one that cannot be found
// is confirmed the same way).
func finishDelete(ctx context.Context, r *rest, path, op string, err error, wait func() error) error {
	if errors.Is(err, ErrNotFound) {
		return confirmAbsent(ctx, r, path, op, "the DELETE answered 404")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := wait(); err != nil {
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := confirmAbsent(ctx, r, path, op, "its task cannot be found"); !isAbsent(err) {
			return err
		}
	}
	return nil
}

// snapshotSpace is one namespace a snapshot ID can live in.
type snapshotSpace struct {
	name string
	// unknown, when set, says why it is not known whether the endpoint
	// serves this namespace; get and del are then nil.
	unknown string
	get     func(ctx context.Context, id string) (Snapshot, error) // ErrNotFound: not here
	del     func(ctx context.Context, id string) error             // *absentError: not here
}

// getSnapshotIn reads id from the first space that has it.
func getSnapshotIn(ctx context.Context, spaces []snapshotSpace, id string) (Snapshot, error) {
	for _, sp := range spaces {
		if sp.unknown != "" {
			continue
		}
		s, err := sp.get(ctx, id)
		if !errors.Is(err, ErrNotFound) {
			return s, err
		}
	}
	return Snapshot{}, notInAny("get snapshot", id, spaces)
}

// deleteSnapshotIn deletes id from the first space that has it; nil when
// every space answers that it is not there.
func deleteSnapshotIn(ctx context.Context, spaces []snapshotSpace, id string) error {
	for _, sp := range spaces {
		if sp.unknown != "" {
			continue
		}
		if err := sp.del(ctx, id); !isAbsent(err) {
			return err
		}
	}
	if err := notInAny("delete snapshot", id, spaces); !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// notInAny is the error for an id none of the spaces asked holds:
// ErrNotFound when every space could be asked, else ErrUnsupported.
func notInAny(op, id string, spaces []snapshotSpace) error {
	var asked, unknown []string
	for _, sp := range spaces {
		if sp.unknown != "" {
			unknown = append(unknown, sp.name+" ("+sp.unknown+")")
		} else {
			asked = append(asked, sp.name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%s %s: not in %s, and %s could not be asked, so it may still exist: %w",
			op, id, strings.Join(asked, ", "), strings.Join(unknown, ", "), ErrUnsupported)
	}
	return fmt.Errorf("%s %s: not in %s: %w", op, id, strings.Join(asked, ", "), ErrNotFound)
}

// recoveryPointSpace is where v4 recovery points live.
func (b *v4Backend) recoveryPointSpace() snapshotSpace {
	return snapshotSpace{name: "v4 recovery points", get: b.getRecoveryPoint, del: b.deleteRecoveryPoint}
}

// snapshotSpaces of the v4 backend: its recovery points, then what the
// endpoint serves of v3 vm_snapshots and v2.0 snapshots.
func (b *v4Backend) snapshotSpaces() []snapshotSpace {
	spaces := []snapshotSpace{b.recoveryPointSpace()}
	if b.v3 != nil {
		spaces = append(spaces, b.v3.v3SnapshotSpaces()...)
	}
	return spaces
}

// v3SnapshotSpaces are v3 vm_snapshots and, when the endpoint serves them,
// v2.0 snapshots, the one the backend snapshots with first. vm_snapshots
// are asked whatever the probe found: when the endpoint does not serve
// them its 404 says the same as the probe, and when it does (the probe's
// picture is stale) a vm_snapshot is not missed.
func (b *v3Backend) v3SnapshotSpaces() []snapshotSpace {
	spaces := []snapshotSpace{{name: "v3 vm_snapshots", get: b.getVMSnapshot, del: b.deleteVMSnapshot}}
	if b.v2base != "" {
		v2 := snapshotSpace{name: "v2.0 snapshots", get: b.v2GetSnapshot, del: b.v2DeleteSnapshot}
		if b.cbt {
			spaces = append(spaces, v2)
		} else {
			spaces = append([]snapshotSpace{v2}, spaces...)
		}
	}
	return spaces
}

// snapshotSpaces of the v3 backend: its own, then v4 recovery points when
// the endpoint serves them (or when that is unknown).
func (b *v3Backend) snapshotSpaces() []snapshotSpace {
	spaces := b.v3SnapshotSpaces()
	switch {
	case b.rp != nil:
		spaces = append(spaces, b.rp.recoveryPointSpace())
	case b.rpUnknown != "":
		spaces = append(spaces, snapshotSpace{name: "v4 recovery points", unknown: b.rpUnknown})
	}
	return spaces
}
