package failover

import (
	"context"
	"fmt"
)

// Permanent makes the DR site the source of truth after a planned or
// unplanned failover that ran to its end: each DR VM is backed up into
// the DR repository at once — an incremental on the point it was
// restored from, its chain continuing there (the failover kept a
// reference snapshot of each VM for this) — and the failover can no
// longer be undone, only failed back (Failback). Run again, it backs up
// the VMs whose first backup failed.
func Permanent(ctx context.Context, p *Plan, o Options) (*State, error) {
	log := o.logger().With("plan", p.Name, "mode", "permanent")
	ps, err := openState(ctx, p, true, true)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	s := ps.s
	if s == nil || s.Mode == ModeTest || !s.Done {
		return s, fmt.Errorf("plan %s: no planned or unplanned failover has run to its end: nothing to make permanent", p.Name)
	}
	if s.Back != nil {
		return s, fmt.Errorf("plan %s: a failback is under way: run ahvfs failback again to finish it", p.Name)
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return s, err
	}
	defer cl.Close()
	defer conn.Close()
	var uuids []string
	for _, v := range s.VMs {
		if v.DRPoint == "" {
			uuids = append(uuids, v.UUID)
		}
	}
	points, err := backupVMs(ctx, site, p.DataPath, cl, conn, ps.r, uuids, log)
	for i := range s.VMs {
		if rp := points[s.VMs[i].UUID]; rp != nil {
			s.VMs[i].DRPoint = rp.Name()
		}
	}
	s.Permanent = true
	if serr := s.save(); serr != nil {
		return s, serr
	}
	return s, err
}
