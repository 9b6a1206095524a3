package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/xapi"
)

// site is a connection to one cluster for one job: a Prism (cl and
// conn), or an XCP-ng pool (xc) for backups and restores.
type site struct {
	cl   *nutanix.Client
	conn *clusterjob.Connector
	xc   *xapi.Client
	cc   ClusterConfig
}

func (s *site) close() {
	if s.xc != nil {
		s.xc.Close(context.Background())
		return
	}
	s.conn.Close()
	s.cl.Close()
}

// listVMs lists the VMs a policy may select (an XCP-ng pool's: not its
// templates, snapshots or control domain).
func (s *site) listVMs(ctx context.Context) ([]nutanix.VM, error) {
	if s.xc == nil {
		return s.cl.ListVMs(ctx)
	}
	all, err := s.xc.VMs(ctx)
	if err != nil {
		return nil, err
	}
	var out []nutanix.VM
	for _, v := range all {
		if !v.IsATemplate && !v.IsASnapshot && !v.IsControlDomain {
			out = append(out, nutanix.VM{UUID: v.UUID, Name: v.NameLabel})
		}
	}
	return out, nil
}

// inventory answers a policy's categories (none on an XCP-ng pool: the
// configuration refuses them there).
func (s *site) inventory() nutanix.Inventory {
	if s.cl == nil {
		return nil
	}
	return s.cl
}

// restore restores rp onto the site.
func (s *site) restore(ctx context.Context, r *engine.Repository, rp *engine.RestorePoint, o restore.Options) (*restore.Result, error) {
	if s.xc != nil {
		return restore.RestoreXen(ctx, r, s.xc, rp, o)
	}
	o.Clusters = s.conn.Clusters
	o.ISCSIPort, o.InitiatorIQN = s.cc.ISCSIPort, s.cc.InitiatorIQN
	var err error
	if o.ISCSI.CHAP, err = s.cc.CHAP(); err != nil {
		return nil, err
	}
	return restore.Restore(ctx, r, s.cl, rp, o)
}

// backup runs one backup of o on the site.
func (s *site) backup(ctx context.Context, r *engine.Repository, o backup.Options) (*backup.Report, error) {
	if s.xc != nil {
		return backup.RunXen(ctx, r, s.xc, o)
	}
	o.Clusters = s.conn.Clusters
	o.ISCSIPort, o.InitiatorIQN = s.cc.ISCSIPort, s.cc.InitiatorIQN
	var err error
	if o.CHAP, err = s.cc.CHAP(); err != nil {
		return nil, err
	}
	return backup.Run(ctx, r, s.cl, o)
}

func (c *Config) cluster(name string) ClusterConfig {
	for _, cc := range c.Cluster {
		if cc.Name == name {
			return cc
		}
	}
	return ClusterConfig{Site: clusterjob.Site{Name: name}}
}

// connect connects to a Prism cluster.
func (d *Daemon) connect(ctx context.Context, cc ClusterConfig, log *slog.Logger) (*site, error) {
	if cc.XAPI != "" {
		return nil, fmt.Errorf("cluster %s is an XCP-ng pool: instant restores and exports go to Prism clusters", cc.Name)
	}
	cl, conn, err := cc.Connect(ctx, log, d.o.TuneCluster)
	if err != nil {
		return nil, err
	}
	return &site{cl: cl, conn: conn, cc: cc}, nil
}

// connectAny connects to a cluster that backups and restores go to: a
// Prism, or an XCP-ng pool.
func (d *Daemon) connectAny(ctx context.Context, cc ClusterConfig, log *slog.Logger) (*site, error) {
	if cc.XAPI == "" {
		return d.connect(ctx, cc, log)
	}
	o, err := cc.XAPIOptions(log)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cc.Name, err)
	}
	if d.o.TuneXen != nil {
		d.o.TuneXen(&o)
	}
	xc, err := xapi.Connect(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: connect to the XCP-ng pool %s: %w", cc.Name, o.URL, err)
	}
	return &site{xc: xc, cc: cc}, nil
}

