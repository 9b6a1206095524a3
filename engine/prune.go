package engine

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine/retention"
)

// PruneOptions choose what a prune considers and keeps.
type PruneOptions struct {
	// VMs are globs (path.Match, but '*' and '?' match '/' too) on VM
	// names; empty: every VM.
	VMs []string
	// Policy is applied to each VM's restore points on its own.
	Policy retention.Policy
	// Now decides which locks still hold, default time.Now.
	Now time.Time
}

// PrunePlan is what a prune keeps and removes, oldest first in each list.
type PrunePlan struct {
	Keep   []*RestorePoint
	Remove []*RestorePoint
	// Reasons says why each kept point (by ID) is kept: "daily 2",
	// "locked", "held", ...
	Reasons map[string][]string
}

// ReclaimableAfter is what gc would reclaim once the restore points remove
// are forgotten (a prune's dry run); it changes nothing.
func (r *Repository) ReclaimableAfter(ctx context.Context, remove []*RestorePoint) (int64, error) {
	ids := make([]string, 0, len(remove))
	for _, rp := range remove {
		ids = append(ids, rp.ID)
	}
	g, err := r.GC(ctx, GCOptions{DryRun: true, Without: ids})
	if err != nil {
		return 0, err
	}
	return g.ReclaimedBytes, nil
}

// PlanPrune applies o.Policy to the restore points of every VM o.VMs
// matches and returns the plan; it changes nothing (Forget(plan.Remove)
// carries it out). Locked and held points are always kept. An empty policy is an
// error (ErrInvalid, like a policy that does not validate): it would remove
// every unlocked point.
func (r *Repository) PlanPrune(ctx context.Context, o PruneOptions) (*PrunePlan, error) {
	if o.Policy.Empty() {
		return nil, fmt.Errorf("prune: %w: the policy keeps nothing; give at least one keep rule", ErrInvalid)
	}
	if err := o.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("prune: %w: %w", ErrInvalid, err)
	}
	for _, g := range o.VMs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("prune: VM glob %q: %w", g, err)
		}
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return nil, err
	}
	holds, err := r.Holds(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	byVM := map[string][]*RestorePoint{}
	var order []string
	for _, rp := range rps {
		if !matchesAny(o.VMs, rp.VM) {
			continue
		}
		if _, ok := byVM[rp.VM]; !ok {
			order = append(order, rp.VM)
		}
		byVM[rp.VM] = append(byVM[rp.VM], rp)
	}
	plan := &PrunePlan{Reasons: map[string][]string{}}
	for _, vm := range order {
		byID := map[string]*RestorePoint{}
		var pts []retention.Point
		for _, rp := range byVM[vm] {
			byID[rp.ID] = rp
			pts = append(pts, retention.Point{ID: rp.ID, Time: rp.Time, Locked: rp.LockedUntil.After(o.Now), Held: slices.ContainsFunc(holds, func(h Hold) bool { return h.Keeps(rp.ID) })})
		}
		ds := retention.Apply(pts, o.Policy)
		// Apply returns newest first; the plan lists oldest first.
		for i := len(ds) - 1; i >= 0; i-- {
			d := ds[i]
			if d.Keep {
				plan.Keep = append(plan.Keep, byID[d.ID])
				plan.Reasons[d.ID] = d.Reasons
			} else {
				plan.Remove = append(plan.Remove, byID[d.ID])
			}
		}
	}
	return plan, nil
}

// ExactVMs returns globs that match exactly the VM names given: their
// glob characters quoted.
func ExactVMs(names []string) []string {
	out := make([]string, len(names))
	for i, name := range names {
		var b strings.Builder
		for _, c := range name {
			if strings.ContainsRune(`*?[\`, c) {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		}
		out[i] = b.String()
	}
	return out
}

// matchesAny reports whether name matches one of globs (or globs is empty).
// A VM name is no path: '*' and '?' match '/' too ("db/*" and "*" both
// match "db/prod"), so both sides trade '/' for a byte path.Match treats
// as any other.
func matchesAny(globs []string, name string) bool {
	if len(globs) == 0 {
		return true
	}
	flat := func(s string) string { return strings.ReplaceAll(s, "/", "\x00") }
	for _, g := range globs {
		if ok, _ := path.Match(flat(g), flat(name)); ok {
			return true
		}
	}
	return false
}
