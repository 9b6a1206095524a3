package daemon

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// state is what the metrics show: the last outcome of each VM of each
// policy, the repository's figures, the DR targets' lag, the queue.
type state struct {
	started time.Time

	mu        sync.Mutex
	vms       map[vmKey]*vmState
	newest    map[string]time.Time // VM name → newest restore point
	repo      engine.Stats
	repoOK    bool
	reclaim   int64
	verifyBad int
	verifyAt  time.Time
	targets   map[string]*targetState
	queued    int
	running   int
	jobs      map[[2]string]int // kind, result → jobs ended since start
	conflicts map[[3]string]bool
}

type vmKey struct{ policy, vm string }

type vmState struct {
	lastSuccess time.Time
	lastResult  string
	bytesRead   int64
	bytesStored int64
	seconds     float64
}

type targetState struct {
	lastOK time.Time
	vms    []string
}

func newState() *state {
	return &state{vms: map[vmKey]*vmState{}, newest: map[string]time.Time{}, targets: map[string]*targetState{},
		jobs: map[[2]string]int{}, conflicts: map[[3]string]bool{}}
}

// job takes in a job's outcome (from the history at start, or as it ends).
func (s *state) job(j engine.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !j.End.Before(s.started) && !s.started.IsZero() {
		s.jobs[[2]string{j.Kind, j.Result}]++
	}
	if j.Kind != KindBackup {
		return
	}
	for _, v := range j.VMs {
		k := vmKey{j.Policy, v.VM}
		vs := s.vms[k]
		if vs == nil {
			vs = &vmState{}
			s.vms[k] = vs
		}
		vs.lastResult, vs.bytesRead, vs.bytesStored, vs.seconds = v.Result, v.BytesRead, v.BytesStored, v.Seconds
		if v.Result == engine.JobOK {
			vs.lastSuccess = j.End
			if _, t, err := engine.ParseName(v.RestorePoint); err == nil {
				if pt, err := time.Parse(time.RFC3339, t); err == nil && pt.After(s.newest[v.VM]) {
					s.newest[v.VM] = pt
				}
			}
		}
	}
}

// refreshRepo reads the repository's figures and each VM's newest
// restore point.
func (s *state) refreshRepo(ctx context.Context, r *engine.Repository) error {
	st, err := r.Stats(ctx)
	if err != nil {
		return err
	}
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return err
	}
	newest := map[string]time.Time{}
	for _, rp := range rps {
		if rp.Time.After(newest[rp.VM]) {
			newest[rp.VM] = rp.Time
		}
	}
	var reclaim int64 = -1
	if gc, err := r.GC(ctx, engine.GCOptions{DryRun: true}); err == nil {
		reclaim = gc.ReclaimedBytes
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo, s.repoOK, s.newest = *st, true, newest
	if reclaim >= 0 {
		s.reclaim = reclaim
	}
	return nil
}

func (s *state) setQueue(n int) {
	s.mu.Lock()
	s.queued = n
	s.mu.Unlock()
}

func (s *state) setRunning(n int) {
	s.mu.Lock()
	s.running = n
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

// synced notes a good sync of vms to target that started at start.
func (s *state) synced(target string, vms []string, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets[target] = &targetState{lastOK: start, vms: vms}
}

// policyVMs are the VMs a policy has backed up (by the history).
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

// vmsOf returns the (policy, VM) pairs known, sorted.
func (s *state) vmKeys() []vmKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Collect(maps.Keys(s.vms))
	slices.SortFunc(keys, func(a, b vmKey) int {
		if a.policy != b.policy {
			if a.policy < b.policy {
				return -1
			}
			return 1
		}
		if a.vm < b.vm {
			return -1
		}
		if a.vm > b.vm {
			return 1
		}
		return 0
	})
	return keys
}
