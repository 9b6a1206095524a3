package clusterjob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
)

// The objects of jobs on XCP-ng / XenServer pools (Journal.BeginXen)
// share the journal with AHV's: their Object.API is APIXen, their ID the
// object's XAPI UUID (references are not promised to outlive a session),
// and a sweep through Prism leaves their jobs alone (SweepXen releases
// them).

const (
	// APIXen marks an object created through XAPI.
	APIXen nutanix.APIVersion = "xapi"
	// HypervisorXen marks a job on an XCP-ng / XenServer pool.
	HypervisorXen = "xcp-ng"
)

// SweepXen is Sweep for the jobs made on the XCP-ng pool xc reaches:
// their snapshots, VDIs and VMs under construction are released through
// XAPI. Jobs made through Prism or on another pool are left alone
// (Report.Elsewhere).
func SweepXen(ctx context.Context, j *Journal, xc *xapi.Client, logger *slog.Logger) (*Report, error) {
	return sweep(ctx, j, sweeper{
		foreign: func(ctx context.Context, info jobInfo, _ []Object) string {
			if info.Hypervisor != HypervisorXen {
				if info.Prism == "" {
					return "made through Prism; run ahvfs cleanup with --prism"
				}
				return fmt.Sprintf("made through %s; run ahvfs cleanup with --prism there", info.Prism)
			}
			if info.Pool != "" {
				// The pool's UUID, not the address: the master may have
				// changed, or another name reach it.
				here, err := xc.PoolUUID(ctx)
				if err != nil {
					return fmt.Sprintf("made on the XCP-ng pool %s, and this pool's UUID cannot be read (%v): run ahvfs cleanup --source %s", info.Pool, err, xenSource(info.Prism))
				}
				if here != info.Pool {
					return fmt.Sprintf("made on the XCP-ng pool %s (through %s); run ahvfs cleanup --source with a host of that pool", info.Pool, info.Prism)
				}
				return ""
			}
			if here := xc.Endpoint(); info.Prism != "" && !samePrism(ctx, here, info.Prism) {
				return fmt.Sprintf("made on the XCP-ng pool %s; run ahvfs cleanup --source %s", info.Prism, xenSource(info.Prism))
			}
			return ""
		},
		release: func(ctx context.Context, o Object, protected map[string]bool) (outcome, error) {
			if o.API != APIXen {
				return unresolved, fmt.Errorf("%s was made through Prism: run ahvfs cleanup with --prism", o)
			}
			return releaseXen(ctx, j, xc, o, protected)
		},
	}, logger)
}

// xenTaskEnded waits for the XAPI task id to end. A task's own failure,
// its cancel or its absence (HANDLE_INVALID) end it; an error of the poll
// itself (a master change, a refusal) does not.
func xenTaskEnded(ctx context.Context, xc *xapi.Client, id string) error {
	_, err := xc.WaitTask(ctx, xapi.Ref(id))
	if errors.Is(err, xapi.ErrTaskFailed) || errors.Is(err, xapi.ErrTaskCancelled) || errors.Is(err, xapi.ErrNotFound) {
		return nil
	}
	return err
}

// xenSource is the --source value of an XAPI endpoint URL.
func xenSource(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return "xapi://" + u.Host
	}
	return "xapi://HOST"
}

// releaseXen deletes o from the pool and checks that it is gone.
func releaseXen(ctx context.Context, j *Journal, xc *xapi.Client, o Object, protected map[string]bool) (outcome, error) {
	if xc == nil {
		return unresolved, fmt.Errorf("%s: made on an XCP-ng pool, and this job has no XAPI client", o)
	}
	// A task still running after the wait is cancelled (the job that
	// wanted its object is gone), and the entry stays.
	if err := waitCreateTasks(ctx, o, func(ctx context.Context, id string) error {
		return xenTaskEnded(ctx, xc, id)
	}); err != nil {
		return unresolved, err
	}
	switch o.Kind {
	case KindSnapshot:
		return releaseXenSnapshot(ctx, xc, o, protected)
	case KindVDI:
		return releaseXenVDI(ctx, xc, o)
	case KindVM:
		return releaseXenVM(ctx, j, xc, o)
	}
	return unresolved, fmt.Errorf("%s: unknown kind %q on an XCP-ng pool (written by a newer ahvfs?)", o, o.Kind)
}

