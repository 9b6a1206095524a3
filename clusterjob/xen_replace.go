package clusterjob

import (
	"context"
	"errors"
	"fmt"

	"github.com/ahvfs/ahvfs/xapi"
)

// An overwriting restore on an XCP-ng pool follows AHV's order (CreateVM,
// PowerOffOriginal, CommitReplacement): the new VM is complete first, then
// the original is powered off, then the overwrite is committed in the
// journal, and only then is the original destroyed. XCP-ng's VM.destroy
// leaves the VM's disks behind, so the commit also records the original's
// VDIs, destroyed after it unless another VM uses them, and the snapshots
// of it the journal keeps (a backup's reference, useless once the VM is
// gone), destroyed with their kept records.

// xenRunning reports whether a VM of power_state state runs (a paused VM
// holds its memory and comes back on unpause: it counts as on).
func xenRunning(state string) bool { return state == "Running" || state == "Paused" }

// PowerOffXenOriginal powers off (hard shutdown, as on AHV) the VM that o
// (from CreateXenVM) replaces, once the new VM is complete. Until
// CommitXenReplacement a teardown or a sweep starts it again.
func (jb *Job) PowerOffXenOriginal(ctx context.Context, o *Object) error {
	if on, err := jb.poweringOff(o); !on || err != nil {
		return err
	}
	r := o.Replaces
	v, err := jb.xc.VMByUUID(ctx, r.UUID)
	if errors.Is(err, xapi.ErrNotFound) {
		return nil // gone already: nothing to power off, the commit goes on
	}
	if err != nil {
		return fmt.Errorf("power off the original VM %s: %w", r.UUID, err)
	}
	if v.PowerState != "Halted" {
		// The shutdown's task is journaled: a sweep after a kill waits
		// for it before it starts the original again.
		if err := jb.xc.HardShutdown(jb.watch(ctx, o), v.Ref); err != nil {
			return fmt.Errorf("power off the original VM %s: %w", r.UUID, err)
		}
	}
	return nil
}

// CommitXenReplacement makes the new VM of o the result and destroys the
// original with its disks (those no other VM uses) and the snapshots of
// it the journal keeps. committed reports whether the journal holds the
// commit: from then on a teardown or a sweep finishes the overwrite
// instead of undoing it, so an error after it leaves the new VM as the
// result. An error before it (the original or the journal unread, the
// write failed) leaves the overwrite to be undone.
func (jb *Job) CommitXenReplacement(ctx context.Context, o *Object) (committed bool, err error) {
	r := o.Replaces
	if r == nil {
		return false, jb.Forget(*o)
	}
	var vdis []string
	v, err := jb.xc.VMByUUID(ctx, r.UUID)
	switch {
	case errors.Is(err, xapi.ErrNotFound): // gone already: nothing of it to destroy
	case err != nil:
		return false, fmt.Errorf("read the original VM %s: %w", r.UUID, err)
	default:
		if vdis, err = xenDisks(ctx, jb.xc, v); err != nil {
			return false, fmt.Errorf("read the disks of the original VM %s: %w", r.UUID, err)
		}
	}
	owners, refs, err := jb.j.keptOfVM(r.UUID, APIXen)
	if err != nil {
		return false, fmt.Errorf("the original VM %s: %w", r.UUID, err)
	}
	if err := jb.recordReplacement(o, func(r *Replacement) {
		r.Committed, r.VDIs, r.References, r.KeptBy = true, vdis, refs, owners
	}); err != nil {
		return false, err
	}
	if err := destroyXenOriginal(ctx, jb.j, jb.xc, o.Replaces); err != nil {
		return true, fmt.Errorf("delete the original VM %s: %w (the next job or `ahvfs cleanup --source` finishes the overwrite)", r.UUID, err)
	}
	return true, jb.Forget(*o)
}

// xenDisks are the UUIDs of v's disk VDIs (CD drives are not disks).
func xenDisks(ctx context.Context, xc *xapi.Client, v xapi.VM) ([]string, error) {
	var out []string
	for _, ref := range v.VBDs {
		b, err := xc.VBD(ctx, ref)
		if errors.Is(err, xapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if b.Type != "Disk" || b.Empty || b.VDI.IsNull() {
			continue
		}
		d, err := xc.VDI(ctx, b.VDI)
		if err != nil {
			return nil, fmt.Errorf("VDI of disk %s: %w", b.Userdevice, err)
		}
		out = append(out, d.UUID)
	}
	return out, nil
}

// destroyXenOriginal destroys the original VM of a committed overwrite
// (powered off first, should it run again), then its VDIs and the kept
// snapshots recorded with the commit, and checks all are gone; then the
// kept records of those snapshots go. A VDI that a VM still uses once the
// original is gone (a disk it shared) is kept. What is gone already is
// not an error: the deletion may be finished by a later sweep.
func destroyXenOriginal(ctx context.Context, j *Journal, xc *xapi.Client, r *Replacement) error {
	v, err := xc.VMByUUID(ctx, r.UUID)
	switch {
	case errors.Is(err, xapi.ErrNotFound):
	case err != nil:
		return err
	default:
		if err := destroyXenVM(ctx, xc, v); err != nil {
			return err
		}
	}
	for _, u := range r.VDIs {
		d, err := xc.VDIByUUID(ctx, u)
		if errors.Is(err, xapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("find its VDI %s: %w", u, err)
		}
		if len(d.VBDs) > 0 {
			continue // another VM's disk too
		}
		if err := destroyXenVDI(ctx, xc, d.Ref); err != nil {
			return fmt.Errorf("its VDI %s: %w", u, err)
		}
	}
	for _, ref := range r.References {
		if _, err := releaseXenSnapshot(ctx, xc, ref, nil); err != nil {
			return fmt.Errorf("its reference: %w", err)
		}
	}
	for _, owner := range r.KeptBy {
		if err := j.Unkeep(owner); err != nil {
			return err
		}
	}
	return nil
}

// releaseXenReplacement resolves the original of a VM under construction
// o that replaces one: a committed overwrite is finished (the original
// destroyed, the new VM kept: finished); otherwise, once the new VM is
// deleted, the original the job powered off is started again.
func releaseXenReplacement(ctx context.Context, j *Journal, xc *xapi.Client, o Object) (outcome, error) {
	r := o.Replaces
	if r.Committed {
		if err := destroyXenOriginal(ctx, j, xc, r); err != nil {
			return unresolved, fmt.Errorf("finish the overwrite by %s: delete the original VM %s: %w", o, r.UUID, err)
		}
		return finished, nil
	}
	if !r.PoweredOff || !r.WasOn {
		return absent, nil
	}
	// A shutdown still running (the job was killed during it) would
	// power the original off after this start: it ends first.
	if id, err := waitTasks(ctx, o.Tasks, func(ctx context.Context, id string) error {
		return xenTaskEnded(ctx, xc, id)
	}); err != nil {
		return unresolved, fmt.Errorf("%s: the original VM %s is still being powered off (task %s): %w", o, r.UUID, id, err)
	}
	v, err := xc.VMByUUID(ctx, r.UUID)
	if errors.Is(err, xapi.ErrNotFound) {
		return absent, nil
	}
	if err == nil && v.PowerState == "Halted" {
		err = xc.Start(ctx, v.Ref)
	}
	if err != nil {
		return unresolved, fmt.Errorf("start the original VM %s again: %w", r.UUID, err)
	}
	return absent, nil
}
