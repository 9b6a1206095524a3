package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
)

// Job kinds.
const (
	KindBackup = "backup"
	KindPrune  = "prune"
	KindSync   = "sync"
	KindVerify = "verify"
	// KindRestore is a restore the console asked for.
	KindRestore = "restore"
	// KindLock and KindForget are changes to a restore point made in the
	// console.
	KindLock   = "lock"
	KindForget = "forget"
)

// Triggers: why a job ran.
const (
	TriggerSchedule = "schedule"
	TriggerMissed   = "missed"  // its time passed while the daemon was down
	TriggerStart    = "start"   // never ran before: an interval policy runs at once
	TriggerRetry    = "retry"   // its last run failed: run again before the schedule says
	TriggerConsole  = "console" // a user asked in the web console (the job's notes say who)
)

// Clock is the daemon's time: the real one, or a test's.
type Clock interface {
	Now() time.Time
	// At delivers once the time is t or later (at once when it is). An
	// absolute time, so that a wait computed from a Now read a moment
	// ago is not moved later by the time since.
	At(t time.Time) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// Options wire a daemon to what cmd/ahvfs owns.
type Options struct {
	// OpenRepo opens the configuration's repository (writable takes the
	// writer lock, waiting for it while ctx lasts).
	OpenRepo func(ctx context.Context, cfg *Config, writable bool) (*engine.Repository, error)
	// OpenReader, when set, opens the repository to read for one console
	// request: with a smaller cache than a job's (default OpenRepo).
	OpenReader func(ctx context.Context, cfg *Config) (*engine.Repository, error)
	// Clock, default the real one.
	Clock Clock
	// Logger, default discard.
	Logger *slog.Logger
	// OnJob, when set, is called with every job record stored (tests).
	OnJob func(engine.Job)
	// TuneCluster, when set, adjusts the Prism client options of every
	// connection (tests: faster task polls and retries).
	TuneCluster func(*nutanix.Options)
	// TuneXen, when set, adjusts the XAPI client options of every backup
	// of an XCP-ng pool (tests).
	TuneXen func(*xapi.Options)
}

// Daemon runs the policies of a configuration on their schedules.
type Daemon struct {
	o     Options
	clock Clock
	log   *slog.Logger
	host  string
	repo  *repoPool
	stats *state
	// readers are the console's slots to read the repository.
	readers chan struct{}
	// live is the jobs queued and running, for the console; history the
	// job history and instant the unfinished instant restores, as the
	// console last read them.
	live    *live
	history recent[[]engine.Job]
	instant recent[[]console.InstantVM]

	// maint makes retention, gc and verify exclusive with backups and
	// syncs, which share the repository's writer.
	maint sync.RWMutex

	mu      sync.Mutex
	cfg     *Config
	last    map[string]time.Time // task key → start of its last run
	queue   []*task
	running map[string]*task
	perCl   map[string]int // cluster → jobs running on it
	wake    chan struct{}
	wg      sync.WaitGroup
	// breached: VMs whose RPO breach was notified (until they comply).
	breached map[vmKey]bool
	// retry: when a task whose last run failed runs again, if sooner
	// than its schedule says.
	retry map[string]time.Time
}

// task is a job waiting for or holding a slot.
type task struct {
	key     string // kind/policy; a console job's adds its job ID
	kind    string
	policy  string // "" for verify
	cluster string // "" when the job uses no cluster
	trigger string
	// A job the console asked for: its ID (known before it starts, so
	// that the page can follow it), the user, and what it asked.
	jobID, by string
	// only are the VMs (UUIDs) to back up, of the policy's; onlyNames
	// their names. Both nil: every VM the policy selects.
	only, onlyNames []string
	full            bool
	restore         *restoreTask
	instant         *console.InstantVM // the instant restore to finish or cancel
	export          *exportTask
}

// group is the tasks that may not run at once: a policy's backups, the
// scheduled one and any the console asked for, share one.
func (t *task) group() string { return taskKey(t.kind, t.policy) }

func taskKey(kind, policy string) string { return kind + "/" + policy }

// New builds a daemon of cfg; Run starts it.
func New(cfg *Config, o Options) *Daemon {
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	d := &Daemon{o: o, clock: o.Clock, log: o.Logger, host: host, cfg: cfg, readers: make(chan struct{}, consoleReaders), live: newLive(),
		history: recent[[]engine.Job]{ttl: 5 * time.Second}, instant: recent[[]console.InstantVM]{ttl: 3 * time.Second},
		last: map[string]time.Time{}, running: map[string]*task{}, perCl: map[string]int{},
		wake: make(chan struct{}, 1), stats: newState(o.Clock.Now()), breached: map[vmKey]bool{}, retry: map[string]time.Time{}}
	d.repo = &repoPool{open: func(ctx context.Context, w bool) (*engine.Repository, error) {
		return o.OpenRepo(ctx, d.config(), w)
	}}
	return d
}

func (d *Daemon) config() *Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Reload replaces the configuration (SIGHUP). Jobs that run finish with
// the old one; the schedule of a policy that stays keeps its last run.
func (d *Daemon) Reload(cfg *Config) {
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	names := map[string]bool{}
	for _, p := range cfg.Policy {
		names[p.Name] = true
	}
	d.stats.keepPolicies(names)
	d.log.Info("configuration reloaded", "policies", len(cfg.Policy))
	d.poke()
}

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run loads the job history, then runs jobs as their times come until ctx
// ends. Then it lets running jobs go on for the configuration's
// ShutdownTimeout, cancels those still running, waits for them (a
// cancelled backup removes what it created on the cluster) and returns.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.loadHistory(ctx); err != nil {
		return err
	}
	jobsCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	d.log.Info("daemon started", "policies", len(d.config().Policy))
	for {
		now := d.clock.Now()
		d.schedule(now)
		d.dispatch(jobsCtx)
		d.checkRPO(now)
		select {
		case <-ctx.Done():
			return d.shutdown(cancelJobs)
		case <-d.clock.At(now.Add(d.nextWake(now))):
		case <-d.wake:
		}
	}
}

