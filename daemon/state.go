package daemon

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// state is what the metrics show: the last outcome of each VM of each
// policy, the repository's figures, the DR targets' lag, the queue.
type state struct {
	started time.Time // set by New, never changed

	mu        sync.Mutex
	vms       map[vmKey]*vmState
	newest    map[string]time.Time // VM name → newest restore point
	oldest    map[string]time.Time // VM name → oldest restore point
	repo      engine.Stats
	repoOK    bool
	reclaim   int64
	verifyBad int
	verifyAt  time.Time
	synced    map[[2]string]time.Time // target, VM → start of the last good sync that covered it
	// atTarget: target, VM → time of the newest restore point a sync
	// sent there (every older one was sent before or with it).
	atTarget map[[2]string]time.Time
	// instant: cluster, UUID of the VM an instant restore the console
	// made → the VM (name, UUID) of its restore point (instantJobLocked).
	instant   map[[2]string][2]string
	queued    int
	running   int
	jobs      map[[2]string]int // kind, result → jobs ended since start
	conflicts map[[3]string]bool
	// refs are the VMs of the clusters as last listed, by name: the
	// console matches scopes by UUID and categories with them.
	refs map[string]vmRef
}

// vmRef is what the console's scopes match a VM by.
type vmRef struct {
	uuid       string
	categories map[string][]string
}

// listed takes in the VMs of a cluster as a run listed them.
func (s *state) listed(vms []nutanix.VM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vms {
		s.refs[v.Name] = vmRef{uuid: v.UUID, categories: v.Categories}
	}
}

// pointTime is the time in a restore point's name (VM@TIME).
func pointTime(name string) (time.Time, bool) {
	_, t, err := engine.ParseName(name)
	if err != nil {
		return time.Time{}, false
	}
	pt, err := time.Parse(time.RFC3339, t)
	return pt, err == nil
}

// instantVMUUID finds the restored VM's UUID in a console job's notes
// ("restored as VM NAME (UUID) ...", "instant restore NAME (UUID) ...").
var instantVMUUID = regexp.MustCompile(`^(?:restored as VM|instant restore) .* \(([0-9A-Fa-f-]{36})\)`)

// instantJob takes in a console job that starts or ends an instant
// restore: the restored VM (its UUID on the job's Target cluster) maps to
// the VM its restore point was taken of until it is finished or
// cancelled. Called with the lock held.
func (s *state) instantJobLocked(j engine.Job) {
	if j.Result != engine.JobOK || j.Target == "" || len(j.VMs) != 1 {
		return
	}
	instant := j.Kind != KindRestore || slices.ContainsFunc(j.Notes, func(n string) bool { return strings.HasPrefix(n, "runs from nfs://") })
	for _, n := range j.Notes {
		m := instantVMUUID.FindStringSubmatch(n)
		if m == nil || !instant {
			continue
		}
		k := [2]string{j.Target, m[1]}
		if j.Kind == KindRestore {
			s.instant[k] = [2]string{j.VMs[0].VM, j.VMs[0].UUID}
		} else {
			delete(s.instant, k)
		}
	}
}

// instantSource is the VM (name, UUID) the instant restore with VM UUID
// restored on cluster was made of ("" when the console did not make it).
func (s *state) instantSource(cluster, restored string) (vm, uuid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.instant[[2]string{cluster, restored}]
	return src[0], src[1]
}

// uuidOf is the UUID of the VM of that name as last listed ("" when
// unknown).
func (s *state) uuidOf(vm string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refs[vm].uuid
}

// policyOf is the first policy of policies (in the configuration's
// order) that protects the VM ("" when none does).
func (s *state) policyOf(vm string, policies []PolicyConfig) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range policies {
		if s.vms[vmKey{p.Name, vm}] != nil {
			return p.Name
		}
	}
	return ""
}

type vmKey struct{ policy, vm string }

type vmState struct {
	lastSuccess time.Time
	lastResult  string
	bytesRead   int64
	bytesStored int64
	seconds     float64
}

func newState(started time.Time) *state {
	return &state{started: started, vms: map[vmKey]*vmState{}, newest: map[string]time.Time{}, oldest: map[string]time.Time{},
		synced: map[[2]string]time.Time{}, atTarget: map[[2]string]time.Time{}, instant: map[[2]string][2]string{}, jobs: map[[2]string]int{}, conflicts: map[[3]string]bool{}, refs: map[string]vmRef{}}
}

// job takes in a job's outcome (from the history at start, or as it ends).
func (s *state) job(j engine.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !j.End.Before(s.started) {
		s.jobs[[2]string{j.Kind, j.Result}]++
	}
	switch {
	case j.Kind == KindRestore || j.Kind == KindInstantFinish || j.Kind == KindInstantCancel:
		s.instantJobLocked(j)
	case j.Kind == KindBackup:
		for _, v := range j.VMs {
			s.vmDoneLocked(j.Policy, v, j.End)
		}
	case j.Kind == KindSync && j.Result == engine.JobOK:
		for _, v := range j.VMs {
			k := [2]string{j.Target, v.VM}
			if j.Start.After(s.synced[k]) {
				s.synced[k] = j.Start
			}
			if pt, ok := pointTime(v.RestorePoint); ok && pt.After(s.atTarget[k]) {
				s.atTarget[k] = pt
			}
		}
	}
}

