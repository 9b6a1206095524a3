package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/restore"
)

// restoreTask is what a console restore restores, and where.
type restoreTask struct {
	point string // VM@TIME
	uuid  string // the original VM's
	o     restore.Options
}

var _ console.Actions = consoleSource{}

// startJob is the record of a task's job as it starts, shown as running
// in the console.
func (d *Daemon) startJob(t *task, kind, policy string) engine.Job {
	start := d.clock.Now()
	j := engine.Job{ID: t.jobID, Kind: kind, Policy: policy, Trigger: t.trigger, Start: start, Result: engine.JobOK}
	if j.ID == "" {
		j.ID = engine.NewJobID(start)
	}
	if t.by != "" {
		j.Notes = append(j.Notes, "started by "+t.by+" in the console")
	}
	d.live.start(j)
	return j
}

// enqueue queues a task the console asked for and shows it as queued,
// unless a task already queued or running is the same (same, when set,
// says so): then it is a conflict, busy saying what runs.
func (d *Daemon) enqueue(t *task, kind, policy string, same func(*task) bool, busy string) (string, error) {
	t.jobID, t.trigger = engine.NewJobID(d.clock.Now()), TriggerConsole
	t.key = taskKey(t.kind, t.policy) + "/" + t.jobID
	d.mu.Lock()
	if same != nil && d.pendingLocked(same) {
		d.mu.Unlock()
		return "", console.Conflict(errors.New(busy))
	}
	// Shown before it can start: a running job is never shown queued.
	d.live.add(engine.Job{ID: t.jobID, Kind: kind, Policy: policy, Trigger: TriggerConsole, Start: d.clock.Now(),
		Notes: []string{"started by " + t.by + " in the console"}})
	d.queue = append(d.queue, t)
	d.stats.setQueue(len(d.queue), len(d.running))
	d.mu.Unlock()
	d.log.Info("job queued", "kind", kind, "policy", policy, "trigger", TriggerConsole, "by", t.by, "job", t.jobID)
	d.poke()
	return t.jobID, nil
}

// BackupNow queues a backup of one VM in its policy. A backup of the VM
// the console queued before and that has not ended is a conflict.
func (c consoleSource) BackupNow(_ context.Context, vm console.VMStatus, o console.BackupRequest, by string) (string, error) {
	d := c.d
	if d.config().policy(vm.Policy) == nil {
		return "", console.Conflict(fmt.Errorf("policy %s of VM %s is no longer in the configuration", vm.Policy, vm.Name))
	}
	t := &task{kind: KindBackup, policy: vm.Policy, cluster: d.config().policy(vm.Policy).Cluster, by: by,
		onlyNames: []string{vm.Name}, full: o.Full}
	if vm.UUID != "" {
		t.only = []string{vm.UUID}
	}
	id, err := d.enqueue(t, KindBackup, vm.Policy, func(q *task) bool {
		return q.kind == KindBackup && slices.Contains(q.onlyNames, vm.Name)
	}, fmt.Sprintf("a backup of %s asked for in the console is already queued or running", vm.Name))
	if err != nil {
		return "", err
	}
	d.live.vm(id, vm.Name, vm.UUID)
	return id, nil
}

