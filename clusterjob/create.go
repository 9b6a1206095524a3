package clusterjob

import (
	"context"
	"fmt"
	"sync"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
)

// The create calls below journal the object under a unique name before
// the call, each task of the call as the cluster accepts it (watch), its
// ID after, and release what a failed call may have left. The returned
// Object is what the caller later passes to Release (a temporary object)
// or Forget (a result).

// CreateSnapshot snapshots the VM (application-consistent if asked and
// possible) under a new unique name.
func (jb *Job) CreateSnapshot(ctx context.Context, vmUUID, vmName string, appConsistent bool) (nutanix.Snapshot, Object, error) {
	o := Object{Kind: KindSnapshot, Name: jb.Name("", vmName), VMUUID: vmUUID, VM: vmName}
	if err := jb.Record(o); err != nil {
		return nutanix.Snapshot{}, o, err
	}
	snap, err := jb.cl.CreateSnapshot(jb.watch(ctx, &o), vmUUID, o.Name, appConsistent)
	if snap.API != "" {
		o.API = snap.API // v2.0 snapshots of the v3 backend
	}
	o, err = jb.created(ctx, o, snap.ID, err)
	if err != nil {
		return snap, o, fmt.Errorf("snapshot VM %s: %w", vmName, err)
	}
	return snap, o, nil
}

// CreateVolumeGroupFromSnapshotDisk clones one disk of snap into a new
// temporary volume group; label names it (e.g. "web01-disk0").
func (jb *Job) CreateVolumeGroupFromSnapshotDisk(ctx context.Context, snap nutanix.Snapshot, diskUUID, label string) (nutanix.VolumeGroup, Object, error) {
	o := Object{Kind: KindVolumeGroup, Name: jb.Name("vg", label), VMUUID: snap.VMUUID}
	if err := jb.Record(o); err != nil {
		return nutanix.VolumeGroup{}, o, err
	}
	vg, err := jb.cl.CreateVolumeGroupFromSnapshotDisk(jb.watch(ctx, &o), snap, diskUUID, o.Name)
	o, err = jb.created(ctx, o, vg.UUID, err)
	if err != nil {
		return vg, o, fmt.Errorf("volume group %s: %w", o.Name, err)
	}
	return vg, o, nil
}

// CreateBlankVolumeGroup creates a temporary volume group of blank disks
// (spec.Name is chosen here from label).
func (jb *Job) CreateBlankVolumeGroup(ctx context.Context, spec nutanix.VolumeGroupSpec, label string) (nutanix.VolumeGroup, Object, error) {
	o := Object{Kind: KindVolumeGroup, Name: jb.Name("vg", label)}
	if err := jb.Record(o); err != nil {
		return nutanix.VolumeGroup{}, o, err
	}
	spec.Name = o.Name
	vg, err := jb.cl.CreateBlankVolumeGroup(jb.watch(ctx, &o), spec)
	o, err = jb.created(ctx, o, vg.UUID, err)
	if err != nil {
		return vg, o, fmt.Errorf("volume group %s: %w", o.Name, err)
	}
	if len(vg.Disks) != len(spec.DiskSizes) {
		err := fmt.Errorf("volume group %s has %d disks, want %d", vg.UUID, len(vg.Disks), len(spec.DiskSizes))
		cctx, cancel := jb.CleanupContext(ctx)
		defer cancel()
		if rerr := jb.Release(cctx, o); rerr != nil {
			jb.log.Warn("release a volume group", "err", rerr)
		}
		return vg, o, err
	}
	return vg, o, nil
}

// CreateImage creates a temporary image (spec.Name is chosen here from
// label): empty for an upload, or fetched from spec.SourceURL.
func (jb *Job) CreateImage(ctx context.Context, spec nutanix.ImageSpec, label string) (nutanix.Image, Object, error) {
	o := Object{Kind: KindImage, Name: jb.Name("img", label)}
	if err := jb.Record(o); err != nil {
		return nutanix.Image{}, o, err
	}
	spec.Name = o.Name
	im, err := jb.cl.CreateImage(jb.watch(ctx, &o), spec)
	o, err = jb.created(ctx, o, im.UUID, err)
	if err != nil {
		return im, o, fmt.Errorf("image %s: %w", o.Name, err)
	}
	return im, o, nil
}

