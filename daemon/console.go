package daemon

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/rptree"
)

// consoleSource is what the web console shows, from the daemon's state
// and its repository.
type consoleSource struct{ d *Daemon }

// consoleReaders bounds the console's opens of the repository at once
// (each holds a cache and file descriptors), so that browsing and
// downloads cannot starve the jobs; more wait their turn.
const consoleReaders = 4

// openRepo opens the repository to read in one of the console's slots;
// close releases both.
func (c consoleSource) openRepo(ctx context.Context) (*engine.Repository, func(), error) {
	select {
	case c.d.readers <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	var r *engine.Repository
	var err error
	if open := c.d.o.OpenReader; open != nil {
		r, err = open(ctx, c.d.config())
	} else {
		r, err = c.d.repo.open(ctx, false)
	}
	if err != nil {
		<-c.d.readers
		return nil, nil, fmt.Errorf("open the repository: %w", err)
	}
	return r, func() { r.Close(); <-c.d.readers }, nil
}

var _ console.Source = consoleSource{}

// VMs are the VMs the policies have backed up (or tried to), one entry
// per policy and VM, with their RPO state now.
func (c consoleSource) VMs(context.Context) ([]console.VMStatus, error) {
	d := c.d
	now := d.clock.Now()
	cfg := d.config()
	var out []console.VMStatus
	for _, k := range d.stats.vmKeys() {
		s := d.stats
		s.mu.Lock()
		v := *s.vms[k]
		newest := s.newest[k.vm]
		ref := s.refs[k.vm]
		s.mu.Unlock()
		vs := console.VMStatus{Name: k.vm, UUID: ref.uuid, Categories: ref.categories, Policy: k.policy,
			LastSuccess: v.lastSuccess, LastResult: v.lastResult, Newest: newest}
		if p := cfg.policy(k.policy); p != nil {
			vs.RPOCompliant = compliant(newest, p.RPO.Duration, now)
			if p.SyncTo != "" {
				s.mu.Lock()
				vs.DRTarget, vs.Synced = p.SyncTo, s.atTarget[[2]string{p.SyncTo, k.vm}]
				vs.DRLagSeconds = s.syncLagLocked(p.SyncTo, []string{k.vm}, now).Seconds()
				s.mu.Unlock()
			}
		}
		out = append(out, vs)
	}
	return out, nil
}

// Points reads the VM's restore points from the repository (a reader
// beside the jobs' writer).
func (c consoleSource) Points(ctx context.Context, vm string) ([]console.Point, error) {
	r, done, err := c.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rps, err := r.ListRestorePoints(ctx, vm)
	if err != nil {
		return nil, err
	}
	target := ""
	if p := c.d.config().policy(c.d.stats.policyOf(vm, c.d.config().Policy)); p != nil {
		target = p.SyncTo
	}
	c.d.stats.mu.Lock()
	synced := c.d.stats.atTarget[[2]string{target, vm}]
	c.d.stats.mu.Unlock()
	out := make([]console.Point, 0, len(rps))
	for _, rp := range rps {
		pt := console.Point{Name: rp.Name(), VMUUID: rp.VMUUID, Time: rp.Time, Level: rp.Level, Consistency: rp.Consistency,
			Size: rp.LogicalBytes(), NewBytes: rp.Stats.NewStoredBytes, LockedUntil: rp.LockedUntil}
		if target != "" {
			// A sync sends a VM's points oldest first, all it lacks.
			replicated := !synced.IsZero() && !rp.Time.After(synced)
			pt.Replicated = &replicated
		}
		out = append(out, pt)
	}
	return out, nil
}

// PointFS opens the repository to read and shows the restore point's
// tree (package rptree); release closes both. The repository is opened
// per request: a reader held for good would keep gc waiting.
func (c consoleSource) PointFS(ctx context.Context, vm, uuid, at string) (fs.FS, func(), error) {
	t, err := time.Parse(time.RFC3339, at)
	if err != nil || engine.FormatTime(t) != at {
		return nil, nil, fmt.Errorf("restore point time %q: want %s: %w", at, engine.FormatTime(time.Unix(0, 0)), fs.ErrNotExist)
	}
	r, done, err := c.openRepo(ctx)
	if err != nil {
		return nil, nil, err
	}
	if uuid != "" {
		rp, err := r.Resolve(ctx, vm+"@"+at)
		if err != nil || rp.VMUUID != uuid {
			done()
			return nil, nil, fmt.Errorf("restore point %s@%s of VM %s: %w", vm, at, uuid, fs.ErrNotExist)
		}
	}
	tree, err := rptree.New(r, rptree.Options{RefreshInterval: -1})
	if err != nil {
		done()
		return nil, nil, err
	}
	release := func() { tree.Close(); done() }
	sub, err := fs.Sub(tree, rptree.VMDirName(vm)+"/"+at)
	if err == nil {
		_, err = fs.Stat(sub, ".")
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return sub, release, nil
}

// Jobs reads the job history from the repository, and adds the jobs
// running and queued now.
func (c consoleSource) Jobs(ctx context.Context) ([]console.Job, error) {
	jobs, err := c.d.history.get(func() ([]engine.Job, error) {
		r, done, err := c.openRepo(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		return r.Jobs(ctx)
	})
	if err != nil {
		return nil, err
	}
	out := make([]console.Job, 0, len(jobs))
	for _, j := range jobs {
		cj := console.Job{ID: j.ID, Kind: j.Kind, Policy: j.Policy, Trigger: j.Trigger, Start: j.Start, End: j.End, Result: j.Result,
			Error: j.Error, Notes: j.Notes}
		if j.Kind == KindExport {
			cj.Files = c.d.exportFiles(j.ID)
		}
		for _, v := range j.VMs {
			cj.VMs = append(cj.VMs, console.JobVM{VM: v.VM, UUID: v.UUID, Result: v.Result, RestorePoint: v.RestorePoint, Level: v.Level,
				BytesRead: v.BytesRead, BytesStored: v.BytesStored, Seconds: v.Seconds, Error: v.Error})
		}
		out = append(out, cj)
	}
	// The jobs running and queued; one that just ended is in both.
	for _, j := range c.d.live.snapshot() {
		if !slices.ContainsFunc(out, func(h console.Job) bool { return h.ID == j.ID }) {
			out = append(out, j)
		}
	}
	return out, nil
}

// Health is the repository's figures from the daemon's last refresh.
func (c consoleSource) Health(context.Context) (console.Health, error) {
	s := c.d.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	return console.Health{Reachable: s.repoOK, RestorePoints: s.repo.RestorePoints, LogicalBytes: s.repo.LogicalBytes,
		StoredBytes: s.repo.StoredBytes, DedupRatio: s.repo.DedupRatio, Compression: s.repo.Compression, Reclaimable: s.reclaim,
		LastVerify: s.verifyAt, VerifyErrors: s.verifyBad}, nil
}
