package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
)

// Failback moves the VMs of a planned or unplanned failover (permanent
// or not) back to the source site with no data lost, sending only what
// changed at the DR site: each DR VM is shut down (the last stage's
// first) and backed up last into the DR repository — an incremental on
// the point it was restored from, its chain continued there — and the
// new points are synced to the source repository. The VMs are then
// restored at the source under their own names, on the source networks
// (network_map inverted), each replacing its old VM there (left off by the
// failover) on that VM's AHV cluster, and powered on stage by stage, each
// continuing its chain in the source repository. Last, the DR VMs go, and
// the reference snapshots of both old VMs, and the plan's state is
// removed. Every
// step is in the state: run again after a kill, it goes on.
func Failback(ctx context.Context, p *Plan, o Options) (*State, error) {
	log := o.logger().With("plan", p.Name, "mode", "failback")
	if p.SourceRepository == "" {
		return nil, fmt.Errorf("plan %s: source_repository: missing (a failback syncs the VMs' last backups there)", p.Name)
	}
	ps, err := openState(ctx, p, true, true)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	s := ps.s
	if s == nil || s.Mode == ModeTest || !s.Done {
		return s, fmt.Errorf("plan %s: no planned or unplanned failover has run to its end: nothing to fail back", p.Name)
	}
	src, err := openRepository(ctx, "source repository", p.SourceRepository, firstOf(p.SourcePasswordFile, p.PasswordFile), true)
	if err != nil {
		return s, err
	}
	defer src.Close()
	dsite, ssite := p.site(p.TargetCluster), p.site(p.SourceCluster)
	dcl, dconn, err := dsite.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return s, fmt.Errorf("DR site: %w", err)
	}
	defer dcl.Close()
	defer dconn.Close()
	scl, sconn, err := ssite.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return s, fmt.Errorf("source site: %w", err)
	}
	defer scl.Close()
	defer sconn.Close()
	if s.Back == nil {
		if err := beginFailback(ctx, p, scl, ps.r, s); err != nil {
			return s, err
		}
	}
	if !s.Back.Synced {
		legs := make([]leg, len(s.VMs))
		for i := range s.VMs {
			v := &s.VMs[i]
			b := v.Back
			legs[i] = leg{stage: v.Stage, vm: v.Name, uuid: v.UUID, status: &b.Status, shutdown: &b.Shutdown, point: &b.Point, pointTime: &b.PointTime,
				// A stale copy the source site may run again goes too.
				before: func(bool) error {
					if v.SourceUUID == "" {
						return nil
					}
					_, err := powerDown(ctx, scl, v.SourceUUID, p.shutdownTimeout, log.With("vm", v.VM, "site", "source"))
					if err != nil && !errors.Is(err, nutanix.ErrNotFound) {
						return fmt.Errorf("shut down the old %s at the source site: %w (run failback again to go on)", v.VM, err)
					}
					return nil
				},
				record: func(status string) error { return stepBack(s, v, o, status, "") }}
		}
		if err := shutDown(ctx, p, dcl, legs, "DR", log); err != nil {
			return s, err
		}
		sent, err := backUpAndSync(ctx, p, dsite, dcl, dconn, ps.r, src, legs, "source", log)
		if err != nil {
			return s, err
		}
		s.Back.Synced, s.Back.BytesSent = true, s.Back.BytesSent+sent
		log.Info("synced back", "bytes", sent)
		if err := s.save(); err != nil {
			return s, err
		}
	}
	if err := sweep(ctx, src, sconn.Clusters, "source", log); err != nil {
		return s, err
	}
	// What a killed or failed run left at DR too: the last removals drop
	// the DR VMs' reference snapshots through the DR journal. Jobs of the
	// DR site's own (its backups) may run meanwhile: leftovers there do
	// not stop the failback.
	if err := tidy(ctx, ps.r, dconn.Clusters, "DR", log); err != nil {
		return s, err
	}
	sj, err := clusterjob.RepositoryJournal(src)
	if err != nil {
		return s, err
	}
	at := &target{site: ssite, cl: scl, conn: sconn, r: src, j: sj, chain: true, log: log}
	if err := at.bringUpStages(ctx, p, s, &s.Back.StagesDone, func(v *VMState) *slot {
		if v.Back.Status == VMOn || v.Back.Status == VMRemoved {
			return nil
		}
		sl := p.failbackSlot(ctx, scl, s, v, o)
		return &sl
	}); err != nil {
		return s, err
	}
	if err := removeOld(ctx, o, scl, sj, dcl, ps.r, s, log); err != nil {
		return s, err
	}
	s.Back.Done = true
	return s, s.remove()
}