// backupPolicy runs one backup of a policy (of the task's VMs alone when
// the console asked for them), then its retention and (unless it syncs
// on a schedule of its own) its sync. It reports whether the backup
// succeeded (partly counts).
func (d *Daemon) backupPolicy(ctx context.Context, cfg *Config, p *PolicyConfig, t *task) bool {
	trigger := t.trigger
	job := d.startJob(t, KindBackup, p.Name)
	log := d.live.logger(d.log.With("job", job.ID, "kind", KindBackup, "policy", p.Name), job.ID, d.stats.uuidOf)
	r, release, sel, err := d.backupVMs(ctx, cfg, p, t, &job, log)
	if release != nil {
		defer release()
	}
	if err != nil && len(job.VMs) == 0 {
		// Nothing ran: every VM the run was for failed this time.
		vms := t.onlyNames
		if vms == nil {
			vms = d.stats.policyVMs(p.Name)
		}
		for _, vm := range vms {
			job.VMs = append(job.VMs, engine.JobVM{VM: vm, UUID: d.stats.uuidOf(vm), Result: engine.JobFailed, Error: "not backed up: " + err.Error()})
		}
	}
	job.Result, job.Error = summarize(job.VMs, err)
	if r != nil {
		d.refresh(ctx, r)
	}
	d.record(ctx, r, job)
	if r == nil || ctx.Err() != nil || len(sel) == 0 {
		return job.Result == engine.JobOK || job.Result == engine.JobPartial
	}
	names := make([]string, 0, len(sel))
	for _, v := range sel {
		names = append(names, v.Name)
	}
	if !p.Retention.Empty() {
		d.prune(ctx, r, p, names, trigger)
	}
	if p.SyncTo != "" && p.SyncSchedule == nil {
		d.syncPolicy(ctx, cfg, p, trigger, r)
	}
	return job.Result == engine.JobOK || job.Result == engine.JobPartial
}

// backupVMs connects, resolves the policy's VMs and backs them up, filling
// in job. It returns the repository it acquired (release it) and the VMs
// selected.
func (d *Daemon) backupVMs(ctx context.Context, cfg *Config, p *PolicyConfig, t *task, job *engine.Job, log *slog.Logger) (*engine.Repository, func(), []nutanix.VM, error) {
	s, err := d.connectAny(ctx, cfg.cluster(p.Cluster), log)
	if err != nil {
		return nil, nil, nil, err
	}
	defer s.close()
	all, err := s.listVMs(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list VMs of cluster %s: %w", p.Cluster, err)
	}
	d.stats.listed(all)
	sel, notes, err := d.claim(ctx, cfg, p, s.inventory(), all)
	if err != nil {
		return nil, nil, nil, err
	}
	if t.onlyNames != nil {
		// By UUID when known: another VM may have the name now.
		sel = slices.DeleteFunc(sel, func(v nutanix.VM) bool {
			if t.only != nil {
				return !slices.Contains(t.only, v.UUID)
			}
			return !slices.Contains(t.onlyNames, v.Name)
		})
		if len(sel) == 0 {
			return nil, nil, nil, fmt.Errorf("the VM is no longer selected by policy %s", p.Name)
		}
	}
	job.Notes = append(job.Notes, notes...)
	r, release, err := d.repo.acquire(ctx)
	if err != nil {
		return nil, nil, sel, err
	}
	if len(sel) == 0 {
		job.Notes = append(job.Notes, "no VM selected")
		return r, release, sel, nil
	}
	reports, err := d.runBackups(ctx, r, s, p, sel, t.full, job.ID, log)
	for _, rep := range reports {
		for _, v := range rep.VMs {
			jv := jobVM(v)
			job.VMs = append(job.VMs, jv)
			job.BytesRead += v.BytesRead
			job.BytesStored += v.BytesNew
			if v.RestorePoint != "" {
				job.Points++
			}
			for _, w := range v.Warnings {
				job.Notes = append(job.Notes, v.VM+": "+w)
			}
		}
	}
	return r, release, sel, err
}

// jobVM is the job history's view of one VM's backup.
func jobVM(v backup.VMReport) engine.JobVM {
	jv := engine.JobVM{VM: v.VM, UUID: v.UUID, Result: engine.JobOK, RestorePoint: v.RestorePoint, Level: v.Level,
		BytesRead: v.BytesRead, BytesStored: v.BytesNew, Seconds: v.Duration.Seconds(), Error: v.Err}
	if v.Err != "" {
		jv.Result = engine.JobFailed
	}
	return jv
}

// vmProgress shows a VM's progress in the console (and logs each disk and
// VM), and updates its metrics as soon as its backup ends, not at the end
// of the whole job.
type vmProgress struct {
	d      *Daemon
	policy string
	job    string
	log    *slog.Logger
}

