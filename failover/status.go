package failover

import (
	"context"
	"slices"
)

// Status is the plan's state, each VM checked against the DR site (its
// live power state, or that it is gone).
type Status struct {
	State *State   `json:"state"`
	Live  []LiveVM `json:"live,omitempty"`
	// Unreachable says why the DR site could not be asked (Live is then
	// empty): the state alone is what there is.
	Unreachable string `json:"unreachable,omitempty"`
}

// LiveVM is what the DR site says of a VM the state names.
type LiveVM struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid,omitempty"`
	Exists     bool   `json:"exists"`
	PowerState string `json:"power_state,omitempty"`
}

// PlanStatus reads the plan's state and asks the DR site about its VMs.
// A plan with no state has none (State nil). A DR site that does not
// answer is no error: the state is shown without the site's view.
func PlanStatus(ctx context.Context, p *Plan, o Options) (*Status, error) {
	ps, err := openState(ctx, p, false, false)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	s := ps.s
	if s == nil {
		return &Status{}, nil
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, o.logger(), o.TuneCluster)
	if err != nil {
		return &Status{State: s, Unreachable: err.Error()}, nil
	}
	defer cl.Close()
	defer conn.Close()
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return &Status{State: s, Unreachable: err.Error()}, nil
	}
	st := &Status{State: s}
	for _, v := range s.VMs {
		lv := LiveVM{Name: v.Name, UUID: v.UUID}
		for _, vm := range vms {
			if (v.UUID != "" && vm.UUID == v.UUID) || (v.UUID == "" && vm.Name == v.Name && !slices.Contains(v.Existing, vm.UUID)) {
				lv.Exists, lv.UUID, lv.PowerState = true, vm.UUID, string(vm.PowerState)
			}
		}
		st.Live = append(st.Live, lv)
	}
	return st, nil
}