// CreateExternalRepository registers an NFS export for instant recovery,
// journaled under spec.Name (unique: the caller chooses it).
func (jb *Job) CreateExternalRepository(ctx context.Context, spec nutanix.ExternalRepository) (nutanix.ExternalRepository, Object, error) {
	o := Object{Kind: KindExternalRepository, Name: spec.Name}
	ir, ok := jb.cl.(nutanix.InstantRecovery)
	if !ok {
		return spec, o, fmt.Errorf("create external repository %s: %w", spec.Name, nutanix.ErrUnsupported)
	}
	if err := jb.Record(o); err != nil {
		return spec, o, err
	}
	repo, err := ir.CreateExternalRepository(jb.watch(ctx, &o), spec)
	o, err = jb.created(ctx, o, repo.ID, err)
	return repo, o, err
}

// CreateVM creates a VM (powered off) under construction: until Forget
// (or CommitReplacement) the job's teardown deletes it. The VMs of that
// name that exist now are recorded and never touched; replaces is the
// original VM an overwriting restore will replace (nil: none).
func (jb *Job) CreateVM(ctx context.Context, spec nutanix.VMSpec, replaces *nutanix.VM) (string, Object, error) {
	o := Object{Kind: KindVM, Name: spec.Name}
	vms, err := jb.cl.ListVMs(ctx)
	if err != nil {
		return "", o, fmt.Errorf("create VM %s: list VMs: %w", spec.Name, err)
	}
	for _, v := range vms {
		if v.Name == spec.Name {
			o.Existing = append(o.Existing, v.UUID)
		}
	}
	if replaces != nil {
		o.Replaces = &Replacement{UUID: replaces.UUID, WasOn: replaces.PowerState == nutanix.PowerOn}
	}
	if err := jb.Record(o); err != nil {
		return "", o, err
	}
	id, err := jb.cl.CreateVM(jb.watch(ctx, &o), spec)
	o, err = jb.created(ctx, o, id, err)
	if err != nil {
		return id, o, fmt.Errorf("create VM %s: %w", spec.Name, err)
	}
	return id, o, nil
}

// PowerOffOriginal powers off the VM that o (from CreateVM) replaces, once
// the new VM is complete. Until CommitReplacement a teardown powers it on
// again if it was on.
func (jb *Job) PowerOffOriginal(ctx context.Context, o *Object) error {
	if on, err := jb.poweringOff(o); !on || err != nil {
		return err
	}
	r := o.Replaces
	if err := jb.cl.SetPowerState(ctx, r.UUID, nutanix.PowerOff); err != nil {
		return fmt.Errorf("power off the original VM %s: %w", r.UUID, err)
	}
	return nil
}

// poweringOff journals that the job is about to power off the original
// VM o replaces; false: it was off, there is nothing to power off.
func (jb *Job) poweringOff(o *Object) (bool, error) {
	if r := o.Replaces; r == nil || !r.WasOn {
		return false, nil
	}
	return true, jb.recordReplacement(o, func(r *Replacement) { r.PoweredOff = true })
}

// recordReplacement journals o with its replacement state changed by
// change, and only then changes *o: a failed write leaves o (and the
// job's own copy, which a teardown acts on) as the journal has it.
func (jb *Job) recordReplacement(o *Object, change func(r *Replacement)) error {
	n := *o
	r := *o.Replaces
	change(&r)
	n.Replaces = &r
	if err := jb.Record(n); err != nil {
		return err
	}
	*o = n
	return nil
}

// CommitReplacement makes the new VM of o the result and deletes the
// original. From the journal write on, a teardown or a sweep finishes
// the overwrite (deletes the original) instead of undoing it, so a crash
// at any instant leaves either the original or the new VM, never
// neither.
func (jb *Job) CommitReplacement(ctx context.Context, o *Object) error {
	if o.Replaces == nil {
		return jb.Forget(*o)
	}
	if err := jb.recordReplacement(o, func(r *Replacement) { r.Committed = true }); err != nil {
		return err
	}
	r := o.Replaces
	if err := deleteVM(ctx, jb.cl, r.UUID); err != nil {
		return fmt.Errorf("delete the original VM %s: %w (the next job or `ahvfs cleanup` finishes the overwrite)", r.UUID, err)
	}
	return jb.Forget(*o)
}

// watch returns ctx for o's create call: every task the call submits
// (Prism's, or XAPI's for an Async call) is added to o.Tasks and journaled
// before the call waits for it.
func (jb *Job) watch(ctx context.Context, o *Object) context.Context {
	var mu sync.Mutex
	observe := func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		o.Tasks = append(o.Tasks, id)
		return jb.Record(*o)
	}
	return xapi.WithTaskObserver(nutanix.WithTaskObserver(ctx, observe), observe)
}
