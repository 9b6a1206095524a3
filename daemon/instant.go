package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/dustin/go-humanize"
)

// The kinds of the jobs that end an instant restore.
const (
	KindInstantFinish = "instant-finish"
	KindInstantCancel = "instant-cancel"
)

// instantPoll is how often a finish asks the cluster about hydration.
const instantPoll = 5 * time.Second

var _ console.Instant = consoleSource{}

// InstantVMs asks each cluster that allows instant restores (instant_nfs)
// which VMs instant restores made are not finished.
func (c consoleSource) InstantVMs(ctx context.Context) ([]console.InstantVM, error) {
	vms, err := c.d.instant.get(func() ([]console.InstantVM, error) { return c.instantVMs(ctx) })
	return slices.Clone(vms), err
}

func (c consoleSource) instantVMs(ctx context.Context) ([]console.InstantVM, error) {
	d := c.d
	var out []console.InstantVM
	var errs []error
	for _, cc := range d.config().Cluster {
		if cc.InstantNFS == "" {
			continue
		}
		vms, err := c.instantOn(ctx, cc)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cc.Name, err))
			continue
		}
		out = append(out, vms...)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, err := range errs {
		d.log.Warn("instant restores not listed", "err", err)
	}
	return out, nil
}

func (c consoleSource) instantOn(ctx context.Context, cc ClusterConfig) ([]console.InstantVM, error) {
	d := c.d
	s, err := d.connect(ctx, cc, d.log)
	if err != nil {
		return nil, err
	}
	defer s.close()
	vms, err := restore.Unfinished(ctx, s.cl)
	if err != nil {
		return nil, err
	}
	out := make([]console.InstantVM, 0, len(vms))
	for _, v := range vms {
		iv := console.InstantVM{Cluster: cc.Name, Name: v.Name, UUID: v.UUID, PowerState: v.PowerState, Hydrated: v.Hydrated}
		iv.SourceVM, iv.SourceUUID = d.stats.instantSource(cc.Name, v.UUID)
		for _, disk := range v.Disks {
			iv.Disks = append(iv.Disks, console.InstantDisk{Address: disk.Address, Size: disk.Size, RemainingBytes: disk.Remaining, Status: disk.Status})
		}
		out = append(out, iv)
	}
	return out, nil
}

// EndInstant queues a job that finishes or cancels an instant restore.
func (c consoleSource) EndInstant(_ context.Context, vm console.InstantVM, cancel bool, by string) (string, error) {
	kind := KindInstantFinish
	if cancel {
		kind = KindInstantCancel
	} else if !vm.Hydrated {
		// Finish then only removes the external repository: its job
		// never holds the cluster's slot for the hours hydration takes.
		var left int64
		for _, disk := range vm.Disks {
			left += disk.RemainingBytes
		}
		return "", console.Conflict(fmt.Errorf("%s is still hydrating (%s left): finish it once hydrated", vm.Name, humanize.IBytes(uint64(left))))
	}
	t := &task{kind: kind, cluster: vm.Cluster, by: by, onlyNames: []string{vm.Name}, instant: &vm}
	id, err := c.d.enqueue(t, kind, "", func(q *task) bool {
		return q.instant != nil && q.instant.Cluster == vm.Cluster && q.instant.UUID == vm.UUID
	}, fmt.Sprintf("instant restore %s is already being finished or cancelled", vm.Name))
	if err != nil {
		return "", err
	}
	name, uuid := instantJobVM(vm)
	c.d.live.vm(id, name, uuid)
	return id, nil
}

// instantJobVM is the VM a job on an instant restore is shown under: the
// VM of its restore point when known (a scoped user sees the jobs of its
// VMs), else the restored VM.
func instantJobVM(vm console.InstantVM) (name, uuid string) {
	if vm.SourceUUID != "" {
		return vm.SourceVM, vm.SourceUUID
	}
	return vm.Name, vm.UUID
}

// instantJob finishes (waits for hydration, removes the external
// repository) or cancels (deletes the VM) an instant restore, releases
// the restore points no VM reads from any more, and records it.
func (d *Daemon) instantJob(ctx context.Context, cfg *Config, t *task) bool {
	iv := t.instant
	job := d.startJob(t, t.kind, "")
	job.Target = iv.Cluster
	name, uuid := instantJobVM(*iv)
	jv := engine.JobVM{VM: name, UUID: uuid, Result: engine.JobOK}
	job.Notes = append(job.Notes, fmt.Sprintf("instant restore %s (%s) on %s", iv.Name, iv.UUID, iv.Cluster))
	log := d.live.logger(d.log.With("job", job.ID, "kind", t.kind), job.ID, d.stats.uuidOf)
	err := func() error {
		s, err := d.connect(ctx, cfg.cluster(iv.Cluster), log)
		if err != nil {
			return err
		}
		defer s.close()
		var res *restore.FinishResult
		if t.kind == KindInstantCancel {
			log.Info("deleting the instantly restored VM", "vm", iv.Name)
			res, err = restore.Cancel(ctx, s.cl, iv.Name)
		} else {
			log.Info("waiting for the disks to hydrate", "vm", iv.Name)
			res, err = restore.Finish(ctx, s.cl, iv.Name, instantPoll)
		}
		if res != nil {
			for _, x := range res.RemovedRepositories {
				job.Notes = append(job.Notes, "removed the external repository "+x)
			}
		}
		if err != nil {
			return err
		}
		r, release, err := d.repo.acquire(ctx)
		if err != nil {
			return fmt.Errorf("open the repository to release its holds: %w", err)
		}
		defer release()
		gone, err := restore.SweepHolds(ctx, r, s.cl)
		for _, h := range gone {
			job.Notes = append(job.Notes, "released "+h.Point)
		}
		return err
	}()
	return d.recordOne(ctx, job, jv, err)
}
