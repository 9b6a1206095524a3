package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
)

// Undo removes what the plan's failover made at the DR site: the VMs its
// state names (powered off, then deleted), and whatever a restore killed
// midway left (the DR repository's journal is swept). Undoing a planned
// failover also powers the source VMs it shut down back on. It is safe
// to run again. Only a test failover is undone without o.Force.
func Undo(ctx context.Context, p *Plan, o Options) (*State, error) {
	log := o.logger().With("plan", p.Name, "mode", "undo")
	ps, err := openState(ctx, p, true, false)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	r, file, s := ps.r, ps.file, ps.s
	if s == nil {
		return nil, fmt.Errorf("plan %s: nothing to undo (no failover state %s)", p.Name, file)
	}
	if s.Permanent || s.Back != nil {
		return s, fmt.Errorf("plan %s: the failover of %s is permanent or failing back: the DR site holds the VMs' newest data; ahvfs failback moves them back", p.Name, engine.FormatTime(s.Started))
	}
	if s.Mode != ModeTest && !o.Force {
		return s, fmt.Errorf("plan %s: the %s failover of %s made the production VMs at the DR site: undo deletes them only with --force", p.Name, s.Mode, engine.FormatTime(s.Started))
	}
	var scl *nutanix.Client
	var sconn *clusterjob.Connector
	if s.Mode == ModePlanned {
		// The DR VMs go only if the source VMs can run again.
		if scl, sconn, err = p.site(p.SourceCluster).Connect(ctx, log, o.TuneCluster); err != nil {
			return s, fmt.Errorf("undo of plan %s: nothing removed: source site: %w", p.Name, err)
		}
		defer scl.Close()
		defer sconn.Close()
		if err := sourceReady(ctx, scl, s); err != nil {
			return s, fmt.Errorf("undo of plan %s: nothing removed: %w", p.Name, err)
		}
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
	if err := sweep(ctx, r, conn.Clusters, "DR", log); err != nil {
		return s, fmt.Errorf("undo of plan %s: %w", p.Name, err)
	}
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return s, err
	}
	var errs []error
	for i := range s.VMs {
		v := &s.VMs[i]
		if v.Status != VMOn && v.Status != VMRestoring && v.Status != VMRestored && v.Status != VMFailed {
			continue
		}
		if err := removeVM(ctx, cl, j, v, log); err != nil {
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
	// The state says whether VMs ran from the DR repository, whatever
	// the plan says now (instant_nfs may have been dropped since).
	if s.instant() || p.InstantNFS != "" {
		if err := releaseHolds(ctx, p, cl, log); err != nil {
			return s, fmt.Errorf("undo of plan %s: the VMs are removed, but their restore points are still held: %w (run undo again)", p.Name, err)
		}
	}
	if s.Mode == ModePlanned {
		if err := restartSource(ctx, p, scl, sconn, s, log); err != nil {
			return s, fmt.Errorf("undo of plan %s: the DR VMs are removed; %w (run undo again)", p.Name, err)
		}
	}
	return s, s.remove()
}

// releaseHolds releases the holds of instant restores whose VMs are gone,
// through a writable handle of the DR repository.
func releaseHolds(ctx context.Context, p *Plan, cl nutanix.Cluster, log *slog.Logger) error {
	w, err := openRepo(ctx, p, true)
	if err != nil {
		return err
	}
	defer w.Close()
	gone, err := restore.SweepHolds(ctx, w, cl)
	if len(gone) > 0 {
		log.Info("released the holds of instant restores", "holds", len(gone))
	}
	return err
}

// sourceReady checks that the source site cl has every VM the planned
// failover shut down.
func sourceReady(ctx context.Context, cl nutanix.Cluster, s *State) error {
	for _, v := range s.VMs {
		if !v.SourceWasOn {
			continue
		}
		if _, err := cl.GetVM(ctx, v.SourceUUID); err != nil {
			return fmt.Errorf("source VM %s (%s): %w: it could not run again (keep the DR VMs, or remove them with care by hand)", v.VM, v.SourceUUID, err)
		}
	}
	return nil
}

// restartSource leaves the source site (cl) as a planned failover found it:
// what its killed final backups left (the source repository's journal)
// is swept, and the VMs it shut down are powered back on.
func restartSource(ctx context.Context, p *Plan, cl nutanix.Cluster, conn *clusterjob.Connector, s *State, log *slog.Logger) error {
	src, err := openRepository(ctx, "source repository", p.SourceRepository, firstOf(p.SourcePasswordFile, p.PasswordFile), true)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := sweep(ctx, src, conn.Clusters, "source", log); err != nil {
		return err
	}
	for _, v := range s.VMs {
		if !v.SourceWasOn {
			continue
		}
		if err := cl.SetPowerState(ctx, v.SourceUUID, nutanix.PowerOn); err != nil {
			return fmt.Errorf("power %s back on at the source site: %w", v.VM, err)
		}
		log.Info("powered on at the source site", "vm", v.VM)
	}
	return nil
}

// sweep deletes what killed jobs left at a site, as r's journal names it;
// anything it could not delete, or a job still running there, is an
// error.
func sweep(ctx context.Context, r *engine.Repository, clusters clusterjob.Clusters, which string, log *slog.Logger) error {
	left, err := sweepSite(ctx, r, clusters, which, log)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("the %s repository's journal still names %d object(s) a killed job made (%s): run the command again, or ahvfs cleanup",
			which, len(left), strings.Join(left, "; "))
	}
	return nil
}

// tidy is sweep where leftovers do not stop the command: what it could
// not delete, or jobs running there (a DR site's own backups), is logged
// and left to a later sweep.
func tidy(ctx context.Context, r *engine.Repository, clusters clusterjob.Clusters, which string, log *slog.Logger) error {
	left, err := sweepSite(ctx, r, clusters, which, log)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		log.Warn("leftovers of other jobs stay for a later sweep (ahvfs cleanup)", "site", which, "objects", strings.Join(left, "; "))
	}
	return nil
}

