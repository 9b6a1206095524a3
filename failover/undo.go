package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Undo removes what the plan's test failover made at the DR site: the
// VMs its state names (powered off, then deleted), and whatever a restore
// killed midway left (the DR repository's journal is swept). It is safe
// to run again.
func Undo(ctx context.Context, p *Plan, o Options) (*State, error) {
	log := o.logger().With("plan", p.Name, "mode", "undo")
	ps, err := openState(ctx, p, true)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	r, file, s := ps.r, ps.file, ps.s
	if s == nil {
		return nil, fmt.Errorf("plan %s: nothing to undo (no failover state %s)", p.Name, file)
	}
	if s.Mode != ModeTest && !o.Force {
		return s, fmt.Errorf("plan %s: the %s failover of %s made the production VMs at the DR site: undo deletes them only with --force", p.Name, s.Mode, engine.FormatTime(s.Started))
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return s, err
	}
	defer cl.Close()
	defer conn.Close()
	// What killed restores left (volume groups, images, half-made VMs)
	// first: they are journaled.
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return s, err
	}
	rep, err := clusterjob.SweepBefore(ctx, j, conn.Clusters, log)
	if err != nil {
		return s, fmt.Errorf("sweep the DR repository's journal: %w", err)
	}
	if n := len(rep.Unresolved) + len(rep.Errors) + len(rep.Running); n > 0 {
		return s, fmt.Errorf("undo of plan %s: the DR repository's journal still names %d object(s) a restore made (%s): run undo again, or ahvfs cleanup",
			p.Name, n, strings.Join(append(append(rep.Unresolved, rep.Errors...), rep.Running...), "; "))
	}
	if len(rep.Deleted) > 0 {
		log.Info("removed what killed restores left", "objects", len(rep.Deleted))
	}
	var errs []error
	for i := range s.VMs {
		v := &s.VMs[i]
		if v.Status != VMOn && v.Status != VMRestoring {
			continue
		}
		if err := removeVM(ctx, cl, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Name, err))
			continue
		}
		if err := step(s, v, o, VMRemoved, "", ""); err != nil {
			return s, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("undo of plan %s: %w (run undo again)", p.Name, err)
	}
	return s, s.remove()
}

// removeVM powers off and deletes a VM the failover made. One that is
// gone already is no error; a VM killed while its restore ran is looked
// for by its name, leaving out the VMs that had the name before.
func removeVM(ctx context.Context, cl nutanix.Cluster, v *VMState) error {
	uuids := []string{}
	if v.UUID != "" {
		uuids = append(uuids, v.UUID)
	} else {
		named, err := namedVMs(ctx, cl, v.Name)
		if err != nil {
			return err
		}
		for _, id := range named {
			if !slices.Contains(v.Existing, id) {
				uuids = append(uuids, id)
			}
		}
	}
	for _, id := range uuids {
		vm, err := cl.GetVM(ctx, id)
		if errors.Is(err, nutanix.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if vm.Name != v.Name {
			return fmt.Errorf("VM %s is now named %s: not deleted (check it by hand)", id, vm.Name)
		}
		if vm.PowerState != nutanix.PowerOff {
			if err := cl.SetPowerState(ctx, id, nutanix.PowerOff); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
				return fmt.Errorf("power off: %w", err)
			}
		}
		if err := cl.DeleteVM(ctx, id); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
			return fmt.Errorf("delete: %w", err)
		}
	}
	return nil
}
