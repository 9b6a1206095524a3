package clusterjob

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
)

// keptRecord is kept/<owner>.json: objects ahvfs keeps on the cluster on
// purpose, such as a VM's reference snapshots, with the owner's record
// (opaque here).
type keptRecord struct {
	Owner   string          `json:"owner"`
	Objects []Object        `json:"objects"`
	Record  json.RawMessage `json:"record,omitempty"`
}

var ownerSafe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)

func (j *Journal) keptFile(owner string) string {
	name := owner
	if j.seal != nil {
		name = "h-" + j.seal.HideName(owner)
	} else if !ownerSafe.MatchString(owner) || strings.HasPrefix(owner, ".") {
		h := sha256.Sum256([]byte(owner))
		name = "h-" + hex.EncodeToString(h[:16])
	}
	return filepath.Join(j.dir, keptDir, name+".json")
}

// Keep records, in one atomic write replacing the owner's earlier record,
// that objs are kept on the cluster on purpose, with record (any JSON
// value) for the owner to read back with Kept. A sweep never deletes a
// kept snapshot, even one a dead job's entry still names: the hand-over
// from a job's temporary object to a kept one is Keep, then the job's
// Forget, and a crash between the two loses nothing.
func (j *Journal) Keep(owner string, objs []Object, record any) error {
	raw, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("keep %s: %w", owner, err)
	}
	b, err := json.Marshal(keptRecord{Owner: owner, Objects: objs, Record: raw})
	if err != nil {
		return fmt.Errorf("keep %s: %w", owner, err)
	}
	if err := writeSealed(j.seal, j.keptFile(owner), b); err != nil {
		return fmt.Errorf("keep %s: %w", owner, err)
	}
	return nil
}

// Unkeep removes the owner's record: its objects are no longer kept. To
// delete them, record them in a job first (Job.Record), then Unkeep, then
// Release them: a crash in between leaves them to the sweep.
func (j *Journal) Unkeep(owner string) error {
	if err := os.Remove(j.keptFile(owner)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unkeep %s: %w", owner, err)
	}
	return nil
}

// Kept reads the owner's record into record; false when there is none.
func (j *Journal) Kept(owner string, record any) (bool, error) {
	b, err := readSealed(j.seal, j.keptFile(owner))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read kept record %s: %w", owner, err)
	}
	var kr keptRecord
	if err := json.Unmarshal(b, &kr); err != nil {
		return false, fmt.Errorf("kept record %s: %w", owner, err)
	}
	if record != nil && len(kr.Record) > 0 {
		if err := json.Unmarshal(kr.Record, record); err != nil {
			return false, fmt.Errorf("kept record %s: %w", owner, err)
		}
	}
	return true, nil
}

// keptSnapshots are the IDs of every kept snapshot.
func (j *Journal) keptSnapshots() (map[string]bool, error) {
	recs, err := j.keptRecords()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, kr := range recs {
		for _, o := range kr.Objects {
			if o.Kind == KindSnapshot && o.ID != "" {
				ids[o.ID] = true
			}
		}
	}
	return ids, nil
}

// keptOfVM are the kept records that hold only snapshots of the VM
// vmUUID made through api (a backup's reference of that VM): their
// owners and objects.
func (j *Journal) keptOfVM(vmUUID string, api nutanix.APIVersion) (owners []string, objs []Object, err error) {
	recs, err := j.keptRecords()
	if err != nil {
		return nil, nil, err
	}
	for _, kr := range recs {
		other := slices.ContainsFunc(kr.Objects, func(o Object) bool {
			return o.Kind != KindSnapshot || o.VMUUID != vmUUID || o.API != api
		})
		if len(kr.Objects) == 0 || other {
			continue
		}
		owners = append(owners, kr.Owner)
		objs = append(objs, kr.Objects...)
	}
	return owners, objs, nil
}

// keptRecords reads every kept record.
func (j *Journal) keptRecords() ([]keptRecord, error) {
	ents, err := os.ReadDir(filepath.Join(j.dir, keptDir))
	if err != nil {
		return nil, fmt.Errorf("journal: kept records: %w", err)
	}
	var out []keptRecord
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := readSealed(j.seal, filepath.Join(j.dir, keptDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("journal: kept record %s: %w", e.Name(), err)
		}
		var kr keptRecord
		if err := json.Unmarshal(b, &kr); err != nil {
			// Unreadable: protecting too little could delete a reference,
			// so the sweep stops.
			return nil, fmt.Errorf("journal: kept record %s is undecodable: %w", e.Name(), err)
		}
		out = append(out, kr)
	}
	return out, nil
}
