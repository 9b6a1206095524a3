package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Reference is what the repository remembers about a VM's snapshots kept
// on the cluster: the journal's kept record "ref-<vm uuid>".
type Reference struct {
	VMUUID string `json:"vm_uuid"`
	VM     string `json:"vm"`
	// Last is the newest snapshot: incrementals are computed against it.
	Last RefSnapshot `json:"last"`
	// Full is the last full's snapshot, kept only after a differential
	// backup (the next differential is computed against it).
	Full *RefSnapshot `json:"full,omitempty"`
}

// RefSnapshot is one kept snapshot and the restore point read from it.
type RefSnapshot struct {
	Snapshot     nutanix.Snapshot `json:"snapshot"`
	RestorePoint string           `json:"restore_point"` // restore point ID
	Level        string           `json:"level"`
	Time         time.Time        `json:"time"`
	Disks        []RefDisk        `json:"disks"`
}

// RefDisk is a disk stored in the reference's restore point.
type RefDisk struct {
	UUID    string `json:"uuid"`
	N       int    `json:"n"` // disk-N
	Size    int64  `json:"size"`
	Address string `json:"address,omitempty"`
	// From is the UUID the restore point gives the disk when the disk
	// was restored from it (Continue), not read from it: another VM's.
	From string `json:"from,omitempty"`
}

func (s *RefSnapshot) disk(uuid string) (RefDisk, bool) {
	for _, d := range s.Disks {
		if d.UUID == uuid {
			return d, true
		}
	}
	return RefDisk{}, false
}

// snapshots returns the kept snapshots (Last, then Full when distinct).
func (r *Reference) snapshots() []RefSnapshot {
	if r == nil {
		return nil
	}
	out := []RefSnapshot{r.Last}
	if r.Full != nil && r.Full.Snapshot.ID != r.Last.Snapshot.ID {
		out = append(out, *r.Full)
	}
	return out
}

// refOwner names a VM's reference in the journal's kept records.
func refOwner(vmUUID string) string { return "ref-" + vmUUID }

// objects are the reference's snapshots as kept cluster objects.
func (r *Reference) objects() []clusterjob.Object {
	var out []clusterjob.Object
	for _, s := range r.snapshots() {
		out = append(out, snapshotObject(r, s))
	}
	return out
}

func snapshotObject(r *Reference, s RefSnapshot) clusterjob.Object {
	name := s.Snapshot.Name
	if name == "" {
		name = s.Snapshot.ID
	}
	return clusterjob.Object{Kind: clusterjob.KindSnapshot, Name: name, ID: s.Snapshot.ID, API: s.Snapshot.API,
		VMUUID: r.VMUUID, VM: r.VM, Created: s.Time}
}

// LoadReference reads a VM's reference (nil, nil when there is none).
func LoadReference(j *clusterjob.Journal, vmUUID string) (*Reference, error) {
	return loadKept[Reference](j, refOwner(vmUUID), vmUUID)
}

// loadKept reads the kept record of owner, a VM's reference (nil, nil
// when there is none).
func loadKept[T any](j *clusterjob.Journal, owner, vmUUID string) (*T, error) {
	var r T
	ok, err := j.Kept(owner, &r)
	if err != nil {
		return nil, fmt.Errorf("read reference of VM %s: %w", vmUUID, err)
	}
	if !ok {
		return nil, nil
	}
	return &r, nil
}

// putRef keeps r's snapshots and records r, in one atomic write.
func putRef(j *clusterjob.Journal, r *Reference) error {
	if err := j.Keep(refOwner(r.VMUUID), r.objects(), r); err != nil {
		return fmt.Errorf("promote snapshot %s as the reference of %s: %w", r.Last.Snapshot.ID, r.VM, err)
	}
	return nil
}

// chainPlan is the level decided for one VM.
type chainPlan struct {
	Level  string       // engine.LevelFull, LevelIncremental, LevelDifferential
	Base   *RefSnapshot // what changed regions are computed against (nil: full)
	Parent *engine.RestorePoint
	Reason string // why a full although another level was asked or usual
}

// decideLevel picks the level from what was asked and what the reference
// offers, and checks that the base snapshot is still on the cluster and
// its restore point still in the repository.
func decideLevel(ctx context.Context, repo *engine.Repository, cl nutanix.Cluster, ref *Reference, want Level) (chainPlan, error) {
	full := func(reason string) (chainPlan, error) {
		return chainPlan{Level: engine.LevelFull, Reason: reason}, nil
	}
	switch want {
	case LevelFull:
		return full("")
	case LevelCopy:
		return chainPlan{Level: engine.LevelCopy}, nil
	}
	if ref == nil {
		if want == LevelAuto {
			return full("")
		}
		return full("no reference snapshot: first backup of this VM")
	}
	var base *RefSnapshot
	level := engine.LevelIncremental
	switch want {
	case LevelDifferential:
		level = engine.LevelDifferential
		switch {
		case ref.Full != nil:
			base = ref.Full
		case ref.Last.Level == engine.LevelFull:
			base = &ref.Last
		default:
			return full("no full's snapshot kept on the cluster (the last backup was " + ref.Last.Level + ")")
		}
	default:
		b := ref.Last
		base = &b
	}
	if base.Snapshot.API != "" && cl.API() != "" && clusterjob.Family(base.Snapshot.API) != clusterjob.Family(cl.API()) {
		return full(fmt.Sprintf("reference snapshot %s was taken through API %s, now %s", base.Snapshot.ID, base.Snapshot.API, cl.API()))
	}
	if _, err := cl.GetSnapshot(ctx, base.Snapshot.ID); err != nil {
		if errors.Is(err, nutanix.ErrNotFound) {
			return full(fmt.Sprintf("reference snapshot %s vanished from the cluster", base.Snapshot.ID))
		}
		return chainPlan{}, fmt.Errorf("check reference snapshot %s: %w", base.Snapshot.ID, err)
	}
	parent, err := repo.RestorePointByID(ctx, base.RestorePoint)
	if err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			return full(fmt.Sprintf("the reference's restore point %s is no longer in the repository", base.RestorePoint))
		}
		return chainPlan{}, err
	}
	return chainPlan{Level: level, Base: base, Parent: parent}, nil
}

// nextReference is the reference after a committed restore point.
func nextReference(old *Reference, vm nutanix.VM, snap nutanix.Snapshot, rp *engine.RestorePoint, plan chainPlan, disks []RefDisk) *Reference {
	r := &Reference{VMUUID: vm.UUID, VM: vm.Name, Last: RefSnapshot{Snapshot: snap, RestorePoint: rp.ID,
		Level: rp.Level, Time: rp.Time, Disks: disks}}
	if rp.Level == engine.LevelDifferential && plan.Base != nil {
		f := *plan.Base
		r.Full = &f
	}
	return r
}

// released are the snapshots of old that next no longer keeps.
func released(old, next *Reference) []RefSnapshot {
	keep := map[string]bool{}
	for _, s := range next.snapshots() {
		keep[s.Snapshot.ID] = true
	}
	var out []RefSnapshot
	for _, s := range old.snapshots() {
		if !keep[s.Snapshot.ID] {
			out = append(out, s)
		}
	}
	return out
}