// Restore checks a restore's options and its restore point now (so that
// the user hears of a mistake at once), then queues it on the cluster
// restored to.
func (c consoleSource) Restore(ctx context.Context, vm, uuid, at string, req console.RestoreRequest, by string) (string, error) {
	d := c.d
	cfg := d.config()
	cluster := req.Cluster
	if cluster == "" {
		if p := cfg.policy(d.stats.policyOf(vm, cfg.Policy)); p != nil {
			cluster = p.Cluster
		} else if len(cfg.Cluster) == 1 {
			cluster = cfg.Cluster[0].Name
		}
	}
	if !slices.ContainsFunc(cfg.Cluster, func(cc ClusterConfig) bool { return cc.Name == cluster }) {
		return "", console.Invalid(fmt.Errorf("cluster %q: not a [[cluster]] of the configuration", cluster))
	}
	pool := cfg.cluster(cluster).XAPI != ""
	o := restore.Options{TargetCluster: req.TargetCluster, Name: req.Name, Container: req.Container, NetworkMap: req.NetworkMap,
		Disks: req.Disks, PowerOn: req.PowerOn, DataPath: req.DataPath, SR: req.SR,
		Keys: map[string]string{"--target-cluster": "target_cluster", "--name": "name", "--container": "container",
			"--network-map": "network_map", "--disks": "disks", "--data-path": "data_path", "--sr": "sr",
			"--nfs": "instant", "--overwrite": "overwrite"}}
	if o.DataPath == restore.DataPathInstant {
		return "", console.Invalid(fmt.Errorf("data_path %q: ask for an instant restore with instant", o.DataPath))
	}
	switch {
	case pool && req.Instant:
		return "", console.Invalid(fmt.Errorf("cluster %s is an XCP-ng pool: no instant restore there", cluster))
	case pool:
		if err := o.ValidateXen(); err != nil {
			return "", console.Invalid(err)
		}
	case o.SR != "":
		return "", console.Invalid(fmt.Errorf("sr: cluster %s is a Prism: give container", cluster))
	}
	if req.Instant {
		o.DataPath, o.NFS = restore.DataPathInstant, cfg.cluster(cluster).InstantNFS
		if o.NFS == "" {
			return "", console.Invalid(fmt.Errorf("cluster %s has no instant_nfs (an ahvfs NFS server of the repository its hosts reach): no instant restore there", cluster))
		}
	}
	if err := o.Validate(); err != nil {
		return "", console.Invalid(err)
	}
	rp, err := c.point(ctx, vm, uuid, at)
	if err != nil {
		return "", err
	}
	t := &task{kind: KindRestore, policy: "", cluster: cluster, by: by, onlyNames: []string{vm},
		restore: &restoreTask{point: rp.Name(), uuid: rp.VMUUID, o: o}}
	id, _ := d.enqueue(t, KindRestore, "", nil, "")
	d.live.vm(id, vm, rp.VMUUID)
	return id, nil
}

// point resolves a restore point of the console's (bound to the VM's UUID
// when uuid is set); not found wraps fs.ErrNotExist.
func (c consoleSource) point(ctx context.Context, vm, uuid, at string) (*engine.RestorePoint, error) {
	r, done, err := c.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return resolvePoint(ctx, r, vm, uuid, at)
}

func resolvePoint(ctx context.Context, r *engine.Repository, vm, uuid, at string) (*engine.RestorePoint, error) {
	rp, err := r.Resolve(ctx, vm+"@"+at)
	switch {
	case errors.Is(err, engine.ErrNotFound) || err == nil && uuid != "" && rp.VMUUID != uuid:
		return nil, fmt.Errorf("restore point %s@%s: %w", vm, at, fs.ErrNotExist)
	case err != nil:
		return nil, err
	}
	return rp, nil
}

// restoreJob runs a restore the console queued, and records it.
func (d *Daemon) restoreJob(ctx context.Context, cfg *Config, t *task) bool {
	rt := t.restore
	job := d.startJob(t, KindRestore, "")
	job.Target = t.cluster // the Prism: instant restores are known by it
	jv := engine.JobVM{VM: t.onlyNames[0], UUID: rt.uuid, RestorePoint: rt.point, Result: engine.JobOK}
	log := d.live.logger(d.log.With("job", job.ID, "kind", KindRestore), job.ID, d.stats.uuidOf)
	err := func() error {
		s, err := d.connectAny(ctx, cfg.cluster(t.cluster), log)
		if err != nil {
			return err
		}
		defer s.close()
		// The writer: an instant restore holds its point there.
		r, release, err := d.repo.acquire(ctx)
		if err != nil {
			return fmt.Errorf("open the repository: %w", err)
		}
		defer release()
		rp, err := r.Resolve(ctx, rt.point)
		if err != nil {
			return err
		}
		o := rt.o
		if o.Journal, err = clusterjob.RepositoryJournal(r); err != nil {
			return err
		}
		o.Logger = log
		o.Progress = diskProgress(d.live.vm(job.ID, jv.VM, rt.uuid), len(rp.Disks))
		log.Info("restore started", "vm", jv.VM, "point", rt.point, "cluster", t.cluster)
		res, err := s.restore(ctx, r, rp, o)
		if err != nil {
			return err
		}
		jv.Seconds = res.Duration.Seconds()
		for _, disk := range res.Disks {
			jv.BytesRead += disk.Written
		}
		job.Notes = append(job.Notes, fmt.Sprintf("restored as VM %s (%s) on %s", res.Name, res.VMUUID, res.Cluster))
		if x := res.ExternalRepository; x != nil {
			job.Notes = append(job.Notes, fmt.Sprintf("runs from nfs://%s%s (external repository %s) while it hydrates: finish it in the console once hydrated",
				x.Address, x.Export, x.Name))
		}
		job.Notes = append(job.Notes, res.Warnings...)
		return nil
	}()
	return d.recordOne(ctx, job, jv, err)
}