// beginFailback starts the failback's state. After an unplanned failover
// the old source VM is the one the restored point was taken of (its
// configuration names its UUID and cluster), if the source site still
// has it: a site that came back may run it, stale; it is shut down and
// replaced like a planned failover's. A VM of the name elsewhere is never
// taken for it.
func beginFailback(ctx context.Context, p *Plan, scl nutanix.Cluster, r *engine.Repository, s *State) error {
	for i := range s.VMs {
		v := &s.VMs[i]
		if v.SourceUUID == "" {
			rp, err := r.Resolve(ctx, v.Point)
			if err != nil {
				return err
			}
			cfg, err := clusterjob.ConfigOf(rp)
			if err != nil {
				return err
			}
			v.SourceAHVCluster = cfg.ClusterUUID
			if cfg.UUID != "" && cfg.UUID != v.UUID {
				if _, err := scl.GetVM(ctx, cfg.UUID); err == nil {
					v.SourceUUID = cfg.UUID
				} else if !errors.Is(err, nutanix.ErrNotFound) {
					return fmt.Errorf("source site: VM %s: %w", v.VM, err)
				}
			}
		}
		if v.SourceUUID != "" && v.SourceAHVCluster == "" {
			old, err := scl.GetVM(ctx, v.SourceUUID)
			if err != nil {
				return fmt.Errorf("source site: VM %s: %w", v.VM, err)
			}
			v.SourceAHVCluster = old.ClusterUUID
		}
	}
	s.Back = &FailbackState{Started: time.Now().UTC()}
	for i := range s.VMs {
		s.VMs[i].Back = &VMBack{Status: VMPending}
	}
	return s.save()
}

// failbackSlot is a failback's VM v: restored at the source under its
// source name, on the source networks, on its old VM's AHV cluster.
func (p *Plan) failbackSlot(ctx context.Context, scl nutanix.Cluster, s *State, v *VMState, o Options) slot {
	b := v.Back
	return slot{name: v.VM, point: b.Point, status: &b.Status, uuid: &b.UUID, existing: &b.Existing, chained: &b.Chained, external: new(string), instant: new(bool),
		options: func(rp *engine.RestorePoint) (restore.Options, error) {
			ro := restore.Options{DataPath: p.DataPath, TargetCluster: v.SourceAHVCluster,
				Keys: map[string]string{"--network-map": "network_map (inverted: DR subnet=source subnet)",
					"--target-cluster": "the VM's source AHV cluster (recorded by the failover; gone)"}}
			if v.SourceUUID != "" {
				// The new VM replaces the old one (the restore's overwrite:
				// created first, then the old one deleted, all journaled);
				// a killed restore may have finished that already.
				_, err := scl.GetVM(ctx, v.SourceUUID)
				switch {
				case err == nil:
					ro.Overwrite, ro.Replace = true, v.SourceUUID
				case !errors.Is(err, nutanix.ErrNotFound):
					return ro, fmt.Errorf("source site: the old VM %s: %w", v.SourceUUID, err)
				}
			}
			back, err := invert(p.netMap)
			if err != nil {
				return ro, err
			}
			ro.NetworkMap, err = p.nicMap(back, rp, "")
			return ro, err
		},
		record: func(status, uuid, msg string) error {
			if uuid != "" {
				b.UUID = uuid
			}
			b.Error = msg
			return stepBack(s, v, o, status, msg)
		},
		save: s.save}
}

// removeOld deletes, once every VM runs at the source again, the old
// source VMs and the DR VMs, each after its reference snapshots.
func removeOld(ctx context.Context, o Options, scl nutanix.Cluster, sj *clusterjob.Journal, dcl nutanix.Cluster, dr *engine.Repository, s *State, log *slog.Logger) error {
	dj, err := clusterjob.RepositoryJournal(dr)
	if err != nil {
		return err
	}
	for i := range s.VMs {
		v := &s.VMs[i]
		if v.Back.Status != VMOn {
			continue
		}
		if v.SourceUUID != "" && v.SourceUUID != v.Back.UUID {
			// The restore replaced the old VM; its reference snapshots
			// are left.
			if err := backup.DropReference(ctx, sj, scl, v.SourceUUID, log); err != nil {
				return fmt.Errorf("the old %s's reference snapshots at the source site: %w (run failback again)", v.VM, err)
			}
			if err := removeVM(ctx, scl, sj, &VMState{Name: v.VM, UUID: v.SourceUUID}, log); err != nil {
				return fmt.Errorf("the old %s at the source site: %w (run failback again)", v.VM, err)
			}
		}
		if err := removeVM(ctx, dcl, dj, &VMState{Name: v.Name, UUID: v.UUID}, log); err != nil {
			return fmt.Errorf("%s at the DR site: %w (run failback again)", v.Name, err)
		}
		if err := stepBack(s, v, o, VMRemoved, ""); err != nil {
			return err
		}
	}
	return nil
}

// stepBack records a VM's new failback status.
func stepBack(s *State, v *VMState, o Options, status, msg string) error {
	v.Back.Status, v.Back.Error = status, msg
	if o.Progress != nil {
		o.Progress(*v)
	}
	return s.save()
}