// shutdown waits for running jobs, cancelling them after the timeout.
func (d *Daemon) shutdown(cancelJobs context.CancelFunc) error {
	d.mu.Lock()
	n, timeout := len(d.running), d.cfg.ShutdownTimeout.Duration
	d.queue = nil
	d.mu.Unlock()
	d.log.Info("stopping", "running_jobs", n, "timeout", timeout)
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		d.log.Warn("jobs still running after the shutdown timeout: cancelling them (they clean up the cluster first)")
		cancelJobs()
		<-done
	}
	d.repo.closeIdle()
	d.log.Info("daemon stopped")
	return nil
}

// loadHistory learns each task's last run from the repository's job
// history, and each VM's newest restore point.
func (d *Daemon) loadHistory(ctx context.Context) error {
	r, err := d.o.OpenRepo(ctx, d.config(), false)
	if err != nil {
		return fmt.Errorf("open the repository: %w", err)
	}
	defer r.Close()
	jobs, err := r.Jobs(ctx)
	if err != nil {
		return fmt.Errorf("read the job history: %w", err)
	}
	d.mu.Lock()
	for _, j := range jobs {
		d.stats.job(j)
		// A run that failed or was cancelled (a restart) does not count:
		// the next daemon runs it again at once.
		if j.Result != engine.JobOK && j.Result != engine.JobPartial {
			continue
		}
		k := taskKey(j.Kind, j.Policy)
		if j.Start.After(d.last[k]) {
			d.last[k] = j.Start
		}
	}
	d.mu.Unlock()
	if err := d.stats.refreshReclaim(ctx, r); err != nil {
		d.log.Warn("gc reclaimable not computed", "err", err)
	}
	return d.stats.refreshRepo(ctx, r)
}

// schedule queues the tasks whose time has come.
func (d *Daemon) schedule(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.tasksLocked() {
		s := d.scheduleOf(t)
		last := d.last[t.key]
		if _, every := base(s).(interval); last.IsZero() && !every {
			// A calendar schedule that never ran starts counting now.
			d.last[t.key] = now
			continue
		}
		if d.dueLocked(t, s, now).After(now) {
			continue
		}
		if d.busyLocked(t.key) {
			continue // still running or waiting: this run is the same one
		}
		switch {
		case dueAt(s, last, now).After(now):
			t.trigger = TriggerRetry
		case last.IsZero():
			t.trigger = TriggerStart
		case s.Next(last).Before(d.startedAt()):
			t.trigger = TriggerMissed
		default:
			t.trigger = TriggerSchedule
		}
		d.queue = append(d.queue, t)
		d.stats.setQueue(len(d.queue), len(d.running))
		d.log.Info("job queued", "kind", t.kind, "policy", t.policy, "trigger", t.trigger)
	}
}