// sweepSite sweeps r's journal through clusters and returns what it
// left: objects it could not delete, and jobs still running.
func sweepSite(ctx context.Context, r *engine.Repository, clusters clusterjob.Clusters, which string, log *slog.Logger) ([]string, error) {
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return nil, err
	}
	rep, err := clusterjob.SweepBefore(ctx, j, clusters, log)
	if err != nil {
		return nil, fmt.Errorf("sweep the %s repository's journal: %w", which, err)
	}
	if len(rep.Deleted) > 0 {
		log.Info("removed what killed jobs left", "site", which, "objects", len(rep.Deleted))
	}
	return append(append(rep.Unresolved, rep.Errors...), rep.Running...), nil
}

// removeVM powers off and deletes a VM the failover made, after its
// reference snapshots (j's, when its chain was continued), and the
// external repository an instant restore of it read from. One that is
// gone already is no error; a VM killed while its restore ran is looked
// for by its name, leaving out the VMs that had the name before.
func removeVM(ctx context.Context, cl nutanix.Cluster, j *clusterjob.Journal, v *VMState, log *slog.Logger) error {
	uuids := []string{}
	if v.UUID != "" {
		uuids = append(uuids, v.UUID)
	} else if v.Status == VMRestoring {
		// Killed while its restore ran: the VM, if made, is the one of
		// its name that was not there before. (A VM failed before its
		// restore began made nothing: the name is not searched.)
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
		if err != nil && !errors.Is(err, nutanix.ErrNotFound) {
			return err
		}
		if err == nil && vm.Name != v.Name {
			return fmt.Errorf("VM %s is now named %s: not deleted (check it by hand)", id, vm.Name)
		}
		if err := backup.DropReference(ctx, j, cl, id, log); err != nil {
			return fmt.Errorf("its reference snapshot: %w", err)
		}
		if err == nil {
			// An instant restore's VM takes its external repository along.
			if _, err := restore.DeleteVM(ctx, cl, vm); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
		}
	}
	if v.ExternalRepo != "" {
		// Also when the VM went in a run killed before the repository.
		if _, _, err := restore.RemoveRepositories(ctx, cl, []string{v.ExternalRepo}); err != nil {
			return fmt.Errorf("external repository %s: %w", v.ExternalRepo, err)
		}
	}
	return nil
}
