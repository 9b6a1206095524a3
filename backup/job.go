package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Run backs up the VMs selected by o into repo. It first sweeps what
// earlier jobs left on the cluster (Cleanup), then backs up
// o.ConcurrentVMs VMs at a time. A VM's failure is recorded in its
// VMReport and does not stop the others; Run's error is for what stops
// the whole run (no VM matched, the inventory could not be read, ctx
// cancelled). The report is returned in every case it could be built.
func Run(ctx context.Context, repo *engine.Repository, cl nutanix.Cluster, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	rep := &Report{Start: o.Now().UTC()}
	defer func() { rep.Duration = time.Since(rep.Start) }()
	if !repo.Writable() && !o.Estimate {
		return rep, engine.ErrReadOnly
	}
	if !o.SkipCleanup && repo.Writable() {
		cr, err := Cleanup(ctx, repo, cl, o.Logger)
		rep.Cleanup = cr
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			o.Logger.Warn("cleanup of earlier jobs' leftovers failed; continuing", "err", err)
		}
	}
	r := &runner{repo: repo, cl: cl, o: &o, ledger: ledger{repo}, portals: map[string]string{}}
	var all []nutanix.VM
	err := r.retryRead(ctx, func() (err error) { all, err = cl.ListVMs(ctx); return err })
	if err != nil {
		return rep, fmt.Errorf("list VMs: %w", err)
	}
	sel, unmatched := SelectVMs(all, o.VMs, o.Exclude)
	if len(unmatched) > 0 {
		return rep, fmt.Errorf("no VM matches %s", strings.Join(unmatched, ", "))
	}
	if len(sel) == 0 {
		return rep, errors.New("no VM selected")
	}
	if bad := unmatchedDiskExcludes(sel, o.ExcludeDisks); len(bad) > 0 {
		return rep, fmt.Errorf("no disk of the selected VMs matches --exclude-disk %s (disk addresses look like scsi.0, sata.1)", strings.Join(bad, ", "))
	}
	if o.DataPath != PathREST {
		var cls []nutanix.ClusterInfo
		err := r.retryRead(ctx, func() (err error) { cls, err = cl.ListClusters(ctx); return err })
		if err != nil {
			o.Logger.Warn("list clusters (Data Services IP)", "err", err)
		}
		for _, c := range cls {
			if p := c.Portal(); p != "" {
				r.portals[c.UUID] = overridePort(p, o.ISCSIPort)
				if r.anyPortal == "" {
					r.anyPortal = r.portals[c.UUID]
				}
			}
		}
	}
	rep.VMs = make([]VMReport, len(sel))
	sem := make(chan struct{}, o.ConcurrentVMs)
	var wg sync.WaitGroup
	for i, v := range sel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				rep.VMs[i] = VMReport{VM: v.Name, UUID: v.UUID, Err: ctx.Err().Error()}
				o.Progress.VMDone(rep.VMs[i])
				return
			}
			defer func() { <-sem }()
			rep.VMs[i] = r.backupVMRetrying(ctx, v)
			o.Progress.VMDone(rep.VMs[i])
		}()
	}
	wg.Wait()
	for _, v := range rep.VMs {
		if v.DataPath != "" {
			rep.DataPath = v.DataPath
		}
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	return rep, nil
}

type runner struct {
	repo   *engine.Repository
	cl     nutanix.Cluster
	o      *Options
	ledger ledger

	portals   map[string]string // cluster UUID → iSCSI portal (port overridden)
	anyPortal string
	prober    portalProber

	subnetsOnce sync.Once
	subnets     map[string]string
	timeMu      sync.Mutex // serialises restore point time choice per process
}

// cleanupCtx is a context for deleting cluster objects after ctx may have
// been cancelled.
func (r *runner) cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.o.CleanupTimeout)
}

// dataPath picks the data path for a VM.
func (r *runner) dataPath(ctx context.Context, v nutanix.VM) DataPath {
	switch r.o.DataPath {
	case PathISCSI, PathREST:
		return r.o.DataPath
	}
	portal := r.portals[v.ClusterUUID]
	if portal == "" {
		portal = r.anyPortal
	}
	if portal != "" && r.prober.reachable(ctx, portal) {
		return PathISCSI
	}
	return PathREST
}