// recordOne records a job about one VM that ended with err, and reports
// whether it succeeded.
func (d *Daemon) recordOne(ctx context.Context, job engine.Job, jv engine.JobVM, err error) bool {
	if err != nil {
		jv.Result, jv.Error = engine.JobFailed, err.Error()
		if errors.Is(err, context.Canceled) {
			jv.Result = engine.JobCancelled
		}
	}
	job.VMs = []engine.JobVM{jv}
	job.Result, job.Error = jv.Result, jv.Error
	d.record(ctx, nil, job)
	return err == nil
}

// diskProgress turns restore's and export's per-disk progress (called
// from many goroutines, not always in order) into the VM's.
func diskProgress(v *liveVM, disks int) func(disk int, done, total int64) {
	var mu sync.Mutex
	type disk struct {
		report func(int64)
		most   int64
	}
	seen := make(map[int]*disk, disks)
	return func(n int, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		d := seen[n]
		if d == nil {
			d = &disk{report: v.disk(total)}
			seen[n] = d
		}
		if done > d.most {
			d.most = done
			d.report(done)
		}
	}
}

// Lock extends a restore point's retention lock, and records it.
func (c consoleSource) Lock(ctx context.Context, vm, uuid, at string, until time.Time, by string) error {
	d := c.d
	if !until.After(d.clock.Now()) {
		return console.Invalid(fmt.Errorf("lock until %s: not in the future", until.Format(time.RFC3339)))
	}
	if !d.maint.TryRLock() {
		return console.Conflict(errors.New("a retention, gc or verify is running: lock when it ends"))
	}
	defer d.maint.RUnlock()
	return c.change(ctx, KindLock, vm, uuid, at, by, func(r *engine.Repository, rp *engine.RestorePoint) error {
		if rp.LockedUntil.After(until) {
			return console.Conflict(fmt.Errorf("%s is locked until %s: a lock is only ever extended", rp.Name(), rp.LockedUntil.Format(time.RFC3339)))
		}
		return r.LockRestorePoint(ctx, rp, until)
	})
}

// Forget removes a restore point, and records it. Retention, gc and
// verify exclude it: while one runs, it is a conflict (try again).
func (c consoleSource) Forget(ctx context.Context, vm, uuid, at string, by string) error {
	d := c.d
	if !d.maint.TryLock() {
		return console.Conflict(errors.New("a backup, sync, retention or verify is running: forget when it ends"))
	}
	defer d.maint.Unlock()
	return c.change(ctx, KindForget, vm, uuid, at, by, func(r *engine.Repository, rp *engine.RestorePoint) error {
		err := r.Forget(ctx, []*engine.RestorePoint{rp})
		if errors.Is(err, engine.ErrRetentionLocked) {
			return console.Conflict(err)
		}
		if err == nil {
			// d.refresh would wait for the maintenance lock this holds.
			if err := d.stats.refreshRepo(ctx, r); err != nil {
				d.log.Warn("repository metrics not refreshed", "err", err)
			}
		}
		return err
	})
}

// change applies fn to a restore point in the writable repository and
// records it in the job history.
func (c consoleSource) change(ctx context.Context, kind, vm, uuid, at, by string, fn func(*engine.Repository, *engine.RestorePoint) error) error {
	d := c.d
	r, release, err := d.repo.acquire(ctx)
	if err != nil {
		return fmt.Errorf("open the repository: %w", err)
	}
	defer release()
	rp, err := resolvePoint(ctx, r, vm, uuid, at)
	if err != nil {
		return err
	}
	start := d.clock.Now()
	err = fn(r, rp)
	if errors.Is(err, console.ErrConflict) || errors.Is(err, console.ErrInvalid) {
		return err // refused, not failed: the audit log has it
	}
	job := engine.Job{ID: engine.NewJobID(start), Kind: kind, Trigger: TriggerConsole, Start: start, Result: engine.JobOK,
		Notes: []string{"by " + by + " in the console"},
		VMs:   []engine.JobVM{{VM: rp.VM, UUID: rp.VMUUID, RestorePoint: rp.Name(), Result: engine.JobOK}}}
	if err != nil {
		job.Result, job.Error = engine.JobFailed, err.Error()
		job.VMs[0].Result, job.VMs[0].Error = engine.JobFailed, err.Error()
	}
	d.record(ctx, r, job)
	return err
}
