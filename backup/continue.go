package backup

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// ContinueOptions configure Continue.
type ContinueOptions struct {
	// Journal keeps the reference, default the repository's.
	Journal *clusterjob.Journal
	// Logger, default discard.
	Logger *slog.Logger
}

// Continue makes a VM restored from rp continue rp's chain in repo (a
// failover's VMs at the DR site, backed up there afterwards): it takes a
// snapshot of the VM and keeps it as the VM's reference, as if a backup
// had read rp from it, so that the VM's next backup into repo is an
// incremental on rp that reads only what the VM changed since.
//
// The VM's disks must still be rp's: call it before the VM is powered
// on. Its disks are matched to rp's by bus address; a disk with no match
// (or another size) is read in full by the next backup. The VM keeps
// rp's name in repo only if it has it at the cluster.
func Continue(ctx context.Context, repo *engine.Repository, cl nutanix.Cluster, vmUUID string, rp *engine.RestorePoint, o ContinueOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	j := o.Journal
	if j == nil {
		var err error
		if j, err = clusterjob.RepositoryJournal(repo); err != nil {
			return err
		}
	}
	v, err := cl.GetVM(ctx, vmUUID)
	if err != nil {
		return fmt.Errorf("continue the chain of %s: %w", rp.Name(), err)
	}
	if v.PowerState != nutanix.PowerOff {
		return fmt.Errorf("continue the chain of %s: VM %s is %s: its disks may no longer be the restore point's", rp.Name(), v.Name, v.PowerState)
	}
	if ref, err := LoadReference(j, v.UUID); err != nil {
		return err
	} else if ref != nil && ref.Last.RestorePoint == rp.ID {
		return nil // done by a run killed before it could say so
	}
	disks, _ := backupDisks(v, nil)
	var refDisks []RefDisk
	for _, d := range disks {
		for _, pd := range rp.Disks {
			if strings.EqualFold(fmt.Sprintf("%s.%d", pd.Bus, pd.BusIndex), d.Address()) && pd.Size == d.SizeBytes {
				refDisks = append(refDisks, RefDisk{UUID: d.UUID, N: pd.Index, Size: pd.Size, Address: d.Address(), From: pd.UUID})
			}
		}
	}
	return j.Run(ctx, "continue", cl, clusterjob.JobOptions{Logger: o.Logger}, func(jb *clusterjob.Job) error {
		snap, so, err := jb.CreateSnapshot(ctx, v.UUID, v.Name, false)
		if err != nil {
			return fmt.Errorf("continue the chain of %s: %w", rp.Name(), err)
		}
		ref := &Reference{VMUUID: v.UUID, VM: v.Name, Last: RefSnapshot{Snapshot: snap, RestorePoint: rp.ID, Level: rp.Level, Time: rp.Time, Disks: refDisks}}
		if err := putRef(j, ref); err != nil {
			return err // the job's close deletes the snapshot
		}
		o.Logger.Info("chain continues", "vm", v.Name, "uuid", v.UUID, "point", rp.Name(), "snapshot", snap.ID, "disks", len(refDisks))
		return jb.Forget(so)
	})
}

// DropReference deletes a VM's reference snapshots from the cluster and
// forgets the reference (a VM that a failover made and its undo
// deletes). A VM without one is no error.
func DropReference(ctx context.Context, j *clusterjob.Journal, cl nutanix.Cluster, vmUUID string, log *slog.Logger) error {
	ref, err := LoadReference(j, vmUUID)
	if err != nil || ref == nil {
		return err
	}
	return j.Run(ctx, "drop-reference", cl, clusterjob.JobOptions{Logger: log}, func(jb *clusterjob.Job) error {
		var objs []clusterjob.Object
		for _, s := range ref.snapshots() {
			o := snapshotObject(ref, s)
			if err := jb.Record(o); err != nil {
				return err
			}
			objs = append(objs, o)
		}
		if err := j.Unkeep(refOwner(vmUUID)); err != nil {
			return err
		}
		for _, o := range objs {
			if err := jb.Release(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
}
