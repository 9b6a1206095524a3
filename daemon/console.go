package daemon

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/rptree"
)

// consoleSource is what the web console shows, from the daemon's state
// and its repository.
type consoleSource struct{ d *Daemon }

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
		}
		out = append(out, vs)
	}
	return out, nil
}

// Points reads the VM's restore points from the repository (a reader
// beside the jobs' writer).
func (c consoleSource) Points(ctx context.Context, vm string) ([]console.Point, error) {
	r, err := c.d.repo.open(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("open the repository: %w", err)
	}
	defer r.Close()
	rps, err := r.ListRestorePoints(ctx, vm)
	if err != nil {
		return nil, err
	}
	out := make([]console.Point, 0, len(rps))
	for _, rp := range rps {
		out = append(out, console.Point{Name: rp.Name(), Time: rp.Time, Level: rp.Level, Consistency: rp.Consistency,
			Size: rp.LogicalBytes(), NewBytes: rp.Stats.NewStoredBytes, LockedUntil: rp.LockedUntil})
	}
	return out, nil
}

// PointFS opens the repository to read and shows the restore point's
// tree (package rptree); release closes both. The repository is opened
// per request: a reader held for good would keep gc waiting.
func (c consoleSource) PointFS(ctx context.Context, vm, at string) (fs.FS, func(), error) {
	t, err := time.Parse(time.RFC3339, at)
	if err != nil || engine.FormatTime(t) != at {
		return nil, nil, fmt.Errorf("restore point time %q: want %s: %w", at, engine.FormatTime(time.Unix(0, 0)), fs.ErrNotExist)
	}
	r, err := c.d.repo.open(ctx, false)
	if err != nil {
		return nil, nil, fmt.Errorf("open the repository: %w", err)
	}
	tree, err := rptree.New(r, rptree.Options{RefreshInterval: -1})
	if err == nil {
		var sub fs.FS
		if sub, err = fs.Sub(tree, rptree.VMDirName(vm)+"/"+at); err == nil {
			if _, err = fs.Stat(sub, "."); err == nil {
				return sub, func() { r.Close() }, nil
			}
		}
	}
	r.Close()
	return nil, nil, err
}

// Jobs reads the job history from the repository.
func (c consoleSource) Jobs(ctx context.Context) ([]console.Job, error) {
	r, err := c.d.repo.open(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("open the repository: %w", err)
	}
	defer r.Close()
	jobs, err := r.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]console.Job, 0, len(jobs))
	for _, j := range jobs {
		cj := console.Job{ID: j.ID, Kind: j.Kind, Policy: j.Policy, Trigger: j.Trigger, Start: j.Start, End: j.End, Result: j.Result,
			Error: j.Error, Notes: j.Notes}
		for _, v := range j.VMs {
			cj.VMs = append(cj.VMs, console.JobVM{VM: v.VM, Result: v.Result, RestorePoint: v.RestorePoint, Level: v.Level,
				BytesRead: v.BytesRead, BytesStored: v.BytesStored, Seconds: v.Seconds, Error: v.Error})
		}
		out = append(out, cj)
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
