package daemon_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/daemon"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// fakeClock is a clock the test moves: At fires when Advance reaches its
// time.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{t, ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = keep
}

// env is a simulator with VMs, a repository, a DR target directory and a
// running daemon.
type env struct {
	t      *testing.T
	sim    *prismsim.Sim
	repo   string
	target string
	clock  *fakeClock
	jobs   chan engine.Job
	d      *daemon.Daemon
	stop   func()
	// api is the cluster's Prism API in the configuration (default v3);
	// clusterKeys more keys of its [[cluster]].
	api         string
	clusterKeys string
}

func newEnv(t *testing.T, vms ...string) *env {
	t.Helper()
	return newEnvWith(t, simtest.Options{}, vms...)
}

// newEnvWith is newEnv on a simulator started with o.
func newEnvWith(t *testing.T, o simtest.Options, vms ...string) *env {
	t.Helper()
	s := simtest.Start(t, o)
	img := enginetest.Ext4Image(t, 8<<20, 1)
	for _, n := range vms {
		if _, err := s.AddVM(context.Background(), n, []string{img}, prismsim.VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, sim: s, repo: enginetest.Init(t, engine.InitOptions{}), target: enginetest.Init(t, engine.InitOptions{}),
		clock: &fakeClock{now: time.Now().UTC().Truncate(time.Second)}}
}

// config is the daemon configuration of the environment with policies.
func (e *env) config(policies string) *daemon.Config {
	e.t.Helper()
	text := fmt.Sprintf(`repository = %q
concurrency = 2
shutdown_timeout = "30s"
[[cluster]]
name = "prod"
prism = %q
user = "admin"
password_file = %q
ca_cert = %q
api = %q
concurrency = 2
%s
[[target]]
name = "dr"
location = %q
`, e.repo, e.sim.Addr(), e.sim.PasswordFile(), e.sim.CAFile(), cmp.Or(e.api, "v3"), e.clusterKeys, e.target) + policies
	cfg, err := daemon.Parse("test.toml", text)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// start runs a daemon of cfg until the test ends or stop is called.
func (e *env) start(cfg *daemon.Config) {
	e.t.Helper()
	e.jobs = make(chan engine.Job, 100)
	e.d = daemon.New(cfg, daemon.Options{
		OpenRepo: func(ctx context.Context, cfg *daemon.Config, w bool) (*engine.Repository, error) {
			return engine.Open(ctx, cfg.Repository, engine.OpenOptions{Writable: w, LockWait: time.Minute})
		},
		Clock: e.clock,
		OnJob: func(j engine.Job) { e.jobs <- j },
		TuneCluster: func(o *nutanix.Options) {
			o.RateLimit, o.TaskPollInterval, o.RetryBaseDelay, o.RetryMaxDelay = -1, 10*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.d.Run(ctx) }()
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("daemon: %v", err)
		}
	}
	e.t.Cleanup(e.stop)
}

// expect waits for the jobs named "kind/policy" (in any order) and
// returns them by name; a job not expected fails the test.
func (e *env) expect(names ...string) map[string]engine.Job {
	e.t.Helper()
	got := map[string]engine.Job{}
	timeout := time.After(3 * time.Minute)
	for len(got) < len(names) {
		select {
		case j := <-e.jobs:
			k := j.Kind + "/" + j.Policy
			if !slices.Contains(names, k) || got[k].ID != "" {
				e.t.Fatalf("unexpected job %s (%s, %s): want %v", k, j.Result, j.Error, names)
			}
			if j.Result != engine.JobOK {
				e.t.Fatalf("job %s: %s: %s", k, j.Result, j.Error)
			}
			got[k] = j
		case <-timeout:
			e.t.Fatalf("jobs %v did not all end; got %v", names, got)
		}
	}
	return got
}

// quiet asserts that no job ends for a while.
func (e *env) quiet() {
	e.t.Helper()
	select {
	case j := <-e.jobs:
		e.t.Fatalf("unexpected job %s/%s (%s) at %s", j.Kind, j.Policy, j.Trigger, e.clock.Now())
	case <-time.After(300 * time.Millisecond):
	}
}

func vmNames(j engine.Job) []string {
	var out []string
	for _, v := range j.VMs {
		if v.Result != engine.JobOK {
			panic(v.VM + ": " + v.Error)
		}
		out = append(out, v.VM)
	}
	slices.Sort(out)
	return out
}

// readRepo opens a repository to read (the daemon may be writing it);
// close it when done.
func readRepo(t *testing.T, dir string) *engine.Repository {
	t.Helper()
	r, err := engine.Open(context.Background(), dir, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func points(t *testing.T, dir string) map[string]int {
	t.Helper()
	r := readRepo(t, dir)
	defer r.Close()
	rps, err := r.ListRestorePoints(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, rp := range rps {
		n[rp.VM]++
	}
	return n
}

// TestPolicies: two policies (globs; a glob and a Prism category) run at
// once at start (never run before), a VM both select is backed up by the
// first and reported by the second,
// retention and sync run after the first policy's backups, a VM added to
// the cluster (or given a policy's category) is protected at the next run,
// and each policy keeps its own schedule.
func TestPolicies(t *testing.T) {
	e := newEnv(t, "web01", "web02", "db01")
	if err := e.sim.SetVMCategories(context.Background(), "db01", map[string][]string{"Env": {"prod"}}); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(`
[[policy]]
name = "gold"
vms = ["web*"]
every = "1h"
keep_last = 2
sync_to = "dr"
[[policy]]
name = "silver"
vms = ["web01"]
categories = ["Env:prod"]
every = "2h"
lock_for = "7d"
`)
	e.start(cfg)
	got := e.expect("backup/gold", "prune/gold", "sync/gold", "backup/silver")
	if b := got["backup/gold"]; b.Result != engine.JobOK || b.Trigger != daemon.TriggerStart || !slices.Equal(vmNames(b), []string{"web01", "web02"}) {
		t.Fatalf("gold's first backup: %+v", b)
	}
	s := got["backup/silver"]
	if !slices.Equal(vmNames(s), []string{"db01"}) || !slices.ContainsFunc(s.Notes, func(n string) bool {
		return strings.Contains(n, "web01") && strings.Contains(n, "gold") && strings.Contains(n, "silver")
	}) {
		t.Fatalf("silver backed up %v, notes %q: want db01 only and web01 reported", vmNames(s), s.Notes)
	}
	if u := lockedUntil(t, e.repo, "db01"); u.Before(time.Now().Add(6 * 24 * time.Hour)) {
		t.Fatalf("silver's restore point locked until %v, want 7 days (lock_for)", u)
	}
	if u := lockedUntil(t, e.repo, "web01"); !u.IsZero() {
		t.Fatalf("gold's restore point locked until %v: gold has no lock_for", u)
	}
	if sy := got["sync/gold"]; sy.Result != engine.JobOK || sy.Points != 2 {
		t.Fatalf("gold's sync: %+v", sy)
	}
	if n := points(t, e.target); n["web01"] != 1 || n["web02"] != 1 || n["db01"] != 0 {
		t.Fatalf("DR target holds %v", n)
	}
	e.quiet()

	// A VM added while the daemon runs is picked up at gold's next run.
	img := enginetest.Ext4Image(t, 8<<20, 2)
	if _, err := e.sim.AddVM(context.Background(), "web03", []string{img}, prismsim.VMOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.AddVM(context.Background(), "app07", []string{img}, prismsim.VMOptions{Categories: map[string][]string{"Env": {"prod", "qa"}}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(59 * time.Minute)
	e.quiet()
	e.clock.Advance(time.Minute)
	got = e.expect("backup/gold", "prune/gold", "sync/gold")
	if b := got["backup/gold"]; b.Trigger != daemon.TriggerSchedule || !slices.Equal(vmNames(b), []string{"web01", "web02", "web03"}) {
		t.Fatalf("gold's second backup: %s %v", b.Trigger, vmNames(b))
	}
	e.quiet()
	// At 2h both run; gold's retention (keep_last 2) removes its VMs'
	// first points.
	e.clock.Advance(time.Hour)
	got = e.expect("backup/gold", "prune/gold", "sync/gold", "backup/silver")
	if s := got["backup/silver"]; !slices.Equal(vmNames(s), []string{"app07", "db01"}) {
		t.Fatalf("silver's second backup: %v, want the VM given its category meanwhile", vmNames(s))
	}
	if p := got["prune/gold"]; p.Points != 2 {
		t.Fatalf("gold's third prune removed %d points (%v), want web01's and web02's first", p.Points, p.VMs)
	}
	if n := points(t, e.repo); n["web01"] != 2 || n["web02"] != 2 || n["web03"] != 2 || n["db01"] != 2 || n["app07"] != 1 {
		t.Fatalf("repository holds %v", n)
	}
	// The history is in the repository.
	e.stop()
	r := readRepo(t, e.repo)
	defer r.Close()
	jobs, err := r.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 11 jobs ran; the prune at 2h dropped the history older than the
	// points it kept: gold's first backup and the sync that copied its
	// points (both name only web01 and web02, whose oldest points are
	// now those of 1h).
	var kept []string
	for _, j := range jobs {
		kept = append(kept, fmt.Sprintf("%s/%s@%s", j.Kind, j.Policy, j.Start.Sub(e.clock.Now().Add(-2*time.Hour))))
	}
	t.Logf("history: %v", kept)
	for _, k := range []string{"backup/silver@0s", "backup/gold@1h0m0s", "sync/gold@1h0m0s", "prune/gold@1h0m0s",
		"backup/gold@2h0m0s", "backup/silver@2h0m0s", "sync/gold@2h0m0s", "prune/gold@2h0m0s"} {
		if !slices.Contains(kept, k) {
			t.Errorf("history lost %s", k)
		}
	}
	for _, k := range []string{"backup/gold@0s", "sync/gold@0s"} {
		if slices.Contains(kept, k) {
			t.Errorf("history still holds %s, older than the restore points kept", k)
		}
	}
	checkClusterClean(t, e.sim)
}

// checkClusterClean: no snapshot but the references, no volume group, no
// image left by the jobs.
func checkClusterClean(t *testing.T, s *prismsim.Sim) {
	t.Helper()
	o := s.Objects()
	if len(o.VolumeGroups) > 0 || len(o.Images) > 0 {
		t.Fatalf("cluster left with volume groups %v, images %v", o.VolumeGroups, o.Images)
	}
}

// TestMissedRun: a daemon that was down over several run times runs the
// policy once at start ("missed"), then keeps its interval from there.
func TestMissedRun(t *testing.T) {
	e := newEnv(t, "app01")
	cfg := e.config(`
[[policy]]
name = "gold"
vms = ["app01"]
every = "1h"
`)
	e.start(cfg)
	if j := e.expect("backup/gold")["backup/gold"]; j.Trigger != daemon.TriggerStart {
		t.Fatalf("first run: %s", j.Trigger)
	}
	e.stop()
	// Down for 3h 10m: three run times passed.
	e.clock.Advance(3*time.Hour + 10*time.Minute)
	e.start(cfg)
	if j := e.expect("backup/gold")["backup/gold"]; j.Trigger != daemon.TriggerMissed {
		t.Fatalf("run after the gap: %s, want missed", j.Trigger)
	}
	e.quiet()
	e.clock.Advance(59 * time.Minute)
	e.quiet()
	e.clock.Advance(time.Minute)
	if j := e.expect("backup/gold")["backup/gold"]; j.Trigger != daemon.TriggerSchedule {
		t.Fatalf("next run: %s", j.Trigger)
	}
	if n := points(t, e.repo); n["app01"] != 3 {
		t.Fatalf("%d restore points, want 3 (start, one missed run, one scheduled)", n["app01"])
	}
}

// TestSyncScheduleAndRetry: a sync on its own schedule is recorded in the
// history (its repository stays open until then) and its lag shows in the
// metrics; a failed backup is retried a quarter of the interval later.
func TestSyncScheduleAndRetry(t *testing.T) {
	e := newEnv(t, "app01")
	cfg := e.config(`
[[policy]]
name = "gold"
vms = ["app01"]
every = "1h"
sync_to = "dr"
sync_every = "30m"
`)
	cfg.Concurrency = 1 // the backup first, then the sync
	e.start(cfg)
	got := e.expect("backup/gold", "sync/gold")
	if s := got["sync/gold"]; s.Points != 1 || s.Target != "dr" || len(s.VMs) != 1 || s.VMs[0].RestorePoint == "" {
		t.Fatalf("first sync: %+v", s)
	}
	if lag := value(t, scrape(t, e.d), "ahvfs_sync_lag_seconds", "target=dr"); lag != 0 {
		t.Fatalf("sync lag %v right after the sync", lag)
	}
	e.quiet()
	e.stop()
	hist := jobKinds(t, e.repo)
	if hist["sync/gold"] != 1 {
		t.Fatalf("history %v: the sync is not in it", hist)
	}

	// Next run: the snapshot task fails; the backup is retried 15 minutes
	// (a quarter of the hour) later, not an hour later.
	if err := e.sim.SetFaults(prismsim.Faults{FailTasks: 100, FailOps: []string{"napshot"}}); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	e.clock.Advance(time.Hour)
	select {
	case j := <-e.jobs:
		if j.Kind != "backup" || j.Result != engine.JobFailed {
			t.Fatalf("job %s %s: want the failed backup", j.Kind, j.Result)
		}
	case <-time.After(time.Minute):
		t.Fatal("no backup")
	}
	e.sim.SetFaults(prismsim.Faults{})
	e.expectOne(t, "sync/gold") // its own 30-minute schedule: nothing new to send
	e.clock.Advance(14 * time.Minute)
	e.quiet()
	e.clock.Advance(time.Minute)
	if j := e.expect("backup/gold")["backup/gold"]; j.Trigger != daemon.TriggerRetry {
		t.Fatalf("retry ran as %s", j.Trigger)
	}
	// A backup the sync has not carried yet: the lag grows.
	e.clock.Advance(10 * time.Minute)
	if lag := value(t, scrape(t, e.d), "ahvfs_sync_lag_seconds", "target=dr"); lag <= 0 {
		t.Fatalf("sync lag %v with a restore point not yet synced", lag)
	}
}

// expectOne waits for one job of kind/policy, whatever its result.
func (e *env) expectOne(t *testing.T, name string) engine.Job {
	t.Helper()
	select {
	case j := <-e.jobs:
		if j.Kind+"/"+j.Policy != name {
			t.Fatalf("job %s/%s (%s), want %s", j.Kind, j.Policy, j.Result, name)
		}
		return j
	case <-time.After(time.Minute):
		t.Fatalf("no %s job", name)
	}
	return engine.Job{}
}

// jobKinds counts the history's jobs by kind/policy.
func jobKinds(t *testing.T, dir string) map[string]int {
	t.Helper()
	r := readRepo(t, dir)
	defer r.Close()
	jobs, err := r.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, j := range jobs {
		n[j.Kind+"/"+j.Policy]++
	}
	return n
}

// lockedUntil is the lock of a VM's newest restore point.
func lockedUntil(t *testing.T, dir, vm string) time.Time {
	t.Helper()
	r := readRepo(t, dir)
	defer r.Close()
	rps, err := r.ListRestorePoints(context.Background(), vm)
	if err != nil || len(rps) == 0 {
		t.Fatalf("restore points of %s: %v %v", vm, rps, err)
	}
	return rps[len(rps)-1].LockedUntil
}

// TestVerifySchedule: with every_days = 3 the verify runs at its time of
// day and reads a third of the packs; three days read them all.
func TestVerifySchedule(t *testing.T) {
	e := newEnv(t, "app01")
	cfg := e.config(`
[verify]
every_days = 3
at = "00:00"
[[policy]]
name = "gold"
vms = ["app01"]
every = "7d"
`)
	e.start(cfg)
	e.expect("backup/gold")
	now := e.clock.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Add(24 * time.Hour)
	e.clock.Advance(midnight.Sub(now) - time.Minute)
	e.quiet()
	var notes []string
	for day := range 3 {
		if day == 0 {
			e.clock.Advance(time.Minute)
		} else {
			e.clock.Advance(24 * time.Hour)
		}
		j := e.expect("verify/")["verify/"]
		if len(j.Notes) != 1 || !strings.Contains(j.Notes[0], "of 3") {
			t.Fatalf("verify job notes %q", j.Notes)
		}
		notes = append(notes, j.Notes[0])
	}
	t.Logf("verify shares: %q", notes)
	read := 0
	for _, n := range notes {
		var part, parts, data, all int
		fmt.Sscanf(n, "part %d of %d: %d of %d packs read in full", &part, &parts, &data, &all)
		read += data
	}
	if n := len(enginetest.PackFiles(t, e.repo)); read != n {
		t.Fatalf("three days read %d packs in full, the repository has %d", read, n)
	}
}

// TestClusterLimit: with one job at a time on the cluster, the second
// policy due at start waits in the queue while the first runs (a slow
// backup), and never runs beside it.
func TestClusterLimit(t *testing.T) {
	e := newEnv(t, "a01", "b01")
	cfg := e.config(`
[[policy]]
name = "a"
vms = ["a01"]
every = "1h"
bwlimit = "2MiB"
[[policy]]
name = "b"
vms = ["b01"]
every = "1h"
bwlimit = "2MiB"
`)
	cfg.Cluster[0].Concurrency = 1
	e.start(cfg)
	sawQueued := false
	done := 0
	for done < 2 {
		select {
		case j := <-e.jobs:
			if j.Result != engine.JobOK {
				t.Fatalf("job %s: %s %s", j.Policy, j.Result, j.Error)
			}
			done++
		case <-time.After(50 * time.Millisecond):
		}
		fams := scrape(t, e.d)
		running, queued := value(t, fams, "ahvfs_jobs_running"), value(t, fams, "ahvfs_jobs_queued")
		if running > 1 {
			t.Fatalf("%v jobs ran at once on a cluster limited to 1", running)
		}
		sawQueued = sawQueued || running == 1 && queued == 1
	}
	if !sawQueued {
		t.Fatal("the second policy never waited in the queue")
	}
}
