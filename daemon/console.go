package daemon

import (
	"context"
	"fmt"

	"github.com/ahvfs/ahvfs/console"
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