func consistencyName(c nutanix.Consistency) string {
	if c == nutanix.ApplicationConsistent {
		return "app"
	}
	return "crash"
}

// backupVMRetrying runs backupVM again (after a pause) when it failed on
// a transient cluster error: everything the failed attempt created was
// deleted or is in the ledger, so an attempt is safe to repeat.
func (r *runner) backupVMRetrying(ctx context.Context, v nutanix.VM) VMReport {
	var earlier []string
	for attempt := 0; ; attempt++ {
		vr := r.backupVM(ctx, v)
		if vr.Err == "" || !vr.transient || attempt >= r.o.Retries || ctx.Err() != nil {
			vr.Warnings = append(earlier, vr.Warnings...)
			return vr
		}
		earlier = append(earlier, fmt.Sprintf("attempt %d failed (retried): %s", attempt+1, vr.Err))
		r.o.Logger.Warn("backup attempt failed; retrying", "vm", v.Name, "attempt", attempt+1, "err", vr.Err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * r.o.RetryDelay):
		}
	}
}

// transient reports whether err is a cluster error that may not recur:
// 429, 5xx, or a task that timed out.
func transient(err error) bool {
	var ae *nutanix.APIError
	if errors.As(err, &ae) {
		return ae.Temporary() || ae.Status >= 500
	}
	return errors.Is(err, nutanix.ErrTaskTimeout)
}

// retryRead repeats an idempotent read on transient errors (the client
// does not repeat POST reads such as v3 changed_regions, nor 500s).
func (r *runner) retryRead(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = fn(); err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * r.o.RetryDelay / 4):
		}
	}
	return err
}

// subnetName fills NIC subnet names the VM read left empty (v4).
func (r *runner) subnetName(ctx context.Context, uuid string) string {
	r.subnetsOnce.Do(func() {
		r.subnets = map[string]string{}
		list, err := r.cl.ListSubnets(ctx)
		if err != nil {
			r.o.Logger.Debug("list subnets", "err", err)
		}
		for _, s := range list {
			r.subnets[s.UUID] = s.Name
		}
	})
	return r.subnets[uuid]
}

