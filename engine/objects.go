package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// The repository's immutable files are objects of its backend
// (engine/backend): packs, parity sidecars, record files, config.json and
// what a writer set aside in quarantine/. Their names are the paths of
// docs/FORMAT.md, "Directory", so a repository written before the backend
// existed opens as it is. The index, the checkpoints, the writer lock, the
// journal and the legacy tmp/ stay in the local directory.
const (
	prefixPacks      = dirPacks + "/"
	prefixRecords    = dirRecords + "/"
	prefixRPs        = dirRPs + "/"
	prefixQuarantine = dirQuarantine + "/"
	packExt          = ".pack"
	parityExt        = ".par"
)

// packName is the object name of pack p: packs/<xx>/<id>.pack.
func packName(p PackID) string {
	s := p.String()
	return prefixPacks + s[:2] + "/" + s + packExt
}

// parityName is the object name of pack p's parity sidecar.
func parityName(p PackID) string {
	s := p.String()
	return prefixPacks + s[:2] + "/" + s + parityExt
}

// rpRecordName is the object name of the record file of restore point id.
func rpRecordName(id string) string { return prefixRPs + id + recordExt }

// openBackend returns the backend the repository in dir keeps its objects
// in: be when the caller gave one (which it then closes itself), else a
// Local backend of dir, which the repository owns. A dir that does not
// exist is ErrNotRepository.
func openBackend(dir string, be backend.Backend) (_ backend.Backend, own bool, err error) {
	if be != nil {
		return be, false, nil
	}
	l, err := backend.OpenLocal(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("open repository %s: %w (no such directory; create one with 'ahvfs init')", dir, ErrNotRepository)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open repository %s: %w", dir, err)
	}
	return l, true, nil
}

// tempSweeper is implemented by backends whose interrupted Puts can leave
// temporary files behind (backend.Local).
type tempSweeper interface {
	SweepTemp(ctx context.Context, prefix string, olderThan time.Duration) (int, error)
}

// sweepTemp removes what Puts killed before they finished left under the
// repository's object prefixes. Only a writer holding the lock calls it,
// before its first Put: no other Put of this repository is running then,
// but for a hold's.
func (r *Repository) sweepTemp(ctx context.Context) error {
	s, ok := r.be.(tempSweeper)
	if !ok {
		return nil
	}
	// Holds and job records are written without the writer lock: only
	// old temporary files of theirs are gone for good.
	ages := map[string]time.Duration{prefixHolds: holdTempAge, prefixJobs: jobTempAge}
	for _, prefix := range []string{prefixPacks, prefixRPs, prefixLocks, prefixForgets, prefixHolds, prefixJobs, prefixQuarantine, configName} {
		n, err := s.SweepTemp(ctx, prefix, ages[prefix])
		if err != nil {
			return fmt.Errorf("open repository %s: %w", r.dir, err)
		}
		if n > 0 {
			r.log.Info(fmt.Sprintf("removed %d temporary file(s) of interrupted writes under %s", n, prefix))
		}
	}
	return nil
}
