package failover

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Check validates a failover of the plan in mode against the DR repository
// and the DR site without changing anything (`--dry-run`): every stage
// pattern names a VM with a restore point (for a planned failover: a VM
// at the source site, and the source repository opens), the DR site
// answers, the AHV cluster exists, every mapped subnet exists there, and
// no VM already has a name the failover would give; every [[vm]] override
// names a VM of the plan, no other failover of the plan is up, and the
// DR cluster has the memory and the storage container space for the VMs
// (the Room it returns). Every problem is reported at once.
func Check(ctx context.Context, p *Plan, o Options, mode string) (Room, error) {
	r, err := openRepo(ctx, p, false)
	if err != nil {
		return Room{}, err
	}
	defer r.Close()
	var errs []error
	var vms []VMState // stage and name of each VM of the plan
	var points []*engine.RestorePoint
	var notes []string
	stages, resolveErr := resolve(ctx, r, p)
	if mode == ModePlanned {
		// The VMs are at the source; their newest points at DR (the last
		// sync adds only what changed since) tell what they need there.
		vms, errs = checkSource(ctx, p, o)
		if resolveErr != nil && stages == nil {
			errs = append(errs, resolveErr) // the DR repository could not be read
		}
		for _, v := range vms {
			if rp := pointOf(stages, v.VM); rp != nil {
				points = append(points, rp)
			} else {
				notes = append(notes, fmt.Sprintf("%s has no restore point in the DR repository yet: its room at DR is not counted", v.VM))
			}
		}
	} else {
		if resolveErr != nil {
			errs = append(errs, resolveErr)
		}
		for _, st := range stages {
			for _, rp := range st.points {
				vms = append(vms, VMState{Stage: st.stage, VM: rp.VM})
				points = append(points, rp)
			}
		}
	}
	for i, ov := range p.VM {
		if !slices.ContainsFunc(vms, func(v VMState) bool { ok, _ := path.Match(ov.Name, v.VM); return ok }) {
			errs = append(errs, fmt.Errorf("vm[%d].name %q: matches no VM of the plan's stages", i, ov.Name))
		}
	}
	ps := &planState{r: r}
	if err := ps.load(p, false); err != nil {
		errs = append(errs, err)
	} else if s := ps.s; s != nil && s.up() && !(s.Mode == mode && !s.Done) {
		errs = append(errs, fmt.Errorf("a %s failover of the plan is up since %s: undo it first (or fail it back)", s.Mode, engine.FormatTime(s.Started)))
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, o.logger(), o.TuneCluster)
	if err != nil {
		return Room{Notes: notes}, errors.Join(append(errs, err)...)
	}
	defer cl.Close()
	defer conn.Close()
	clusters, err := cl.ListClusters(ctx)
	if err != nil {
		return Room{Notes: notes}, errors.Join(append(errs, fmt.Errorf("DR site: list clusters: %w", err))...)
	}
	target := ""
	for _, c := range clusters {
		if p.TargetAHVCluster == "" || strings.EqualFold(c.Name, p.TargetAHVCluster) || strings.EqualFold(c.UUID, p.TargetAHVCluster) {
			target = c.UUID
			break
		}
	}
	if target == "" {
		errs = append(errs, fmt.Errorf("target_ahv_cluster %q: no such cluster at %s", p.TargetAHVCluster, site.Prism))
	}
	subnets, err := cl.ListSubnets(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("DR site: list subnets: %w", err))
	}
	for src, dst := range p.netMapFor(mode) {
		if !slices.ContainsFunc(subnets, func(s nutanix.Subnet) bool {
			return (s.Name == dst || strings.EqualFold(s.UUID, dst)) && (target == "" || s.ClusterUUID == "" || s.ClusterUUID == target)
		}) {
			errs = append(errs, fmt.Errorf("%s %s=%s: no subnet %q on the DR cluster", netMapKey(mode), src, dst, dst))
		}
	}
	drVMs, err := cl.ListVMs(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("DR site: list VMs: %w", err))
	}
	for _, v := range vms {
		name := p.nameFor(mode, v.VM)
		// The restore refuses a name taken on the cluster it restores to.
		if slices.ContainsFunc(drVMs, func(d nutanix.VM) bool {
			return d.Name == name && (p.TargetAHVCluster == "" || d.ClusterUUID == target)
		}) {
			errs = append(errs, fmt.Errorf("stage %d: a VM named %s already exists at the DR site", v.Stage, name))
		}
	}
	same, err := sameNames(ctx, r, points)
	if err != nil {
		errs = append(errs, err)
	}
	room, roomErrs := roomFor(ctx, cl, r, p, points, clusters, target)
	room.Notes = append(append(notes, same...), room.Notes...)
	errs = append(errs, roomErrs...)
	if len(errs) > 0 {
		return room, fmt.Errorf("plan %s: %d problem(s):\n%w", p.Name, len(errs), errors.Join(errs...))
	}
	return room, nil
}

// sameNames notes each VM of points whose name the repository's points
// give to more than one VM (UUID): a VM deleted and made again, or two
// VMs of one name on different clusters. The repository knows VMs by
// name, and the failover takes the newest point of any of them.
func sameNames(ctx context.Context, r *engine.Repository, points []*engine.RestorePoint) ([]string, error) {
	var notes []string
	for _, rp := range points {
		all, err := r.ListRestorePoints(ctx, rp.VM)
		if err != nil {
			return nil, err
		}
		uuids := map[string]bool{}
		for _, x := range all {
			if x.VMUUID != "" {
				uuids[x.VMUUID] = true
			}
		}
		if len(uuids) > 1 {
			notes = append(notes, fmt.Sprintf("%s: the DR repository has points of %d VMs of this name (UUIDs %s); the failover takes the newest, %s of VM %s",
				rp.VM, len(uuids), strings.Join(slices.Sorted(maps.Keys(uuids)), ", "), rp.Name(), rp.VMUUID))
		}
	}
	return notes, nil
}

// pointOf is vm's point among the resolved stages, or nil.
func pointOf(stages []stageVMs, vm string) *engine.RestorePoint {
	for _, st := range stages {
		for _, rp := range st.points {
			if rp.VM == vm {
				return rp
			}
		}
	}
	return nil
}

// checkSource checks what a planned failover needs at the source: the
// source repository opens, the source site answers, and every stage
// pattern names a VM there. It returns the plan's VMs and the problems.
func checkSource(ctx context.Context, p *Plan, o Options) ([]VMState, []error) {
	var errs []error
	if p.SourceRepository == "" {
		errs = append(errs, errors.New("source_repository: missing (a planned failover backs each VM up there last)"))
	} else if r, err := openRepository(ctx, "source repository", p.SourceRepository, firstOf(p.SourcePasswordFile, p.PasswordFile), false); err != nil {
		errs = append(errs, err)
	} else {
		r.Close()
	}
	cl, conn, err := p.site(p.SourceCluster).Connect(ctx, o.logger(), o.TuneCluster)
	if err != nil {
		return nil, append(errs, fmt.Errorf("source site: %w", err))
	}
	defer cl.Close()
	defer conn.Close()
	vms, err := sourceVMs(ctx, cl, p)
	if err != nil {
		errs = append(errs, err)
	}
	return vms, errs
}