// dueLocked is when a task runs next: by its schedule, or sooner when its
// last run failed.
func (d *Daemon) dueLocked(t *task, s Schedule, now time.Time) time.Time {
	due := dueAt(s, d.last[t.key], now)
	if r, ok := d.retry[t.key]; ok && r.Before(due) {
		return fitNow(s, maxTime(r, now))
	}
	return due
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// retryDelay is how long after a failed run a task runs again: a quarter
// of its interval, between one and thirty minutes.
func retryDelay(s Schedule) time.Duration {
	return min(max(s.Interval()/4, time.Minute), 30*time.Minute)
}

// ended notes how a task's run ended: a failed run is retried after
// retryDelay.
func (d *Daemon) ended(key string, failed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.retry, key)
	if failed {
		for _, t := range d.tasksLocked() {
			if t.key == key {
				d.retry[key] = d.clock.Now().Add(retryDelay(d.scheduleOf(t)))
			}
		}
	}
}

// kindRunningLocked counts the running tasks of a kind.
func (d *Daemon) kindRunningLocked(kind string) int {
	n := 0
	for _, r := range d.running {
		if r.kind == kind {
			n++
		}
	}
	return n
}

// groupRunningLocked reports whether a task of the group runs.
func (d *Daemon) groupRunningLocked(group string) bool {
	for _, r := range d.running {
		if r.group() == group {
			return true
		}
	}
	return false
}

// busyLocked reports whether a task runs or waits in the queue.
func (d *Daemon) busyLocked(key string) bool {
	return d.pendingLocked(func(q *task) bool { return q.key == key })
}

// pendingLocked reports whether a task queued or running matches.
func (d *Daemon) pendingLocked(match func(*task) bool) bool {
	for _, r := range d.running {
		if match(r) {
			return true
		}
	}
	return slices.ContainsFunc(d.queue, match)
}

// startedAt is the daemon's start: a run that should have happened before
// it was missed.
func (d *Daemon) startedAt() time.Time { return d.stats.started }

// tasksLocked lists what the configuration schedules.
func (d *Daemon) tasksLocked() []*task {
	var out []*task
	for _, p := range d.cfg.Policy {
		out = append(out, &task{key: taskKey(KindBackup, p.Name), kind: KindBackup, policy: p.Name, cluster: p.Cluster})
		if p.SyncSchedule != nil {
			out = append(out, &task{key: taskKey(KindSync, p.Name), kind: KindSync, policy: p.Name})
		}
	}
	if d.cfg.Verify.EveryDays > 0 {
		out = append(out, &task{key: taskKey(KindVerify, ""), kind: KindVerify})
	}
	return out
}

func (d *Daemon) scheduleOf(t *task) Schedule {
	switch t.kind {
	case KindSync:
		return d.cfg.policy(t.policy).SyncSchedule
	case KindVerify:
		at, _ := parseClock(d.cfg.Verify.At)
		s, _ := parseSchedule("", fmt.Sprintf("%d %d * * *", at%60, at/60))
		return s
	}
	return d.cfg.policy(t.policy).Schedule
}

// nextWake is how long the loop may sleep: until the next task that is
// neither running nor queued is due, or a minute (RPO checks), whichever
// comes first.
func (d *Daemon) nextWake(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	wait := time.Minute
	for _, t := range d.tasksLocked() {
		if d.busyLocked(t.key) {
			continue // its end wakes the loop
		}
		if w := d.dueLocked(t, d.scheduleOf(t), now).Sub(now); w < wait {
			wait = w
		}
	}
	return max(wait, 10*time.Millisecond)
}

