package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
)

// liveLogLines is how many of a running job's newest log lines the
// console shows.
const liveLogLines = 200

// live holds the jobs queued or running now, for the console: each VM's
// progress and the job's log so far. A job leaves it when its record is
// in the history.
type live struct {
	mu   sync.Mutex
	jobs map[string]*liveJob
}

type liveJob struct {
	job     engine.Job // ID, Kind, Policy, Trigger, Start, Notes
	running bool
	vms     []*liveVM
	log     []console.LogLine
}

// liveVM is one VM of a running job; its disks add up to its progress.
type liveVM struct {
	name, uuid  string
	total, done atomic.Int64
}

func newLive() *live { return &live{jobs: map[string]*liveJob{}} }

// add shows a job as queued.
func (l *live) add(j engine.Job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jobs[j.ID] = &liveJob{job: j}
}

// start shows a job as running (adding it if it was not queued).
func (l *live) start(j engine.Job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lj := l.jobs[j.ID]
	if lj == nil {
		lj = &liveJob{}
		l.jobs[j.ID] = lj
	}
	lj.job, lj.running = j, true
}

// end removes a job (its record is in the history now).
func (l *live) end(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.jobs, id)
}

// vm returns the progress of a VM of a job, adding it.
func (l *live) vm(id, name, uuid string) *liveVM {
	l.mu.Lock()
	defer l.mu.Unlock()
	lj := l.jobs[id]
	if lj == nil {
		return &liveVM{} // the job ended: nobody looks
	}
	for _, v := range lj.vms {
		if v.name == name {
			return v
		}
	}
	v := &liveVM{name: name, uuid: uuid}
	lj.vms = append(lj.vms, v)
	return v
}

// disk announces a disk of size bytes and returns the function that
// reports the bytes covered so far.
func (v *liveVM) disk(size int64) func(int64) {
	v.total.Add(size)
	var covered atomic.Int64
	return func(done int64) {
		v.done.Add(done - covered.Swap(done))
	}
}

// log appends a line to a running job's log, keeping the newest.
func (l *live) log(id string, line console.LogLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lj := l.jobs[id]
	if lj == nil {
		return
	}
	lj.log = append(lj.log, line)
	if n := len(lj.log) - liveLogLines; n > 0 {
		lj.log = slices.Delete(lj.log, 0, n)
	}
}

// snapshot is the jobs queued or running, as the console shows them.
func (l *live) snapshot() []console.Job {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]console.Job, 0, len(l.jobs))
	for _, lj := range l.jobs {
		j := lj.job
		cj := console.Job{ID: j.ID, Kind: j.Kind, Policy: j.Policy, Trigger: j.Trigger, Start: j.Start, Result: console.ResultQueued,
			Notes: slices.Clone(j.Notes), Log: slices.Clone(lj.log)}
		if lj.running {
			cj.Result = console.ResultRunning
		}
		for _, v := range j.VMs { // named from the start (a console job)
			cj.VMs = append(cj.VMs, console.JobVM{VM: v.VM, UUID: v.UUID, Result: cj.Result})
		}
		for _, v := range lj.vms {
			jv := console.JobVM{VM: v.name, UUID: v.uuid, Result: cj.Result, DoneBytes: v.done.Load(), TotalBytes: v.total.Load()}
			if i := slices.IndexFunc(cj.VMs, func(x console.JobVM) bool { return x.VM == v.name }); i >= 0 {
				jv.UUID = cmpOr(jv.UUID, cj.VMs[i].UUID)
				cj.VMs[i] = jv
			} else {
				cj.VMs = append(cj.VMs, jv)
			}
		}
		out = append(out, cj)
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// jobLog is a slog.Handler that copies a running job's lines (Info and
// above) into its live log, then passes them on.
type jobLog struct {
	next slog.Handler
	l    *live
	id   string
	// uuid finds the UUID of the VM a line names (attribute "vm").
	uuid  func(vm string) string
	attrs []slog.Attr
}

// logger is log with the job's lines copied to its live log.
func (l *live) logger(log *slog.Logger, id string, uuid func(string) string) *slog.Logger {
	return slog.New(jobLog{next: log.Handler(), l: l, id: id, uuid: uuid})
}

func (h jobLog) Enabled(ctx context.Context, lvl slog.Level) bool {
	return lvl >= slog.LevelInfo || h.next.Enabled(ctx, lvl)
}

func (h jobLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		line := console.LogLine{Time: r.Time, Level: r.Level.String(), Msg: r.Message}
		var b strings.Builder
		each := func(a slog.Attr) bool {
			switch a.Key {
			case "job", "kind", "policy":
				return true // the job's own, shown beside it
			case "vm":
				line.VMUUID = h.uuid(a.Value.String())
			case "uuid":
				line.VMUUID = a.Value.String()
			}
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		}
		for _, a := range h.attrs {
			each(a)
		}
		r.Attrs(each)
		line.Msg += b.String()
		h.l.log(h.id, line)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h jobLog) WithAttrs(as []slog.Attr) slog.Handler {
	h.next = h.next.WithAttrs(as)
	h.attrs = append(slices.Clip(h.attrs), as...)
	return h
}

func (h jobLog) WithGroup(name string) slog.Handler {
	h.next = h.next.WithGroup(name)
	return h
}

// recent keeps what a load returned for a while: the console's pages poll
// (a running job's every second, the instant restores every few), and
// each load opens the repository or logs in to every Prism. A new job in
// the history drops it (drop).
type recent[T any] struct {
	ttl  time.Duration
	mu   sync.Mutex
	at   time.Time
	val  T
	have bool
}

func (c *recent[T]) get(load func() (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.have && time.Since(c.at) < c.ttl {
		return c.val, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	c.val, c.at, c.have = v, time.Now(), true
	return v, nil
}

func (c *recent[T]) drop() {
	c.mu.Lock()
	c.have = false
	c.mu.Unlock()
}