func (p vmProgress) DiskStart(vm, disk string, size, read int64) func(int64) {
	p.log.Info("disk started", "vm", vm, "disk", disk, "bytes", size, "to_read", read)
	return p.d.live.vm(p.job, vm, p.d.stats.uuidOf(vm)).disk(size)
}

func (p vmProgress) DiskDone(vm, disk string, err error) {
	if err != nil {
		p.log.Warn("disk failed", "vm", vm, "disk", disk, "err", err)
		return
	}
	p.log.Info("disk done", "vm", vm, "disk", disk)
}

func (p vmProgress) VMDone(v backup.VMReport) {
	if v.Err == "" {
		p.log.Info("VM backed up", "vm", v.VM, "point", v.RestorePoint, "level", v.Level)
	}
	p.d.stats.vmDone(p.policy, jobVM(v), p.d.clock.Now())
}

// summarize is a job's result from its VMs' and the run's error.
func summarize(vms []engine.JobVM, err error) (result, msg string) {
	bad := 0
	for _, v := range vms {
		if v.Error != "" {
			bad++
			if msg == "" {
				msg = v.VM + ": " + v.Error
			}
		}
	}
	good := len(vms) - bad
	switch {
	case errors.Is(err, context.Canceled):
		return engine.JobCancelled, err.Error()
	case err != nil && good > 0:
		return engine.JobPartial, err.Error()
	case err != nil:
		return engine.JobFailed, err.Error()
	case bad == 0:
		return engine.JobOK, ""
	case bad < len(vms):
		return engine.JobPartial, msg
	}
	return engine.JobFailed, msg
}

// claim resolves the VMs of every policy of p's cluster and returns those
// p backs up: a VM that two policies select belongs to the first in the
// file, and is named in a note of the other's job.
func (d *Daemon) claim(ctx context.Context, cfg *Config, p *PolicyConfig, inv nutanix.Inventory, all []nutanix.VM) ([]nutanix.VM, []string, error) {
	owner := map[string]string{}
	var mine []nutanix.VM
	var notes []string
	for i := range cfg.Policy {
		q := &cfg.Policy[i]
		if q.Cluster != p.Cluster {
			continue
		}
		sel, unmatched, err := backup.Select(ctx, inv, all, q.VMs, q.Exclude, q.Cats)
		if err != nil {
			if q.Name == p.Name {
				return nil, nil, fmt.Errorf("select VMs: %w", err)
			}
			d.log.Warn("VMs of another policy not resolved: overlaps with it are not detected this run", "policy", q.Name, "err", err)
			continue
		}
		for _, v := range sel {
			if _, ok := owner[v.UUID]; !ok {
				owner[v.UUID] = q.Name
			}
		}
		if q.Name == p.Name {
			mine = sel
			for _, u := range unmatched {
				notes = append(notes, fmt.Sprintf("%s selects no VM", u))
			}
		}
	}
	var out []nutanix.VM
	var names []string
	conflicts := map[string]string{}
	for _, v := range mine {
		if o := owner[v.UUID]; o != p.Name {
			conflicts[v.Name] = o
			continue
		}
		out = append(out, v)
		names = append(names, v.Name)
	}
	d.stats.selected(p.Name, names)
	for vm, o := range conflicts {
		msg := fmt.Sprintf("VM %s is selected by policies %s and %s: backed up by %s only", vm, o, p.Name, o)
		notes = append(notes, msg)
		d.log.Warn(msg, "policy", p.Name)
		d.stats.conflict(vm, o, p.Name)
	}
	slices.Sort(notes)
	return out, notes, nil
}

// runBackups backs up sel: the VMs whose level rule asks for a full in one
// run, the others (incremental forever) in another.
func (d *Daemon) runBackups(ctx context.Context, r *engine.Repository, s *site, p *PolicyConfig, sel []nutanix.VM, allFull bool, jobID string, log *slog.Logger) ([]*backup.Report, error) {
	d.maint.RLock()
	defer d.maint.RUnlock()
	full, auto, err := d.levels(ctx, r, p, sel)
	if err != nil {
		return nil, err
	}
	if allFull {
		full, auto = append(full, auto...), nil
	}
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return nil, err
	}
	var reps []*backup.Report
	for i, group := range [][]string{full, auto} {
		if len(group) == 0 {
			continue
		}
		o := p.Backup
		o.VMs, o.Exclude, o.Level = group, nil, backup.LevelAuto
		if i == 0 {
			o.Level = backup.LevelFull
		}
		o.Journal, o.Logger, o.Now = j, log, d.clock.Now
		o.Progress = vmProgress{d, p.Name, jobID, log}
		o.SkipCleanup = len(reps) > 0
		if p.Lock != nil {
			o.LockUntil = p.Lock.After
		}
		rep, err := s.backup(ctx, r, o)
		if rep != nil {
			reps = append(reps, rep)
		}
		if err != nil {
			return reps, err
		}
	}
	return reps, nil
}