// dispatch starts queued tasks while the global and per-cluster limits
// allow, in queue order (a task whose cluster is full waits without
// holding up the others).
func (d *Daemon) dispatch(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 0; i < len(d.queue); {
		t := d.queue[i]
		// Exports (no cluster, long conversions) have a slot of their
		// own, so that they never hold up backups.
		if t.kind == KindExport && d.kindRunningLocked(KindExport) >= 1 ||
			t.kind != KindExport && len(d.running)-d.kindRunningLocked(KindExport) >= d.cfg.Concurrency {
			i++
			continue
		}
		if t.cluster != "" && d.perCl[t.cluster] >= d.clusterLimitLocked(t.cluster) {
			i++
			continue
		}
		if t.policy != "" && d.groupRunningLocked(t.group()) {
			i++
			continue
		}
		d.queue = slices.Delete(d.queue, i, i+1)
		d.running[t.key] = t
		if t.jobID == "" {
			// The schedule counts from the start, not from the queueing.
			d.last[t.key] = d.clock.Now()
		}
		if t.cluster != "" {
			d.perCl[t.cluster]++
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.runTask(ctx, t)
			d.mu.Lock()
			delete(d.running, t.key)
			if t.cluster != "" {
				d.perCl[t.cluster]--
			}
			d.mu.Unlock()
			d.poke()
		}()
	}
	d.stats.setQueue(len(d.queue), len(d.running))
}

func (d *Daemon) clusterLimitLocked(name string) int {
	for _, c := range d.cfg.Cluster {
		if c.Name == name {
			return c.Concurrency
		}
	}
	return 1
}

// runTask runs one task and records its jobs.
func (d *Daemon) runTask(ctx context.Context, t *task) {
	cfg := d.config()
	p := cfg.policy(t.policy)
	if t.policy != "" && p == nil {
		d.log.Warn("policy removed from the configuration before its job ran", "policy", t.policy)
		d.live.end(t.jobID)
		return
	}
	var ok bool
	switch t.kind {
	case KindBackup:
		ok = d.backupPolicy(ctx, cfg, p, t)
	case KindRestore:
		ok = d.restoreJob(ctx, cfg, t)
	case KindInstantFinish, KindInstantCancel:
		ok = d.instantJob(ctx, cfg, t)
	case KindExport:
		ok = d.exportJob(ctx, cfg, t)
	case KindSync:
		ok = d.syncPolicy(ctx, cfg, p, t.trigger, nil)
	case KindVerify:
		ok = d.verifyShare(ctx, cfg, t.trigger)
	}
	d.ended(t.key, !ok && ctx.Err() == nil)
}

// record stores a job in the history (with a fresh context: a cancelled
// job is history too), updates the metrics and fires the webhook on
// failure.
func (d *Daemon) record(ctx context.Context, r *engine.Repository, j engine.Job) engine.Job {
	j.Host = d.host
	if j.End.IsZero() {
		j.End = d.clock.Now()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var err error
	if r == nil {
		if r, err = d.o.OpenRepo(ctx, d.config(), false); err == nil {
			defer r.Close()
		}
	}
	if err == nil {
		var stored engine.Job
		if stored, err = r.AddJob(ctx, j); err == nil {
			j = stored
		}
	}
	log := d.log.With("job", j.ID, "kind", j.Kind, "policy", j.Policy)
	if err != nil {
		log.Error("job history not written", "err", err)
	}
	d.stats.job(j)
	d.history.drop()
	if j.Kind == KindRestore || j.Kind == KindInstantFinish || j.Kind == KindInstantCancel {
		d.instant.drop()
	}
	d.live.end(j.ID)
	lvl := slog.LevelInfo
	if j.Result != engine.JobOK {
		lvl = slog.LevelError
	}
	log.Log(ctx, lvl, "job ended", "result", j.Result, "error", j.Error, "vms", len(j.VMs),
		"seconds", j.End.Sub(j.Start).Seconds(), "bytes_read", j.BytesRead, "bytes_stored", j.BytesStored)
	if j.Result != engine.JobOK {
		d.notify(ctx, Event{Event: "job_failed", Job: &j})
	}
	if d.o.OnJob != nil {
		d.o.OnJob(j)
	}
	return j
}

// failed is a job that ended before doing anything.
func failed(kind, policy, trigger string, start time.Time, err error) engine.Job {
	res := engine.JobFailed
	if errors.Is(err, context.Canceled) {
		res = engine.JobCancelled
	}
	return engine.Job{Kind: kind, Policy: policy, Trigger: trigger, Start: start, Result: res, Error: err.Error()}
}