// backupVM runs the whole flow for one VM and never panics the run.
func (r *runner) backupVM(ctx context.Context, v0 nutanix.VM) (vr VMReport) {
	start := time.Now()
	vr = VMReport{VM: v0.Name, UUID: v0.UUID, Estimate: r.o.Estimate}
	log := r.o.Logger.With("vm", v0.Name)
	defer func() {
		vr.Duration = time.Since(start)
		if vr.Err != "" {
			log.Warn("backup failed", "err", vr.Err)
		}
	}()
	fail := func(err error) VMReport {
		vr.Err = err.Error()
		vr.transient = transient(err)
		return vr
	}
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		vr.Warnings = append(vr.Warnings, msg)
		log.Warn(msg)
	}

	var v nutanix.VM
	err := r.retryRead(ctx, func() (err error) { v, err = r.cl.GetVM(ctx, v0.UUID); return err })
	if err != nil {
		return fail(fmt.Errorf("read VM: %w", err))
	}
	for i, n := range v.NICs {
		if n.SubnetName == "" && n.SubnetUUID != "" {
			v.NICs[i].SubnetName = r.subnetName(ctx, n.SubnetUUID)
		}
	}
	disks, excluded := backupDisks(v, r.o.ExcludeDisks)
	for _, d := range v.BackupDisks() {
		if excluded[d.UUID] {
			vr.ExcludedDisks = append(vr.ExcludedDisks, d.Address())
		}
	}
	if len(disks) == 0 {
		return fail(errors.New("no disk to back up (all excluded, or only CD-ROMs and volume group attachments)"))
	}
	stored := map[string]int{}
	for _, d := range disks {
		stored[d.UUID] = d.N
	}
	cfg := vmConfig(v, r.cl.API(), stored, excluded)

	app := r.o.Consistency != Crash
	if r.o.Consistency == AppRequired && !(v.NGT.Installed && v.NGT.VSSCapable) {
		return fail(fmt.Errorf("application-consistent snapshot required, but the VM's guest tools cannot provide one (NGT installed %v, VSS-capable %v)",
			v.NGT.Installed, v.NGT.VSSCapable))
	}
	ref, err := LoadReference(ctx, r.repo, v.UUID)
	if err != nil {
		return fail(err)
	}
	var plan chainPlan
	err = r.retryRead(ctx, func() (err error) { plan, err = decideLevel(ctx, r.repo, r.cl, ref, r.o.Level); return err })
	if err != nil {
		return fail(err)
	}
	if plan.Reason != "" {
		warn("full backup: %s", plan.Reason)
	}
	vr.Level = plan.Level

	// Snapshot, between the hooks: once the pre-snapshot hook succeeded,
	// the post-snapshot hook runs whatever becomes of the snapshot.
	if r.o.PreSnapshot != nil {
		if err := r.o.PreSnapshot(ctx, cfg); err != nil {
			return fail(fmt.Errorf("pre-snapshot hook: %w", err))
		}
	}
	postSnapshot := func() {
		if r.o.PostSnapshot != nil {
			if err := r.o.PostSnapshot(context.WithoutCancel(ctx), cfg); err != nil {
				warn("post-snapshot hook: %v", err)
			}
		}
	}
	se := LedgerEntry{Kind: KindSnapshot, Name: objectName(KindSnapshot, v.Name, r.o.Now()), VMUUID: v.UUID, VM: v.Name,
		Created: r.o.Now().UTC()}
	if err := r.ledger.put(ctx, se); err != nil {
		postSnapshot()
		return fail(err)
	}
	snap, serr := r.cl.CreateSnapshot(ctx, v.UUID, se.Name, app)
	postSnapshot()
	promoted := false
	dropSnapshot := func() {
		cctx, cancel := r.cleanupCtx(ctx)
		defer cancel()
		if se.ID == "" {
			// The create call failed: it made nothing, or the sweep finds
			// it by name.
			if notCreated(serr) {
				r.ledger.remove(cctx, se)
				return
			}
			// Only this entry: other VMs of this run have theirs in flight.
			list, err := r.cl.ListSnapshots(cctx, v.UUID)
			if err != nil {
				log.Warn("find the snapshot of a failed create call", "err", err)
				return
			}
			for _, s := range list {
				if s.Name == se.Name {
					if err := r.cl.DeleteSnapshot(cctx, s.ID); err != nil {
						log.Warn("delete snapshot", "name", se.Name, "err", err)
						return
					}
				}
			}
			r.ledger.remove(cctx, se)
			return
		}
		if err := r.cl.DeleteSnapshot(cctx, se.ID); err != nil {
			warn("delete snapshot %s: %v (the next run or `ahvfs cleanup` retries)", se.Name, err)
			return
		}
		r.ledger.remove(cctx, se)
	}
	if serr != nil {
		dropSnapshot()
		return fail(fmt.Errorf("snapshot: %w", serr))
	}
	se.ID = snap.ID
	if err := r.ledger.put(ctx, se); err != nil {
		dropSnapshot()
		return fail(err)
	}
	// A snapshot read back while the cluster stumbled may lack the mapping
	// of its files to disks: read it again.
	for attempt := 0; attempt < 3 && !hasDisks(snap, disks); attempt++ {
		var again nutanix.Snapshot
		if err := r.retryRead(ctx, func() (err error) { again, err = r.cl.GetSnapshot(ctx, snap.ID); return err }); err == nil {
			snap.Disks = again.Disks
		}
	}
	defer func() {
		if !promoted {
			dropSnapshot()
		}
	}()
	// Disks release their data path in the background, overlapping the
	// commit and the other disks; all of it ends before the snapshot is
	// dropped (deferred calls run last first) and before the VM reports.
	rel := &releaser{r: r, log: log}
	defer func() { vr.Warnings = append(vr.Warnings, rel.wait()...) }()
	cfg.SnapshotID = snap.ID
	vr.Consistency = consistencyName(snap.Consistency)
	if app && snap.Consistency != nutanix.ApplicationConsistent {
		if r.o.Consistency == AppRequired {
			return fail(errors.New("application-consistent snapshot required, but the cluster delivered a crash-consistent one"))
		}
		warn("application-consistent snapshot asked, the cluster delivered a crash-consistent one (NGT installed %v, VSS-capable %v)",
			v.NGT.Installed, v.NGT.VSSCapable)
	}

	// The restore point.
	path := r.dataPath(ctx, v)
	vr.DataPath = path
	var w *engine.RestorePointWriter
	if !r.o.Estimate {
		cfgJSON, _ := json.Marshal(cfg)
		spec := engine.RestorePointSpec{VM: v.Name, VMUUID: v.UUID, Time: r.rpTime(ctx, v.Name, snap), Level: plan.Level,
			Consistency: vr.Consistency, Config: cfgJSON,
			Meta: map[string]string{"snapshot": snap.ID, "snapshot_name": snap.Name, "data_path": string(path), "api": string(r.cl.API())}}
		if plan.Parent != nil {
			spec.Parent = plan.Parent.ID
		}
		if plan.Reason != "" {
			spec.Meta["full_reason"] = plan.Reason
		}
		if w, err = r.repo.NewRestorePoint(ctx, spec); err != nil {
			return fail(err)
		}
		defer w.Abort() // no-op after Commit
	}
	var opener sourceOpener
	switch path {
	case PathISCSI:
		opener = &iscsiOpener{cl: r.cl, ledger: r.ledger, iqn: r.o.InitiatorIQN, port: r.o.ISCSIPort, chap: r.o.CHAP, o: r.o,
			vmUUID: v.UUID, vmName: v.Name, cleanupT: r.o.CleanupTimeout}
	default:
		opener = &restOpener{cl: r.cl, ledger: r.ledger, o: r.o, vmUUID: v.UUID, vmName: v.Name, cleanupT: r.o.CleanupTimeout}
	}

	vr.Disks = make([]DiskReport, len(disks))
	refDisks := make([]RefDisk, len(disks))
	errs := make([]error, len(disks))
	sem := make(chan struct{}, r.o.ConcurrentDisks)
	dctx, cancelDisks := context.WithCancel(ctx)
	defer cancelDisks()
	var wg sync.WaitGroup
	for i, d := range disks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-dctx.Done():
				errs[i] = dctx.Err()
				return
			}
			defer func() { <-sem }()
			dr, rd, err := r.backupDisk(dctx, v, snap, d, plan, w, opener, rel)
			vr.Disks[i], refDisks[i] = dr, rd
			if err != nil {
				errs[i] = fmt.Errorf("disk-%d (%s): %w", d.N, d.Address(), err)
				cancelDisks() // one disk failed: the restore point cannot commit
			}
		}()
	}
	wg.Wait()
	for _, d := range vr.Disks {
		vr.BytesRead += d.BytesRead
		vr.Size += d.Size
		if d.Reason != "" && plan.Level != engine.LevelFull {
			warn("%s read in full: %s", d.Disk, d.Reason)
		}
	}
	if err := firstRealError(errs); err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	if r.o.Estimate {
		return vr // the deferred dropSnapshot deletes the snapshot
	}
	rp, err := w.Commit(ctx)
	if err != nil && rp == nil {
		return fail(err)
	}
	if err != nil {
		warn("%v", err)
	}
	vr.restorePoint = rp
	vr.RestorePoint, vr.ID, vr.BytesNew = rp.Name(), rp.ID, rp.Stats.NewStoredBytes

	// Promote the new snapshot; release the old ones.
	next := nextReference(ref, v, snap, rp, plan, refDisks)
	old := released(ref, next)
	for _, s := range old {
		name := s.Snapshot.Name
		if name == "" {
			name = s.Snapshot.ID
		}
		if err := r.ledger.put(ctx, LedgerEntry{Kind: KindSnapshot, Name: name, ID: s.Snapshot.ID, VMUUID: v.UUID, VM: v.Name,
			Created: r.o.Now().UTC()}); err != nil {
			warn("restore point %s committed, but the reference was not promoted: %v", rp.Name(), err)
			return vr
		}
	}
	if err := putRef(ctx, r.repo, next); err != nil {
		warn("restore point %s committed, but: %v", rp.Name(), err)
		return vr
	}
	promoted = true
	cctx, cancel := r.cleanupCtx(ctx)
	defer cancel()
	r.ledger.remove(cctx, se)
	for _, s := range old {
		name := s.Snapshot.Name
		if name == "" {
			name = s.Snapshot.ID
		}
		e := LedgerEntry{Kind: KindSnapshot, Name: name, ID: s.Snapshot.ID}
		if err := r.cl.DeleteSnapshot(cctx, s.Snapshot.ID); err != nil {
			warn("delete the previous reference snapshot %s: %v (the next run or `ahvfs cleanup` retries)", name, err)
			continue
		}
		r.ledger.remove(cctx, e)
	}
	return vr
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