// xenFind resolves o to the records it names: by UUID when known, else
// by its unique name (a create whose answer never came).
func xenFind(ctx context.Context, xc *xapi.Client, o Object, snapshot bool) ([]xapi.VM, error) {
	if o.ID != "" {
		v, err := xc.VMByUUID(ctx, o.ID)
		if errors.Is(err, xapi.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", o, err)
		}
		return []xapi.VM{v}, nil
	}
	vms, err := xc.VMsByName(ctx, o.Name)
	if err != nil {
		return nil, fmt.Errorf("find %s by name: %w", o, err)
	}
	var out []xapi.VM
	for _, v := range vms {
		if v.IsASnapshot == snapshot && v.NameLabel == o.Name {
			out = append(out, v)
		}
	}
	return out, nil
}

// releaseXenSnapshot destroys a VM snapshot and its disks: the snapshot
// VDIs first (VM.destroy leaves them behind), then the record. The VDIs
// are those the snapshot's VBDs name and those o names (VDIs whose data
// was destroyed have lost their VBDs), so a snapshot record already gone
// still has its VDIs removed.
func releaseXenSnapshot(ctx context.Context, xc *xapi.Client, o Object, protected map[string]bool) (outcome, error) {
	if o.ID != "" && protected[o.ID] {
		return kept, nil
	}
	snaps, err := xenFind(ctx, xc, o, true)
	if err != nil {
		return unresolved, err
	}
	for _, s := range snaps {
		if protected[s.UUID] {
			return kept, nil
		}
	}
	res := absent
	if len(snaps) == 0 && len(o.VDIs) > 0 {
		gone, err := destroyXenVDIs(ctx, xc, o.VDIs, nil)
		if err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if gone > 0 {
			res = deleted
		}
	}
	for _, s := range snaps {
		if err := DestroyXenSnapshot(ctx, xc, s, o.VDIs); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
}

// DestroyXenSnapshot destroys the snapshot s with its VDIs — those its
// VBDs name and the snapshot VDIs of UUID more — VDIs first, and checks
// that all are gone.
func DestroyXenSnapshot(ctx context.Context, xc *xapi.Client, s xapi.VM, more []string) error {
	var refs []xapi.Ref
	for _, b := range s.VBDs {
		vbd, err := xc.VBD(ctx, b)
		if errors.Is(err, xapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read disk %s of snapshot %s: %w", b, s.NameLabel, err)
		}
		if vbd.Type == "Disk" && !vbd.Empty && !vbd.VDI.IsNull() {
			refs = append(refs, vbd.VDI)
		}
	}
	if _, err := destroyXenVDIs(ctx, xc, more, refs); err != nil {
		return fmt.Errorf("snapshot %s: %w", s.NameLabel, err)
	}
	if err := xc.DestroyVM(ctx, s.Ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
		return fmt.Errorf("destroy snapshot %s: %w", s.NameLabel, err)
	}
	if _, err := xc.VMByUUID(ctx, s.UUID); !errors.Is(err, xapi.ErrNotFound) {
		if err == nil {
			err = errStillThere
		}
		return fmt.Errorf("snapshot %s: %w", s.NameLabel, err)
	}
	return nil
}

// destroyXenVDIs destroys the snapshot VDIs named by UUID (uuids) or ref
// (refs), and checks they are gone; a VDI that is not a snapshot is left
// alone. It returns how many it destroyed.
func destroyXenVDIs(ctx context.Context, xc *xapi.Client, uuids []string, refs []xapi.Ref) (int, error) {
	var vdis []xapi.VDI
	for _, u := range uuids {
		d, err := xc.VDIByUUID(ctx, u)
		if errors.Is(err, xapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("find VDI %s: %w", u, err)
		}
		vdis = append(vdis, d)
	}
	for _, r := range refs {
		d, err := xc.VDI(ctx, r)
		if errors.Is(err, xapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read VDI %s: %w", r, err)
		}
		vdis = append(vdis, d)
	}
	n := 0
	seen := map[string]bool{}
	for _, d := range vdis {
		if seen[d.UUID] || !d.IsASnapshot {
			continue
		}
		seen[d.UUID] = true
		if err := destroyXenVDI(ctx, xc, d.Ref); err != nil {
			return n, fmt.Errorf("VDI %s: %w", d.UUID, err)
		}
		n++
	}
	return n, nil
}

// releaseXenVDI destroys a VDI a restore created, unless a VM uses it.
func releaseXenVDI(ctx context.Context, xc *xapi.Client, o Object) (outcome, error) {
	var refs []xapi.Ref
	if o.ID != "" {
		d, err := xc.VDIByUUID(ctx, o.ID)
		switch {
		case errors.Is(err, xapi.ErrNotFound):
		case err != nil:
			return unresolved, fmt.Errorf("find %s: %w", o, err)
		default:
			refs = append(refs, d.Ref)
		}
	} else {
		ds, err := xc.VDIsByName(ctx, o.Name)
		if err != nil {
			return unresolved, fmt.Errorf("find %s by name: %w", o, err)
		}
		for _, d := range ds {
			refs = append(refs, d.Ref)
		}
	}
	res := absent
	for _, r := range refs {
		// A VDI that a VM's VBD uses is that VM's disk: the restore's
		// result (forgotten before its VDIs), never deleted here. A
		// teardown removes the job's own VM first, and its VBDs with it.
		if d, err := xc.VDI(ctx, r); err == nil && len(d.VBDs) > 0 {
			return kept, nil
		}
		if err := destroyXenVDI(ctx, xc, r); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
}

// releaseXenVM removes a VM under construction (powered off first); its
// VDIs are objects of their own. One that replaces an original finishes
// or undoes the overwrite (releaseXenReplacement).
func releaseXenVM(ctx context.Context, j *Journal, xc *xapi.Client, o Object) (outcome, error) {
	if r := o.Replaces; r != nil && r.Committed {
		return releaseXenReplacement(ctx, j, xc, o)
	}
	vms, err := xenFind(ctx, xc, o, false)
	if err != nil {
		return unresolved, err
	}
	res := absent
	for _, v := range vms {
		if err := destroyXenVM(ctx, xc, v); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	if o.Replaces != nil {
		if _, err := releaseXenReplacement(ctx, j, xc, o); err != nil {
			return unresolved, err
		}
	}
	return res, nil
}

// destroyXenVM powers v off if it runs, destroys it and checks it is
// gone. What is gone already is not an error.
func destroyXenVM(ctx context.Context, xc *xapi.Client, v xapi.VM) error {
	if v.PowerState != "Halted" {
		if err := xc.HardShutdown(ctx, v.Ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
			return fmt.Errorf("power off: %w", err)
		}
	}
	if err := xc.DestroyVM(ctx, v.Ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
		return err
	}
	if _, err := xc.VMByUUID(ctx, v.UUID); !errors.Is(err, xapi.ErrNotFound) {
		if err == nil {
			err = errStillThere
		}
		return err
	}
	return nil
}

// destroyXenVDI destroys a VDI and checks it is gone. What is gone
// already is not an error.
func destroyXenVDI(ctx context.Context, xc *xapi.Client, ref xapi.Ref) error {
	if err := xc.DestroyVDI(ctx, ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
		return fmt.Errorf("destroy: %w", err)
	}
	if _, err := xc.VDI(ctx, ref); !errors.Is(err, xapi.ErrNotFound) {
		if err == nil {
			err = errStillThere
		}
		return err
	}
	return nil
}

// CreateXenSnapshot snapshots the VM under a new unique name, quiesced
// (VSS through the guest tools) when asked. The Object's ID is the
// snapshot's UUID.
func (jb *Job) CreateXenSnapshot(ctx context.Context, vm xapi.VM, quiesce bool) (xapi.VM, Object, error) {
	o := Object{Kind: KindSnapshot, Name: jb.Name("", vm.NameLabel), VMUUID: vm.UUID, VM: vm.NameLabel, API: APIXen}
	if err := jb.Record(o); err != nil {
		return xapi.VM{}, o, err
	}
	var ref xapi.Ref
	var err error
	if quiesce {
		ref, err = jb.xc.SnapshotWithQuiesce(jb.watch(ctx, &o), vm.Ref, o.Name)
	} else {
		ref, err = jb.xc.Snapshot(jb.watch(ctx, &o), vm.Ref, o.Name)
	}
	var snap xapi.VM
	if err == nil {
		snap, err = jb.xc.VM(ctx, ref)
	}
	o, err = jb.created(ctx, o, snap.UUID, err)
	if err != nil {
		return snap, o, fmt.Errorf("snapshot VM %s: %w", vm.NameLabel, err)
	}
	return snap, o, nil
}

// CreateXenVDI creates a blank user VDI for a restore (spec.NameLabel is
// the job's unique name made from label, so that what a create whose
// answer never came left is found by name). The Object's ID is the VDI's
// UUID; the VDI is released by Close until the caller forgets it.
func (jb *Job) CreateXenVDI(ctx context.Context, spec xapi.VDISpec, label string) (xapi.VDI, Object, error) {
	o := Object{Kind: KindVDI, Name: jb.Name("vdi", label), API: APIXen}
	if err := jb.Record(o); err != nil {
		return xapi.VDI{}, o, err
	}
	spec.NameLabel = o.Name
	ref, err := jb.xc.CreateVDI(ctx, spec)
	var vdi xapi.VDI
	if err == nil {
		vdi, err = jb.xc.VDI(ctx, ref)
	}
	o, err = jb.created(ctx, o, vdi.UUID, err)
	if err != nil {
		return vdi, o, fmt.Errorf("create VDI %s: %w", o.Name, err)
	}
	return vdi, o, nil
}

// XenVMSpec is the VM CreateXenVM makes: the fields of the VM record a
// restore chooses, its disks and its network interfaces. Zero values
// mean the default noted.
type XenVMSpec struct {
	NameDescription string
	// VCPUsMax and VCPUsAtStartup (default VCPUsMax) count vCPUs.
	VCPUsMax, VCPUsAtStartup int64
	// MemoryStaticMax is required; the other limits default to the next
	// larger one (static_min ≤ dynamic_min ≤ dynamic_max ≤ static_max).
	MemoryStaticMax, MemoryDynamicMax, MemoryDynamicMin, MemoryStaticMin int64
	// DomainType is hvm (default), pv or pvh; PVBootloader ("pygrub")
	// boots a pv guest.
	DomainType, PVBootloader string
	// HVMBootPolicy (default "BIOS order") and HVMBootParams (default
	// order "cd", firmware "bios").
	HVMBootPolicy string
	HVMBootParams map[string]string
	Platform      map[string]string
	OtherConfig   map[string]string
	// Disks are plugged in order (their VM is set here); NICs too.
	Disks []xapi.VBDSpec
	NICs  []xapi.VIFSpec
}

// CreateXenVM creates a halted VM under construction with its VBDs and
// VIFs, named by the job's unique name made from label: until the caller
// gives it its final name and forgets it (or CommitXenReplacement), Close
// (or a sweep after a crash) deletes it, found by UUID or by that name.
// Its VDIs are objects of their own (CreateXenVDI). A VBD or VIF that
// cannot be created deletes the VM again. replaces is the original VM an
// overwriting restore will replace (nil: none).
func (jb *Job) CreateXenVM(ctx context.Context, spec XenVMSpec, label string, replaces *xapi.VM) (xapi.VM, Object, error) {
	o := Object{Kind: KindVM, Name: jb.Name("restore", label), API: APIXen}
	if replaces != nil {
		o.Replaces = &Replacement{UUID: replaces.UUID, WasOn: xenRunning(replaces.PowerState)}
	}
	rec, err := xenVMRecord(o.Name, spec)
	if err != nil {
		return xapi.VM{}, o, fmt.Errorf("create VM %s: %w", o.Name, err)
	}
	if err := jb.Record(o); err != nil {
		return xapi.VM{}, o, err
	}
	var ref xapi.Ref
	err = jb.xc.Call(ctx, "VM.create", &ref, rec)
	var vm xapi.VM
	if err == nil {
		vm, err = jb.xc.VM(ctx, ref)
	}
	o, err = jb.created(ctx, o, vm.UUID, err)
	if err != nil {
		return vm, o, fmt.Errorf("create VM %s: %w", o.Name, err)
	}
	fail := func(err error) (xapi.VM, Object, error) {
		cctx, cancel := jb.CleanupContext(ctx)
		defer cancel()
		if rerr := jb.Release(cctx, o); rerr != nil {
			jb.log.Warn("release a VM under construction", "err", rerr)
		}
		return vm, o, err
	}
	for _, d := range spec.Disks {
		d.VM = vm.Ref
		if _, err := jb.xc.CreateVBD(ctx, d); err != nil {
			return fail(fmt.Errorf("VM %s: plug its disk %s: %w", o.Name, d.Userdevice, err))
		}
	}
	for _, n := range spec.NICs {
		n.VM = vm.Ref
		if _, err := jb.xc.CreateVIF(ctx, n); err != nil {
			return fail(fmt.Errorf("VM %s: network interface %s: %w", o.Name, n.Device, err))
		}
	}
	return vm, o, nil
}

// xenVMRecord is the VM.create record of spec under name, with the
// fields xapi requires.
func xenVMRecord(name string, s XenVMSpec) (map[string]any, error) {
	var errs []error
	if s.VCPUsMax < 1 {
		errs = append(errs, fmt.Errorf("VCPUs_max %d: want at least 1", s.VCPUsMax))
	}
	startup := cmp.Or(s.VCPUsAtStartup, s.VCPUsMax)
	if startup < 1 || startup > s.VCPUsMax {
		errs = append(errs, fmt.Errorf("VCPUs_at_startup %d: want 1 to VCPUs_max %d", startup, s.VCPUsMax))
	}
	smax := s.MemoryStaticMax
	dmax := cmp.Or(s.MemoryDynamicMax, smax)
	dmin := cmp.Or(s.MemoryDynamicMin, dmax)
	smin := cmp.Or(s.MemoryStaticMin, dmin)
	if smax <= 0 || !(smin <= dmin && dmin <= dmax && dmax <= smax) {
		errs = append(errs, fmt.Errorf("memory limits static_min %d ≤ dynamic_min %d ≤ dynamic_max %d ≤ static_max %d do not hold", smin, dmin, dmax, smax))
	}
	domain := cmp.Or(s.DomainType, "hvm")
	params := map[string]string{"order": "cd", "firmware": "bios"}
	if s.HVMBootParams != nil {
		params = s.HVMBootParams
	}
	policy := s.HVMBootPolicy
	if policy == "" && domain == "hvm" {
		policy = "BIOS order"
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	orEmpty := func(m map[string]string) map[string]string {
		if m == nil {
			return map[string]string{}
		}
		return m
	}
	return map[string]any{
		"name_label": name, "name_description": s.NameDescription, "user_version": 1,
		"is_a_template": false, "affinity": xapi.NullRef,
		"memory_static_max": smax, "memory_dynamic_max": dmax, "memory_dynamic_min": dmin, "memory_static_min": smin,
		"VCPUs_max": s.VCPUsMax, "VCPUs_at_startup": startup, "VCPUs_params": map[string]string{},
		"actions_after_shutdown": "destroy", "actions_after_reboot": "restart", "actions_after_crash": "restart",
		"PV_bootloader": s.PVBootloader, "PV_kernel": "", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
		"HVM_boot_policy": policy, "HVM_boot_params": params, "HVM_shadow_multiplier": 1.0,
		"platform": orEmpty(s.Platform), "PCI_bus": "", "other_config": orEmpty(s.OtherConfig),
		"recommendations": "", "domain_type": domain, "tags": []string{},
	}, nil
}