// levels splits sel into the VMs that get a full (by full_every or
// full_cron) and the others, as UUIDs.
func (d *Daemon) levels(ctx context.Context, r *engine.Repository, p *PolicyConfig, sel []nutanix.VM) (full, auto []string, err error) {
	now := d.clock.Now()
	for _, v := range sel {
		isFull := false
		if p.FullEvery > 0 || p.FullSchedule != nil {
			rps, err := r.ListRestorePoints(ctx, v.Name)
			if err != nil {
				return nil, nil, err
			}
			since, lastFull := 0, time.Time{}
			for _, rp := range rps {
				if rp.Level == string(backup.LevelFull) {
					since, lastFull = 0, rp.Time
				} else {
					since++
				}
			}
			if len(rps) > 0 {
				isFull = p.FullEvery > 0 && since+1 >= p.FullEvery ||
					p.FullSchedule != nil && !p.FullSchedule.Next(lastFull).After(now)
			}
		}
		if isFull {
			full = append(full, v.UUID)
		} else {
			auto = append(auto, v.UUID)
		}
	}
	return full, auto, nil
}

// prune applies a policy's retention to its VMs and drops the history
// older than what is kept.
func (d *Daemon) prune(ctx context.Context, r *engine.Repository, p *PolicyConfig, vms []string, trigger string) {
	start := d.clock.Now()
	job := engine.Job{Kind: KindPrune, Policy: p.Name, Trigger: trigger, Start: start, Result: engine.JobOK}
	if err := d.forget(ctx, r, p, vms, &job); err != nil {
		job.Result, job.Error = engine.JobFailed, err.Error()
	}
	d.refresh(ctx, r)
	d.record(ctx, r, job)
}

// forget removes what the policy's retention does not keep, and the job
// records older than what it keeps, noting both in job. It runs alone, so
// it also asks gc what it would reclaim now.
func (d *Daemon) forget(ctx context.Context, r *engine.Repository, p *PolicyConfig, vms []string, job *engine.Job) error {
	d.maint.Lock()
	defer d.maint.Unlock()
	plan, err := r.PlanPrune(ctx, engine.PruneOptions{VMs: engine.ExactVMs(vms), Policy: p.Retention, Now: job.Start})
	if err != nil {
		return err
	}
	if len(plan.Remove) > 0 {
		if err := r.Forget(ctx, plan.Remove); err != nil {
			return err
		}
		job.Points = len(plan.Remove)
		for _, rp := range plan.Remove {
			job.VMs = append(job.VMs, engine.JobVM{VM: rp.VM, Result: engine.JobOK, RestorePoint: rp.Name()})
		}
	}
	n, err := r.PruneJobs(ctx, job.Start)
	if n > 0 {
		job.Notes = append(job.Notes, fmt.Sprintf("%d job records older than the restore points kept removed", n))
	}
	if err != nil {
		return err
	}
	if err := d.stats.refreshReclaim(ctx, r); err != nil {
		d.log.Warn("gc reclaimable not computed", "err", err)
	}
	return nil
}

// refresh reads the repository's figures for the metrics.
func (d *Daemon) refresh(ctx context.Context, r *engine.Repository) {
	d.maint.RLock()
	defer d.maint.RUnlock()
	if err := d.stats.refreshRepo(ctx, r); err != nil {
		d.log.Warn("repository metrics not refreshed", "err", err)
	}
}