// rpTime is the restore point's time: the snapshot's, at second precision,
// moved one second past the VM's latest restore point if it would not be
// after it (two backups within one second).
func (r *runner) rpTime(ctx context.Context, vm string, snap nutanix.Snapshot) time.Time {
	t := snap.CreatedAt
	if t.IsZero() {
		t = r.o.Now()
	}
	t = t.UTC().Truncate(time.Second)
	r.timeMu.Lock()
	defer r.timeMu.Unlock()
	if rps, err := r.repo.ListRestorePoints(ctx, vm); err == nil && len(rps) > 0 {
		latest := rps[0].Time
		for _, rp := range rps {
			if rp.Time.After(latest) {
				latest = rp.Time
			}
		}
		if !t.After(latest) {
			t = latest.Add(time.Second)
		}
	}
	return t
}

// toCBT converts Prism regions to cbt regions, clipped to size.
func toCBT(regs []nutanix.Region, size int64) []cbt.Region {
	out := make([]cbt.Region, 0, len(regs))
	for _, g := range regs {
		off, end := g.Offset, min(g.End(), size)
		if end <= off {
			continue
		}
		out = append(out, cbt.Region{Off: off, Len: end - off, Zeroed: g.Kind == nutanix.RegionZeroed})
	}
	return out
}

