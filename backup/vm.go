package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// vmRun is the backup of one VM, step by step: prepare (read the VM,
// decide the level), snapshot (between the hooks), read the disks into a
// restore point, commit and promote the snapshot as the next reference.
// Everything it creates on the cluster goes through its journal job,
// whose Close removes what is left whatever happens.
type vmRun struct {
	r   *runner
	cl  nutanix.Cluster
	jb  *clusterjob.Job
	log *slog.Logger
	vr  *VMReport

	v        nutanix.VM
	disks    []plannedDisk
	cfg      clusterjob.VMConfig
	ref      *Reference
	plan     chainPlan
	snap     nutanix.Snapshot
	snapObj  clusterjob.Object
	refDisks []RefDisk
}

func (m *vmRun) warn(format string, args ...any) { m.vr.warn(m.log, format, args...) }

// warn adds a warning to the report and logs it.
func (vr *VMReport) warn(log *slog.Logger, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	vr.Warnings = append(vr.Warnings, msg)
	log.Warn(msg)
}

// backupVM runs the whole flow for one VM and never panics the run.
func (r *runner) backupVM(ctx context.Context, v0 nutanix.VM) VMReport {
	return r.reportVM(ctx, v0.Name, v0.UUID, func(log *slog.Logger, vr *VMReport) (*clusterjob.Job, func() error, error) {
		ref, err := LoadReference(r.j, v0.UUID)
		if err != nil {
			return nil, nil, err
		}
		cl := r.clusterFor(ctx, ref, log)
		jb, err := r.j.Begin("backup", cl, clusterjob.JobOptions{CleanupTimeout: r.o.CleanupTimeout, Now: r.o.Now, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		m := &vmRun{r: r, cl: cl, jb: jb, log: log, vr: vr, ref: ref}
		return jb, func() error { return m.run(ctx, v0) }, nil
	})
}

// reportVM is the frame of one VM's backup, whichever hypervisor: the
// report with its duration, the logger, and the job, which begin starts
// (returning what runs in it) and which is closed after the run: whatever
// is still journaled then (the snapshot of a failed or estimated run)
// goes.
func (r *runner) reportVM(ctx context.Context, name, uuid string,
	begin func(log *slog.Logger, vr *VMReport) (*clusterjob.Job, func() error, error)) (vr VMReport) {
	start := time.Now()
	vr = VMReport{VM: name, UUID: uuid, Estimate: r.o.Estimate}
	log := r.o.Logger.With("vm", name)
	defer func() {
		vr.Duration = time.Since(start)
		if vr.Err != "" {
			log.Warn("backup failed", "err", vr.Err)
		}
	}()
	jb, run, err := begin(log, &vr)
	if err != nil {
		vr.Err = err.Error()
		return vr
	}
	err = run()
	if cerr := jb.Close(ctx); cerr != nil {
		vr.warn(log, "%v", cerr)
	}
	if err != nil {
		vr.Err = err.Error()
	}
	return vr
}

func (m *vmRun) run(ctx context.Context, v0 nutanix.VM) error {
	if err := m.prepare(ctx, v0); err != nil {
		return err
	}
	if err := m.snapshot(ctx); err != nil {
		return err
	}
	w, err := m.readDisks(ctx)
	if err != nil || w == nil {
		return err
	}
	return m.commit(ctx, w)
}

// prepare reads the VM, picks its disks and builds its configuration
// record, and decides the level.
func (m *vmRun) prepare(ctx context.Context, v0 nutanix.VM) error {
	o := m.r.o
	v, err := m.cl.GetVM(ctx, v0.UUID)
	if err != nil {
		return fmt.Errorf("read VM: %w", err)
	}
	for i, n := range v.NICs {
		if n.SubnetName == "" && n.SubnetUUID != "" {
			v.NICs[i].SubnetName = m.r.subnetName(ctx, m.cl, n.SubnetUUID)
		}
	}
	m.v = v
	disks, excluded := backupDisks(v, o.ExcludeDisks)
	for _, d := range v.BackupDisks() {
		if excluded[d.UUID] {
			m.vr.ExcludedDisks = append(m.vr.ExcludedDisks, d.Address())
		}
	}
	if len(disks) == 0 {
		return errors.New("no disk to back up (all excluded, or only CD-ROMs and volume group attachments)")
	}
	m.disks = disks
	stored := map[string]int{}
	for _, d := range disks {
		stored[d.UUID] = d.N
	}
	m.cfg = clusterjob.NewVMConfig(v, m.cl.API(), stored, excluded)
	if o.Consistency == AppRequired && !(v.NGT.Installed && v.NGT.VSSCapable) {
		return fmt.Errorf("application-consistent snapshot required, but the VM's guest tools cannot provide one (NGT installed %v, VSS-capable %v)",
			v.NGT.Installed, v.NGT.VSSCapable)
	}
	if m.plan, err = decideLevel(ctx, m.r.repo, m.cl, m.ref, o.Level); err != nil {
		return err
	}
	if m.plan.Reason != "" {
		m.warn("full backup: %s", m.plan.Reason)
	}
	m.vr.Level = m.plan.Level
	return nil
}

// snapshot takes the VM's snapshot between the hooks: once the
// pre-snapshot hook succeeded, the post-snapshot hook runs whatever
// becomes of the snapshot.
func (m *vmRun) snapshot(ctx context.Context) error {
	o := m.r.o
	if o.PreSnapshot != nil {
		if err := o.PreSnapshot(ctx, m.cfg); err != nil {
			return fmt.Errorf("pre-snapshot hook: %w", err)
		}
	}
	app := o.Consistency != Crash
	snap, so, err := m.jb.CreateSnapshot(ctx, m.v.UUID, m.v.Name, app)
	if o.PostSnapshot != nil {
		if herr := o.PostSnapshot(context.WithoutCancel(ctx), m.cfg); herr != nil {
			m.warn("post-snapshot hook: %v", herr)
		}
	}
	if err != nil {
		return err
	}
	m.snapObj = so
	// A snapshot read back while the cluster stumbled may lack the mapping
	// of its files to disks: read it again.
	for attempt := 0; attempt < 3 && !hasDisks(snap, m.disks); attempt++ {
		if again, err := m.cl.GetSnapshot(ctx, snap.ID); err == nil {
			snap.Disks = again.Disks
		}
	}
	m.snap = snap
	m.cfg.SnapshotID = snap.ID
	m.vr.Consistency = consistencyName(snap.Consistency)
	if app && snap.Consistency != nutanix.ApplicationConsistent {
		if o.Consistency == AppRequired {
			return errors.New("application-consistent snapshot required, but the cluster delivered a crash-consistent one")
		}
		m.warn("application-consistent snapshot asked, the cluster delivered a crash-consistent one (NGT installed %v, VSS-capable %v)",
			m.v.NGT.Installed, m.v.NGT.VSSCapable)
	}
	return nil
}

// readDisks reads every disk (o.ConcurrentDisks at once) into a new
// restore point; nil without error with Estimate.
func (m *vmRun) readDisks(ctx context.Context) (*engine.RestorePointWriter, error) {
	r, o, v, snap, plan := m.r, m.r.o, m.v, m.snap, m.plan
	path := r.dataPath(ctx, v)
	m.vr.DataPath = path
	var w *engine.RestorePointWriter
	if !o.Estimate {
		cfgJSON, _ := json.Marshal(m.cfg)
		spec := engine.RestorePointSpec{VM: v.Name, VMUUID: v.UUID, Time: r.rpTime(ctx, v.Name, snap), Level: plan.Level,
			Consistency: m.vr.Consistency, Config: cfgJSON,
			Meta: map[string]string{"snapshot": snap.ID, "snapshot_name": snap.Name, "data_path": string(path), "api": string(m.cl.API())}}
		if plan.Parent != nil {
			spec.Parent = plan.Parent.ID
		}
		if o.LockUntil != nil {
			spec.LockUntil = o.LockUntil(spec.Time)
		}
		if plan.Reason != "" {
			spec.Meta["full_reason"] = plan.Reason
		}
		var err error
		if w, err = r.repo.NewRestorePoint(ctx, spec); err != nil {
			return nil, err
		}
	}
	var opener sourceOpener
	switch path {
	case PathISCSI:
		opener = &iscsiOpener{jb: m.jb, o: o, vmName: v.Name}
	default:
		opener = &restOpener{jb: m.jb, vmName: v.Name}
	}
	// Disks release their data path in the background, overlapping the
	// commit and the other disks; all of it ends before readDisks returns.
	rel := &releaser{jb: m.jb, log: m.log}
	m.vr.Disks = make([]DiskReport, len(m.disks))
	m.refDisks = make([]RefDisk, len(m.disks))
	err := eachDisk(ctx, len(m.disks), o.ConcurrentDisks,
		func(i int) string { return fmt.Sprintf("disk-%d (%s)", m.disks[i].N, m.disks[i].Address()) },
		func(ctx context.Context, i int) error {
			dr, rd, err := r.backupDisk(ctx, m.cl, v, snap, m.disks[i], plan, w, opener, rel)
			m.vr.Disks[i], m.refDisks[i] = dr, rd
			return err
		})
	m.vr.Warnings = append(m.vr.Warnings, rel.wait()...)
	sumDisks(m.vr, plan.Level != engine.LevelFull, m.warn)
	return endRead(ctx, w, err)
}

// sumDisks totals the disks' reports into vr and warns of each disk read
// in full in an incremental or differential job.
func sumDisks(vr *VMReport, chained bool, warn func(string, ...any)) {
	for _, d := range vr.Disks {
		vr.BytesRead += d.BytesRead
		vr.Size += d.Size
		if d.Reason != "" && chained {
			warn("%s read in full: %s", d.Disk, d.Reason)
		}
	}
}

// endRead ends the reading of a restore point's disks: on err, or when ctx
// ended, w is aborted.
func endRead(ctx context.Context, w *engine.RestorePointWriter, err error) (*engine.RestorePointWriter, error) {
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if w != nil {
			w.Abort()
		}
		return nil, err
	}
	return w, nil
}

// commitPoint commits w and records the restore point in vr; nil when the
// commit failed (w aborted). A commit that stored the point but reported
// a problem is a warning.
func commitPoint(ctx context.Context, w *engine.RestorePointWriter, vr *VMReport, warn func(string, ...any)) (*engine.RestorePoint, error) {
	rp, err := w.Commit(ctx)
	if err != nil && rp == nil {
		w.Abort()
		return nil, err
	}
	if err != nil {
		warn("%v", err)
	}
	vr.restorePoint = rp
	vr.RestorePoint, vr.ID, vr.BytesNew = rp.Name(), rp.ID, rp.Stats.NewStoredBytes
	return rp, nil
}

// commit commits the restore point, then promotes the new snapshot as the
// VM's reference and deletes the snapshots the reference no longer keeps.
//
// Order, for crash safety: the old snapshots are journaled as this job's
// (still kept, so a sweep would not delete them), then the new reference
// is kept in one atomic write, then the new snapshot leaves the job's
// journal, then the old ones are released.
func (m *vmRun) commit(ctx context.Context, w *engine.RestorePointWriter) error {
	rp, err := commitPoint(ctx, w, m.vr, m.warn)
	if err != nil {
		return err
	}
	if m.plan.Level == engine.LevelCopy {
		return nil // outside the chain: the job's teardown deletes the snapshot
	}

	next := nextReference(m.ref, m.v, m.snap, rp, m.plan, m.refDisks)
	var old []clusterjob.Object
	for _, s := range released(m.ref, next) {
		o := snapshotObject(m.ref, s)
		if err := m.jb.Record(o); err != nil {
			m.warn("restore point %s committed, but the reference was not promoted: %v", rp.Name(), err)
			m.forget(old)
			return nil
		}
		old = append(old, o)
	}
	if err := putRef(m.r.j, next); err != nil {
		// The old reference stays: its snapshots must not be released.
		m.warn("restore point %s committed, but: %v", rp.Name(), err)
		m.forget(old)
		return nil
	}
	if err := m.jb.Forget(m.snapObj); err != nil {
		m.warn("%v", err)
	}
	cctx, cancel := m.jb.CleanupContext(ctx)
	defer cancel()
	for _, o := range old {
		if err := m.jb.Release(cctx, o); err != nil {
			m.warn("delete the previous reference snapshot: %v", err)
		}
	}
	return nil
}

// forget drops objects from the job's journal without deleting them.
func (m *vmRun) forget(objs []clusterjob.Object) {
	for _, o := range objs {
		if err := m.jb.Forget(o); err != nil {
			m.warn("%v", err)
		}
	}
}

func hasDisks(s nutanix.Snapshot, disks []plannedDisk) bool {
	for _, d := range disks {
		if _, ok := s.Disk(d.UUID); !ok {
			return false
		}
	}
	return true
}

// firstRealError prefers an error that is not a cancellation caused by a
// sibling disk's failure.
func firstRealError(errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}