// vmDone takes in one VM's backup as it ends.
func (s *state) vmDone(policy string, v engine.JobVM, end time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vmDoneLocked(policy, v, end)
}

func (s *state) vmDoneLocked(policy string, v engine.JobVM, end time.Time) {
	k := vmKey{policy, v.VM}
	vs := s.vms[k]
	if vs == nil {
		vs = &vmState{}
		s.vms[k] = vs
	}
	vs.lastResult, vs.bytesRead, vs.bytesStored, vs.seconds = v.Result, v.BytesRead, v.BytesStored, v.Seconds
	if v.Result != engine.JobOK {
		return
	}
	if end.After(vs.lastSuccess) {
		vs.lastSuccess = end
	}
	if pt, ok := pointTime(v.RestorePoint); ok {
		if pt.After(s.newest[v.VM]) {
			s.newest[v.VM] = pt
		}
		if o := s.oldest[v.VM]; o.IsZero() || pt.Before(o) {
			s.oldest[v.VM] = pt
		}
	}
}

// selected replaces the VMs a policy protects (after a run resolved
// them): VMs it no longer selects leave its metrics, and so do its
// conflicts, which the run reports again.
func (s *state) selected(policy string, vms []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.vms {
		if k.policy == policy && !slices.Contains(vms, k.vm) {
			delete(s.vms, k)
		}
	}
	for k := range s.conflicts {
		if k[2] == policy {
			delete(s.conflicts, k)
		}
	}
}

// keepPolicies drops the state of policies a reload removed.
func (s *state) keepPolicies(names map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.vms {
		if !names[k.policy] {
			delete(s.vms, k)
		}
	}
	for k := range s.conflicts {
		if !names[k[1]] || !names[k[2]] {
			delete(s.conflicts, k)
		}
	}
}

// refreshRepo reads the repository's figures and each VM's newest and
// oldest restore points.
func (s *state) refreshRepo(ctx context.Context, r *engine.Repository) error {
	st, err := r.Stats(ctx)
	if err != nil {
		return err
	}
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return err
	}
	newest, oldest := map[string]time.Time{}, map[string]time.Time{}
	for _, rp := range rps {
		if rp.Time.After(newest[rp.VM]) {
			newest[rp.VM] = rp.Time
		}
		if o := oldest[rp.VM]; o.IsZero() || rp.Time.Before(o) {
			oldest[rp.VM] = rp.Time
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo, s.repoOK, s.newest, s.oldest = *st, true, newest, oldest
	return nil
}

// refreshReclaim asks gc what it would free. Only with no backup running:
// the packs of a backup not yet committed would count as reclaimable.
func (s *state) refreshReclaim(ctx context.Context, r *engine.Repository) error {
	gc, err := r.GC(ctx, engine.GCOptions{DryRun: true})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.reclaim = gc.ReclaimedBytes
	s.mu.Unlock()
	return nil
}

func (s *state) setQueue(queued, running int) {
	s.mu.Lock()
	s.queued, s.running = queued, running
	s.mu.Unlock()
}

func (s *state) conflict(vm, owner, other string) {
	s.mu.Lock()
	s.conflicts[[3]string{vm, owner, other}] = true
	s.mu.Unlock()
}

func (s *state) verified(bad int, at time.Time) {
	s.mu.Lock()
	s.verifyBad, s.verifyAt = bad, at
	s.mu.Unlock()
}

// policyVMs are the VMs a policy protects (its last run's selection, or
// the history's).
func (s *state) policyVMs(policy string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.vms {
		if k.policy == policy {
			out = append(out, k.vm)
		}
	}
	slices.Sort(out)
	return out
}

// newestOf is a VM's newest restore point (zero: none).
func (s *state) newestOf(vm string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newest[vm]
}

// syncLag is the lag of a target over vms: the longest time a VM's
// restore point has waited for it — since the last good sync that covered
// the VM, when the VM has a newer point; since the VM's oldest point when
// no sync ever covered it; 0 when every VM is in sync.
func (s *state) syncLagLocked(target string, vms []string, now time.Time) time.Duration {
	var lag time.Duration
	for _, vm := range vms {
		newest := s.newest[vm]
		if newest.IsZero() {
			continue
		}
		since := s.synced[[2]string{target, vm}]
		if !newest.After(since) {
			continue
		}
		if since.IsZero() {
			since = s.oldest[vm]
		}
		lag = max(lag, now.Sub(since))
	}
	return lag
}

// vmKeys returns the (policy, VM) pairs known, sorted.
func (s *state) vmKeys() []vmKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Collect(maps.Keys(s.vms))
	slices.SortFunc(keys, func(a, b vmKey) int {
		if c := strings.Compare(a.policy, b.policy); c != 0 {
			return c
		}
		return strings.Compare(a.vm, b.vm)
	})
	return keys
}