// backupDisk plans and reads one disk into w (nil with Estimate).
func (r *runner) backupDisk(ctx context.Context, v nutanix.VM, snap nutanix.Snapshot, d plannedDisk, plan chainPlan,
	w *engine.RestorePointWriter, opener sourceOpener, rel *releaser) (dr DiskReport, rd RefDisk, err error) {
	size := d.SizeBytes
	if sd, ok := snap.Disk(d.UUID); ok && sd.SizeBytes > 0 {
		size = sd.SizeBytes
	} else if !ok {
		return DiskReport{}, RefDisk{}, fmt.Errorf("not in snapshot %s", snap.ID)
	}
	name := fmt.Sprintf("disk-%d", d.N)
	dr = DiskReport{Disk: name, Address: d.Address(), Size: size}
	rd = RefDisk{UUID: d.UUID, N: d.N, Size: size, Address: d.Address()}

	// What to compare against.
	q := nutanix.RegionQuery{Snapshot: snap, DiskUUID: d.UUID, Length: size}
	rest := cbt.Zero
	var parent *engine.Disk
	if plan.Base != nil {
		old, ok := plan.Base.disk(d.UUID)
		_, inSnap := plan.Base.Snapshot.Disk(d.UUID)
		switch {
		case !ok || !inSnap:
			dr.Reason = "new disk (not in the reference)"
		case old.Size != size:
			dr.Reason = fmt.Sprintf("resized from %d to %d bytes", old.Size, size)
		default:
			pd, err := plan.Parent.Disk(old.N)
			if err != nil || pd.UUID != "" && pd.UUID != d.UUID || pd.Size != size {
				dr.Reason = "the parent restore point has no matching disk"
				break
			}
			base := plan.Base.Snapshot
			q.Reference = &base
			rest = cbt.Unchanged
			parent = pd
		}
	} else if plan.Reason != "" {
		dr.Reason = plan.Reason
	}
	var regs []nutanix.Region
	err = r.retryRead(ctx, func() error {
		regs = regs[:0]
		return r.cl.ChangedRegions(ctx, q, func(g nutanix.Region) error { regs = append(regs, g); return nil })
	})
	var p cbt.Plan
	switch {
	case err == nil:
		if parent != nil && !r.o.NoPatch {
			// Chunks changed in small part are read in part and
			// completed from the parent restore point.
			p, err = cbt.AlignPatched(toCBT(regs, size), size, r.repo.ChunkSize(), int64(r.repo.ChunkSize())*3/4)
		} else {
			p, err = cbt.Align(toCBT(regs, size), size, r.repo.ChunkSize(), rest)
		}
		if err != nil {
			return dr, rd, err
		}
	case errors.Is(err, nutanix.ErrUnsupported):
		// No changed-region tracking: read everything.
		p, parent = cbt.Full(size), nil
		if dr.Reason == "" && q.Reference != nil {
			dr.Reason = "changed regions not served by this API"
		}
	default:
		if q.Reference != nil && errors.Is(err, nutanix.ErrNotFound) {
			return dr, rd, fmt.Errorf("changed regions against reference %s: %w (the next run reads the disk in full)", q.Reference.ID, err)
		}
		return dr, rd, fmt.Errorf("changed regions: %w", err)
	}
	toRead := p.SourceBytes()
	if r.o.Estimate {
		dr.BytesRead, dr.Zero, dr.Unchanged = toRead, p.Bytes(cbt.Zero), p.Bytes(cbt.Unchanged)
		return dr, rd, nil
	}
	dw, err := w.AddDisk(engine.DiskSpec{Index: d.N, Bus: strings.ToLower(d.Bus), BusIndex: d.Index, UUID: d.UUID, Size: size,
		Parent: parent, Reason: dr.Reason})
	if err != nil {
		return dr, rd, err
	}
	progress := r.o.Progress.DiskStart(v.Name, name, size, toRead)
	var src diskSource
	if toRead > 0 {
		if src, err = opener.open(ctx, snap, d, size); err != nil {
			r.o.Progress.DiskDone(v.Name, name, err)
			return dr, rd, err
		}
		defer rel.release(ctx, name, src)
	}
	var reader cbtSource = emptySource{}
	if src != nil {
		reader = src
	}
	iopt := cbt.Options{Workers: r.o.ReadWorkers, ReadSize: r.o.ReadSize, Progress: progress}
	if parent != nil && p.Bytes(cbt.Patch) > 0 {
		base, err := r.repo.OpenDisk(ctx, plan.Parent, parent.Index)
		if err != nil {
			r.o.Progress.DiskDone(v.Name, name, err)
			return dr, rd, fmt.Errorf("open the parent restore point: %w", err)
		}
		base.DisableReadAhead()
		defer base.Close()
		iopt.Base = base
	}
	st, err := cbt.Ingest(ctx, reader, p, dw, iopt)
	r.o.Progress.DiskDone(v.Name, name, err)
	dr.BytesRead, dr.Zero, dr.Unchanged = st.ReadBytes, st.ZeroBytes, st.UnchangedBytes
	if err != nil {
		return dr, rd, err
	}
	return dr, rd, nil
}

// releaser closes disk sources (logout, detach and delete the volume group)
// in the background; wait returns the warnings of those that failed.
type releaser struct {
	r    *runner
	log  *slog.Logger
	wg   sync.WaitGroup
	mu   sync.Mutex
	warn []string
}

func (rl *releaser) release(ctx context.Context, disk string, src diskSource) {
	rl.wg.Add(1)
	go func() {
		defer rl.wg.Done()
		cctx, cancel := rl.r.cleanupCtx(ctx)
		defer cancel()
		if err := src.Close(cctx); err != nil {
			msg := fmt.Sprintf("%s: release the data path: %v (the next run or `ahvfs cleanup` retries)", disk, err)
			rl.log.Warn(msg)
			rl.mu.Lock()
			rl.warn = append(rl.warn, msg)
			rl.mu.Unlock()
		}
	}()
}

func (rl *releaser) wait() []string {
	rl.wg.Wait()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.warn
}

type cbtSource interface {
	ReadAt(p []byte, off int64) (int, error)
}

// emptySource backs a plan that reads nothing.
type emptySource struct{}

func (emptySource) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("read from a disk whose plan reads nothing")
}
