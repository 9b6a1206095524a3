package clusterjob

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// outcome is what releasing an object came to.
type outcome int

const (
	// deleted: the object existed and is gone now (checked).
	deleted outcome = iota
	// absent: the object does not exist (never created, or already gone).
	absent
	// kept: a snapshot some kept record protects, or an external
	// repository a VM reads from; not deleted.
	kept
	// unresolved: the object's ID is unknown and the cluster cannot look
	// it up by name; the entry stays.
	unresolved
	// finished: an overwrite was completed (the original VM deleted).
	finished
)

// errStillThere is returned when the cluster acknowledged a deletion but
// the object can still be read: cleanup never reports such a deletion.
var errStillThere = errors.New("still present after the cluster acknowledged its deletion")

// release deletes o through cl and checks that it is gone. protected
// names snapshot IDs to keep. A nil error with outcome deleted, absent,
// kept or finished means the entry may be forgotten.
func release(ctx context.Context, cl nutanix.Cluster, o Object, protected map[string]bool) (outcome, error) {
	if err := waitCreateTasks(ctx, o, func(ctx context.Context, id string) error {
		_, err := cl.WaitTask(ctx, id)
		var te *nutanix.TaskError // it failed: it has ended
		if errors.As(err, &te) || errors.Is(err, nutanix.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil {
		return unresolved, err
	}
	switch o.Kind {
	case KindSnapshot:
		return releaseSnapshot(ctx, cl, o, protected)
	case KindVolumeGroup:
		return releaseVolumeGroup(ctx, cl, o)
	case KindAttachment:
		return releaseAttachment(ctx, cl, o)
	case KindImage:
		return releaseImage(ctx, cl, o)
	case KindVM:
		return releaseVM(ctx, cl, o)
	case KindExternalRepository:
		return releaseExternalRepository(ctx, cl, o)
	}
	return unresolved, fmt.Errorf("%s: unknown kind %q (written by a newer ahvfs?)", o, o.Kind)
}

// createTaskWait bounds how long one release waits for the tasks of a
// create call: a task still running after it leaves the entry to a later
// sweep.
const createTaskWait = 2 * time.Minute

// staleCreate is the age beyond which an entry's create tasks are not
// waited for: they have ended, or never will, and the name decides.
const staleCreate = time.Hour

// waitCreateTasks waits, for an object whose ID never reached the
// journal, until the tasks of its create call have ended: only then does
// a lookup by name see whether it was made. ended waits for one task
// through the hypervisor's client; nil means the task ended, whether it
// succeeded, failed or is no longer known.
func waitCreateTasks(ctx context.Context, o Object, ended func(ctx context.Context, task string) error) error {
	if o.ID != "" || len(o.Tasks) == 0 || time.Since(o.Created) > staleCreate {
		return nil
	}
	if id, err := waitTasks(ctx, o.Tasks, ended); err != nil {
		return fmt.Errorf("%s: its create task %s has not ended: %w", o, id, err)
	}
	return nil
}

// waitTasks waits, at most createTaskWait in all, until each of tasks has
// ended (ended as for waitCreateTasks); else it returns the task that has
// not.
func waitTasks(ctx context.Context, tasks []string, ended func(ctx context.Context, task string) error) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, createTaskWait)
	defer cancel()
	for _, id := range tasks {
		if err := ended(ctx, id); err != nil {
			return id, err
		}
	}
	return "", nil
}

func releaseSnapshot(ctx context.Context, cl nutanix.Cluster, o Object, protected map[string]bool) (outcome, error) {
	ids := []string{}
	if o.ID != "" {
		ids = append(ids, o.ID)
	} else {
		list, err := cl.ListSnapshots(ctx, o.VMUUID)
		if err != nil {
			return unresolved, fmt.Errorf("find %s by name: %w", o, err)
		}
		for _, s := range list {
			if s.Name == o.Name {
				ids = append(ids, s.ID)
			}
		}
	}
	res := absent
	for _, id := range ids {
		if protected[id] {
			res = kept
			continue
		}
		if _, err := cl.GetSnapshot(ctx, id); errors.Is(err, nutanix.ErrNotFound) {
			continue
		} else if err != nil {
			return unresolved, fmt.Errorf("read %s: %w", o, err)
		}
		if err := cl.DeleteSnapshot(ctx, id); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if _, err := cl.GetSnapshot(ctx, id); !errors.Is(err, nutanix.ErrNotFound) {
			if err == nil {
				err = errStillThere
			}
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if res != kept {
			res = deleted
		}
	}
	return res, nil
}

func releaseVolumeGroup(ctx context.Context, cl nutanix.Cluster, o Object) (outcome, error) {
	groups, err := cl.ListVolumeGroups(ctx, o.Name)
	listed := err == nil
	switch {
	case errors.Is(err, nutanix.ErrUnsupported) && o.ID == "":
		return unresolved, fmt.Errorf("%s: its ID was not recorded and the cluster cannot list volume groups: look for it in Prism", o)
	case err != nil && !errors.Is(err, nutanix.ErrUnsupported):
		return unresolved, fmt.Errorf("find %s: %w", o, err)
	}
	// What exists: the groups of that (unique) name; without a list, the
	// recorded ID, trusted.
	var ids []string
	for _, g := range groups {
		if g.Name == o.Name {
			ids = append(ids, g.UUID)
		}
	}
	if !listed {
		ids = append(ids, o.ID)
	}
	res := absent
	for _, id := range ids {
		if err := cl.DeleteVolumeGroup(ctx, id); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if listed {
			after, err := cl.ListVolumeGroups(ctx, o.Name)
			if err != nil {
				return unresolved, fmt.Errorf("check %s: %w", o, err)
			}
			for _, g := range after {
				if g.UUID == id {
					return unresolved, fmt.Errorf("delete %s: %w", o, errStillThere)
				}
			}
		}
		res = deleted
	}
	return res, nil
}

func releaseAttachment(ctx context.Context, cl nutanix.Cluster, o Object) (outcome, error) {
	if o.VolumeGroup == "" {
		// The volume group's ID never reached the journal: its own entry
		// deletes it, and the attachment with it.
		return absent, nil
	}
	if err := cl.DetachISCSIClient(ctx, o.VolumeGroup, o.Initiator); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
		return unresolved, fmt.Errorf("detach %s: %w", o, err)
	}
	return deleted, nil
}

func releaseImage(ctx context.Context, cl nutanix.Cluster, o Object) (outcome, error) {
	ids := map[string]bool{}
	if o.ID != "" {
		ids[o.ID] = true
	}
	images, err := cl.ListImages(ctx, o.Name)
	switch {
	case errors.Is(err, nutanix.ErrUnsupported) && o.ID == "":
		return unresolved, fmt.Errorf("%s: its ID was not recorded and the cluster cannot list images: look for it in Prism", o)
	case err != nil && !errors.Is(err, nutanix.ErrUnsupported):
		return unresolved, fmt.Errorf("find %s: %w", o, err)
	}
	for _, im := range images {
		if im.Name == o.Name {
			ids[im.UUID] = true
		}
	}
	res := absent
	for id := range ids {
		if _, err := cl.GetImage(ctx, id); errors.Is(err, nutanix.ErrNotFound) {
			continue
		} else if err != nil {
			return unresolved, fmt.Errorf("read %s: %w", o, err)
		}
		if err := cl.DeleteImage(ctx, id); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if _, err := cl.GetImage(ctx, id); !errors.Is(err, nutanix.ErrNotFound) {
			if err == nil {
				err = errStillThere
			}
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
}

// releaseVM undoes a VM under construction: the new VM is deleted and an
// original that the job powered off is powered on again. After the
// overwrite committed, it finishes it instead: the original is deleted
// and the new VM kept.
func releaseVM(ctx context.Context, cl nutanix.Cluster, o Object) (outcome, error) {
	if r := o.Replaces; r != nil && r.Committed {
		if err := deleteVM(ctx, cl, r.UUID); err != nil {
			return unresolved, fmt.Errorf("finish the overwrite by %s: delete the original VM %s: %w", o, r.UUID, err)
		}
		return finished, nil
	}
	ids := map[string]bool{}
	if o.ID != "" {
		ids[o.ID] = true
	}
	if o.ID == "" {
		existing := map[string]bool{}
		for _, u := range o.Existing {
			existing[u] = true
		}
		if r := o.Replaces; r != nil {
			existing[r.UUID] = true
		}
		vms, err := cl.ListVMs(ctx)
		if err != nil {
			return unresolved, fmt.Errorf("find %s: %w", o, err)
		}
		for _, v := range vms {
			if v.Name == o.Name && !existing[v.UUID] {
				ids[v.UUID] = true
			}
		}
	}
	res := absent
	for id := range ids {
		if _, err := cl.GetVM(ctx, id); errors.Is(err, nutanix.ErrNotFound) {
			continue
		} else if err != nil {
			return unresolved, fmt.Errorf("read %s: %w", o, err)
		}
		if err := deleteVM(ctx, cl, id); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	if r := o.Replaces; r != nil && r.PoweredOff && r.WasOn {
		if err := cl.SetPowerState(ctx, r.UUID, nutanix.PowerOn); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
			return unresolved, fmt.Errorf("power the original VM %s back on: %w", r.UUID, err)
		}
	}
	return res, nil
}

// deleteVM powers a VM off if it runs, deletes it and checks it is gone.
// A VM that does not exist is not an error.
func deleteVM(ctx context.Context, cl nutanix.Cluster, id string) error {
	v, err := cl.GetVM(ctx, id)
	if errors.Is(err, nutanix.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if v.PowerState == nutanix.PowerOn {
		if err := cl.SetPowerState(ctx, id, nutanix.PowerOff); err != nil {
			return fmt.Errorf("power off: %w", err)
		}
	}
	if err := cl.DeleteVM(ctx, id); err != nil {
		return err
	}
	if _, err := cl.GetVM(ctx, id); !errors.Is(err, nutanix.ErrNotFound) {
		if err == nil {
			err = errStillThere
		}
		return err
	}
	return nil
}

// releaseExternalRepository deletes the repository by its ID and any of
// its (unique) name, unless a VM reads from it or read from it (its
// description's InstantMark names it): then the repository is that VM's
// (an instant restore that ended, or was killed after creating the VM:
// the teardown deletes a VM of its own job first), and the VM's finish or
// cancel removes it.
func releaseExternalRepository(ctx context.Context, cl nutanix.Cluster, o Object) (outcome, error) {
	ir, ok := cl.(nutanix.InstantRecovery)
	if !ok {
		return unresolved, fmt.Errorf("%s: this client cannot manage external repositories", o)
	}
	// Only what the cluster lists is deleted (and reported deleted).
	ids := map[string]bool{}
	repos, err := ir.ListExternalRepositories(ctx, o.Name)
	if err != nil {
		return unresolved, fmt.Errorf("find %s: %w", o, err)
	}
	for _, r := range repos {
		if r.Name == o.Name || (o.ID != "" && r.ID == o.ID) {
			ids[r.ID] = true
		}
	}
	if len(ids) == 0 {
		return absent, nil
	}
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return unresolved, fmt.Errorf("find the VMs reading from %s: %w", o, err)
	}
	for _, v := range vms {
		// A hydrated disk has no data source left: the VM's description
		// still names the repository (a restore killed between forgetting
		// its VM and its repository left both to the sweep).
		for r := range RepositoriesOf(v) {
			if ids[r] || r == o.Name {
				return kept, nil
			}
		}
	}
	res := absent
	for id := range ids {
		if err := ir.DeleteExternalRepository(ctx, id); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
}

// holdsFor reports whether o must stay in the journal because a VM of
// the same job could not be removed: that VM may read from o (an
// external repository), and o goes with it on a later sweep.
func holdsFor(o Object, vmLeft bool) bool {
	return vmLeft && o.Kind == KindExternalRepository
}
