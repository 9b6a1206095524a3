package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
)

// Check validates a failover of the plan in mode against the DR repository
// and the DR site without changing anything (`--dry-run`): every stage
// pattern names a VM with a restore point, the DR site answers, the AHV
// cluster exists, every mapped subnet exists there, and no VM already has
// a name the failover would give. Every problem is reported at once.
func Check(ctx context.Context, p *Plan, o Options, mode string) error {
	r, err := openRepo(ctx, p)
	if err != nil {
		return err
	}
	defer r.Close()
	var errs []error
	stages, err := resolve(ctx, r, p)
	if err != nil {
		errs = append(errs, err)
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, o.logger(), o.TuneCluster)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer cl.Close()
	defer conn.Close()
	clusters, err := cl.ListClusters(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("DR site: list clusters: %w", err))...)
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
	mapKey := map[string]string{ModeTest: "test_network_map", ModeUnplanned: "network_map"}[mode]
	for src, dst := range p.netMapFor(mode) {
		if !slices.ContainsFunc(subnets, func(s nutanix.Subnet) bool {
			return (s.Name == dst || strings.EqualFold(s.UUID, dst)) && (target == "" || s.ClusterUUID == "" || s.ClusterUUID == target)
		}) {
			errs = append(errs, fmt.Errorf("%s %s=%s: no subnet %q on the DR cluster", mapKey, src, dst, dst))
		}
	}
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("DR site: list VMs: %w", err))
	}
	for _, st := range stages {
		for _, rp := range st.points {
			name := p.nameFor(mode, rp.VM)
			if slices.ContainsFunc(vms, func(v nutanix.VM) bool { return v.Name == name }) {
				errs = append(errs, fmt.Errorf("stage %d: a VM named %s already exists at the DR site", st.stage, name))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("plan %s: %d problem(s):\n%w", p.Name, len(errs), errors.Join(errs...))
	}
	return nil
}
