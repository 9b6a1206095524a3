package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// Unplanned brings the plan's VMs up at the DR site for real, the source
// site being lost: the newest replicated point of each, under its own
// name, on the production networks (network_map), stage by stage. Each
// VM's recovery point (its data loss window) is in the state. It refuses
// while the source site answers and runs any of the plan's VMs (two
// copies of one VM on the network), unless o.Force.
func Unplanned(ctx context.Context, p *Plan, o Options) (*State, error) {
	if err := sourceDown(ctx, p, o); err != nil {
		return nil, err
	}
	return bringUp(ctx, p, o, ModeUnplanned)
}

// sourceDown fails when the source site answers and runs a VM of the
// plan.
func sourceDown(ctx context.Context, p *Plan, o Options) error {
	if o.Force {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, conn, err := p.site(p.SourceCluster).Connect(cctx, o.logger(), func(no *nutanix.Options) {
		if o.TuneCluster != nil {
			o.TuneCluster(no)
		}
		no.MaxAttempts = 1
	})
	if err != nil {
		return unreachable(err, p.site(p.SourceCluster).Prism)
	}
	defer cl.Close()
	defer conn.Close()
	vms, err := cl.ListVMs(cctx)
	if err != nil {
		return unreachable(err, p.site(p.SourceCluster).Prism)
	}
	var running []string
	for _, v := range vms {
		for _, st := range p.Stage {
			for _, g := range st.VMs {
				if ok, _ := path.Match(g, v.Name); ok && v.PowerState != nutanix.PowerOff && !slices.Contains(running, v.Name) {
					running = append(running, v.Name)
				}
			}
		}
	}
	if len(running) > 0 {
		return fmt.Errorf("the source site %s answers and runs %s: an unplanned failover would start second copies of them (shut them down, use a planned failover, or --force)",
			p.site(p.SourceCluster).Prism, strings.Join(running, ", "))
	}
	return nil
}

// unreachable is nil when err says the source site cannot be reached (no
// route, refused, timed out): the site is down as an unplanned failover
// expects. A site that answers but refuses us, or answers wrongly, may be
// running its VMs: that is an error.
func unreachable(err error, site string) error {
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("the source site %s answers, but not so that its VMs can be seen stopped (%v): fix the plan's credentials for it, or --force if it is lost", site, err)
}