// syncPolicy replicates the restore points of a policy's VMs to its
// target. r is the open repository of the backup that ran before, or nil.
// It reports whether the sync succeeded.
func (d *Daemon) syncPolicy(ctx context.Context, cfg *Config, p *PolicyConfig, trigger string, r *engine.Repository) bool {
	start := d.clock.Now()
	t := cfg.target(p.SyncTo)
	job := engine.Job{ID: engine.NewJobID(start), Kind: KindSync, Policy: p.Name, Target: t.Name, Trigger: trigger, Start: start, Result: engine.JobOK}
	if r == nil {
		rr, release, err := d.repo.acquire(ctx)
		if err != nil {
			d.record(ctx, nil, failed(KindSync, p.Name, trigger, start, err))
			return false
		}
		defer release() // after the record below
		r = rr
	}
	vms := d.stats.policyVMs(p.Name)
	err := d.syncVMs(ctx, r, t, vms, &job)
	if err != nil {
		job.Result, job.Error = engine.JobFailed, err.Error()
		if errors.Is(err, context.Canceled) {
			job.Result = engine.JobCancelled
		}
	}
	d.record(ctx, r, job)
	return err == nil
}

// syncVMs syncs vms to t; job lists every VM the sync covered (its
// restore point: the newest one sent).
func (d *Daemon) syncVMs(ctx context.Context, r *engine.Repository, t TargetConfig, vms []string, job *engine.Job) error {
	if len(vms) == 0 {
		job.Notes = append(job.Notes, "the policy has backed up no VM yet")
		return nil
	}
	dst, err := openTarget(ctx, t)
	if err != nil {
		return fmt.Errorf("target %s: %w", t.Name, err)
	}
	defer dst.Close()
	d.maint.RLock()
	defer d.maint.RUnlock()
	rep, err := dr.Sync(ctx, &dr.Local{R: r}, dst, dr.Options{VMs: engine.ExactVMs(vms), BytesPerSecond: t.BytesPerSecond})
	if err != nil {
		return err
	}
	sent := map[string]string{}
	for _, n := range rep.Synced {
		vm, _, _ := engine.ParseName(n)
		sent[vm] = n
	}
	job.Points, job.BytesSent = rep.RestorePoints, rep.BytesSent
	for _, vm := range vms {
		job.VMs = append(job.VMs, engine.JobVM{VM: vm, Result: engine.JobOK, RestorePoint: sent[vm]})
	}
	return nil
}

// openTarget opens a DR target: an `ahvfs serve` URL over mutual TLS, or
// a repository directory.
func openTarget(ctx context.Context, t TargetConfig) (dr.Target, error) {
	if dr.IsRemote(t.Location) {
		tc, err := dr.ClientTLS(t.TLSCert, t.TLSKey, t.CACert)
		if err != nil {
			return nil, err
		}
		return dr.Dial(t.Location, tc)
	}
	var pw []byte
	if t.PasswordFile != "" {
		var err error
		if pw, err = engine.ReadPasswordFile(t.PasswordFile); err != nil {
			return nil, err
		}
	}
	// Another policy's sync to the same target may hold it: wait for it.
	r, err := engine.Open(ctx, t.Location, engine.OpenOptions{Writable: true, Password: pw, LockWait: time.Hour})
	if err != nil {
		return nil, err
	}
	return &dr.Local{R: r, Own: true}, nil
}

// verifyShare reads today's share of the packs in full, and reports
// whether the repository was found sound.
func (d *Daemon) verifyShare(ctx context.Context, cfg *Config, trigger string) bool {
	start := d.clock.Now()
	n := cfg.Verify.EveryDays
	part := int(start.Unix()/86400) % n
	job := engine.Job{Kind: KindVerify, Trigger: trigger, Start: start, Result: engine.JobOK}
	r, release, err := d.repo.acquire(ctx)
	if err != nil {
		d.record(ctx, nil, failed(KindVerify, "", trigger, start, err))
		return false
	}
	defer release()
	d.maint.Lock()
	rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true, Part: part, Parts: n})
	d.maint.Unlock()
	bad := 0
	if err != nil {
		job.Result, job.Error, bad = engine.JobFailed, "verify could not run: "+err.Error(), 1
	} else {
		job.Notes = append(job.Notes, fmt.Sprintf("part %d of %d: %d of %d packs read in full", part+1, n, rep.DataPacks, rep.Packs))
		if bad = len(rep.Damaged) + len(rep.Problems); bad > 0 {
			job.Result = engine.JobFailed
			job.Error = fmt.Sprintf("%d damaged packs, %d problems: run ahvfs verify --read-data and --repair", len(rep.Damaged), len(rep.Problems))
		}
	}
	d.stats.verified(bad, start)
	d.record(ctx, r, job)
	return bad == 0
}
