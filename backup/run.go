package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Run backs up the VMs selected by o into repo. It first sweeps what
// earlier jobs left on the cluster (clusterjob.Sweep), then backs up
// o.ConcurrentVMs VMs at a time. A VM's failure is recorded in its
// VMReport and does not stop the others; Run's error is for what stops
// the whole run (no VM matched, the inventory could not be read, ctx
// cancelled). The report is returned in every case it could be built.
func Run(ctx context.Context, repo *engine.Repository, cl nutanix.Cluster, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.DataPath == PathNBD || o.Strategy != "" && o.Strategy != StrategyAuto {
		return nil, errors.New("backup options: --data-path nbd and --strategy are for XCP-ng pools (--source xapi://); an AHV cluster is read over iSCSI or REST")
	}
	o = o.withDefaults()
	rep := &Report{Start: o.Now().UTC()}
	defer func() { rep.Duration = time.Since(rep.Start) }()
	j, err := runJournal(repo, &o)
	if err != nil {
		return rep, err
	}
	clusters := o.Clusters
	if clusters == nil {
		clusters = clusterjob.Only(cl)
	}
	if repo.Writable() {
		if err := migrateLegacyState(ctx, repo, j); err != nil {
			return rep, fmt.Errorf("move the state of an older ahvfs into the journal: %w", err)
		}
	}
	if !o.SkipCleanup {
		cr, err := clusterjob.SweepBefore(ctx, j, clusters, o.Logger)
		rep.Cleanup = cr
		if err != nil {
			return rep, err
		}
	}
	r := &runner{repo: repo, cl: cl, clusters: clusters, j: j, o: &o, portals: map[string]string{},
		bw: clusterjob.NewBandwidth(o.BandwidthLimit)}
	all, err := cl.ListVMs(ctx)
	if err != nil {
		return rep, fmt.Errorf("list VMs: %w", err)
	}
	sel, unmatched, err := Select(ctx, cl, all, o.VMs, o.Exclude, o.Categories)
	if err != nil {
		return rep, err
	}
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
		r.findPortals(ctx)
	}
	return rep, r.eachVM(ctx, rep, sel, r.backupVM)
}

// runJournal checks that repo can take the run's restore points and opens
// the journal of its cluster objects (o.Journal, else the repository's).
func runJournal(repo *engine.Repository, o *Options) (*clusterjob.Journal, error) {
	if !repo.Writable() && !o.Estimate {
		return nil, engine.ErrReadOnly
	}
	if o.Journal != nil {
		return o.Journal, nil
	}
	return clusterjob.RepositoryJournal(repo)
}

// eachVM backs up the selected VMs, o.ConcurrentVMs at once, into
// rep.VMs (in sel's order); only the end of ctx is an error.
func (r *runner) eachVM(ctx context.Context, rep *Report, sel []nutanix.VM, backupVM func(context.Context, nutanix.VM) VMReport) error {
	o := r.o
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
			rep.VMs[i] = backupVM(ctx, v)
			o.Progress.VMDone(rep.VMs[i])
		}()
	}
	wg.Wait()
	for _, v := range rep.VMs {
		if v.DataPath != "" {
			rep.DataPath = v.DataPath
		}
	}
	return ctx.Err()
}

// eachDisk calls fn for disks 0..n-1, at most limit at once; the first
// failure cancels the others, and the first error that is not such a
// cancellation is returned. fn's error is wrapped by label(i).
func eachDisk(ctx context.Context, n, limit int, label func(i int) string, fn func(ctx context.Context, i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
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
			if err := fn(dctx, i); err != nil {
				errs[i] = fmt.Errorf("%s: %w", label(i), err)
				cancel() // one disk failed: the restore point cannot commit
			}
		}()
	}
	wg.Wait()
	return firstRealError(errs)
}

type runner struct {
	repo     *engine.Repository
	cl       nutanix.Cluster
	clusters clusterjob.Clusters
	j        *clusterjob.Journal
	o        *Options
	bw       *clusterjob.Bandwidth // shared by every disk of the run

	portals   map[string]string // cluster UUID → iSCSI portal (port overridden)
	anyPortal string
	prober    portalProber

	subnetsOnce sync.Once
	subnets     map[string]string
	timeMu      sync.Mutex // serialises restore point time choice per process
}

// findPortals learns each cluster's iSCSI portal (Data Services IP).
func (r *runner) findPortals(ctx context.Context) {
	cls, err := r.cl.ListClusters(ctx)
	if err != nil {
		r.o.Logger.Warn("list clusters (Data Services IP)", "err", err)
	}
	for _, c := range cls {
		if p := c.Portal(); p != "" {
			r.portals[c.UUID] = clusterjob.OverridePort(p, r.o.ISCSIPort)
			if r.anyPortal == "" {
				r.anyPortal = r.portals[c.UUID]
			}
		}
	}
}

// clusterFor is the client a VM's backup runs through: the API family its
// reference snapshots were taken with, so that a chain is continued
// through the API that built it even when this run's client picked
// another one. When that API is not usable now, the run's client is used
// (and decideLevel makes the backup a full one, saying why).
func (r *runner) clusterFor(ctx context.Context, ref *Reference, log *slog.Logger) nutanix.Cluster {
	if ref == nil || ref.Last.Snapshot.API == "" || r.cl.API() == "" ||
		clusterjob.Family(ref.Last.Snapshot.API) == clusterjob.Family(r.cl.API()) {
		return r.cl
	}
	cl, err := r.clusters(ctx, ref.Last.Snapshot.API)
	if err != nil {
		log.Warn("the VM's chain was built through another Prism API, which is not usable now", "api", ref.Last.Snapshot.API, "err", err)
		return r.cl
	}
	return cl
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

// subnetName fills NIC subnet names the VM read left empty (v4).
func (r *runner) subnetName(ctx context.Context, cl nutanix.Cluster, uuid string) string {
	r.subnetsOnce.Do(func() {
		r.subnets = map[string]string{}
		list, err := cl.ListSubnets(ctx)
		if err != nil {
			r.o.Logger.Debug("list subnets", "err", err)
		}
		for _, s := range list {
			r.subnets[s.UUID] = s.Name
		}
	})
	return r.subnets[uuid]
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
