package clusterjob

import (
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
			if here := xc.Endpoint(); info.Prism != "" && !samePrism(ctx, here, info.Prism) {
				return fmt.Sprintf("made on the XCP-ng pool %s; run ahvfs cleanup --source %s", info.Prism, xenSource(info.Prism))
			}
			return ""
		},
		release: func(ctx context.Context, o Object, protected map[string]bool) (outcome, error) {
			if o.API != APIXen {
				return unresolved, fmt.Errorf("%s was made through Prism: run ahvfs cleanup with --prism", o)
			}
			return releaseXen(ctx, xc, o, protected)
		},
	}, logger)
}

// xenSource is the --source value of an XAPI endpoint URL.
func xenSource(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return "xapi://" + u.Host
	}
	return "xapi://HOST"
}

// releaseXen deletes o from the pool and checks that it is gone.
func releaseXen(ctx context.Context, xc *xapi.Client, o Object, protected map[string]bool) (outcome, error) {
	if xc == nil {
		return unresolved, fmt.Errorf("%s: made on an XCP-ng pool, and this job has no XAPI client", o)
	}
	switch o.Kind {
	case KindSnapshot:
		return releaseXenSnapshot(ctx, xc, o, protected)
	case KindVDI:
		return releaseXenVDI(ctx, xc, o)
	case KindVM:
		return releaseXenVM(ctx, xc, o)
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
// VDIs first (VM.destroy leaves them behind), then the record.
func releaseXenSnapshot(ctx context.Context, xc *xapi.Client, o Object, protected map[string]bool) (outcome, error) {
	if o.ID != "" && protected[o.ID] {
		return kept, nil
	}
	snaps, err := xenFind(ctx, xc, o, true)
	if err != nil {
		return unresolved, err
	}
	res := absent
	for _, s := range snaps {
		if protected[s.UUID] {
			return kept, nil
		}
		if err := DestroyXenSnapshot(ctx, xc, s); err != nil {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
}

// DestroyXenSnapshot destroys the snapshot s with its VDIs, and checks
// that they are gone.
func DestroyXenSnapshot(ctx context.Context, xc *xapi.Client, s xapi.VM) error {
	var vdis []xapi.Ref
	for _, b := range s.VBDs {
		vbd, err := xc.VBD(ctx, b)
		if errors.Is(err, xapi.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read disk %s of snapshot %s: %w", b, s.NameLabel, err)
		}
		if vbd.Type == "Disk" && !vbd.Empty && vbd.VDI != "" && vbd.VDI != xapi.NullRef {
			vdis = append(vdis, vbd.VDI)
		}
	}
	if err := xc.DestroyVM(ctx, s.Ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
		return fmt.Errorf("destroy snapshot %s: %w", s.NameLabel, err)
	}
	for _, d := range vdis {
		if err := xc.DestroyVDI(ctx, d); err != nil && !errors.Is(err, xapi.ErrNotFound) {
			return fmt.Errorf("destroy VDI %s of snapshot %s: %w", d, s.NameLabel, err)
		}
	}
	if _, err := xc.VMByUUID(ctx, s.UUID); !errors.Is(err, xapi.ErrNotFound) {
		if err == nil {
			err = errStillThere
		}
		return fmt.Errorf("snapshot %s: %w", s.NameLabel, err)
	}
	for _, d := range vdis {
		if _, err := xc.VDI(ctx, d); !errors.Is(err, xapi.ErrNotFound) {
			if err == nil {
				err = errStillThere
			}
			return fmt.Errorf("VDI %s of snapshot %s: %w", d, s.NameLabel, err)
		}
	}
	return nil
}

// releaseXenVDI destroys a VDI a restore created.
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
		if err := xc.DestroyVDI(ctx, r); err != nil && !errors.Is(err, xapi.ErrNotFound) {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if _, err := xc.VDI(ctx, r); !errors.Is(err, xapi.ErrNotFound) {
			if err == nil {
				err = errStillThere
			}
			return unresolved, fmt.Errorf("%s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
}

// releaseXenVM removes a VM under construction (powered off first); its
// VDIs are objects of their own.
func releaseXenVM(ctx context.Context, xc *xapi.Client, o Object) (outcome, error) {
	vms, err := xenFind(ctx, xc, o, false)
	if err != nil {
		return unresolved, err
	}
	res := absent
	for _, v := range vms {
		if v.PowerState != "Halted" {
			if err := xc.HardShutdown(ctx, v.Ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
				return unresolved, fmt.Errorf("power off %s: %w", o, err)
			}
		}
		if err := xc.DestroyVM(ctx, v.Ref); err != nil && !errors.Is(err, xapi.ErrNotFound) {
			return unresolved, fmt.Errorf("delete %s: %w", o, err)
		}
		if _, err := xc.VMByUUID(ctx, v.UUID); !errors.Is(err, xapi.ErrNotFound) {
			if err == nil {
				err = errStillThere
			}
			return unresolved, fmt.Errorf("%s: %w", o, err)
		}
		res = deleted
	}
	return res, nil
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
		ref, err = jb.xc.SnapshotWithQuiesce(ctx, vm.Ref, o.Name)
	} else {
		ref, err = jb.xc.Snapshot(ctx, vm.Ref, o.Name)
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
