package clusterjob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
)

// JobOptions configure a Job. Zero values mean the documented default.
type JobOptions struct {
	// CleanupTimeout bounds the teardown of what the job created, run
	// with a context of its own so that it also works after SIGINT
	// cancelled the job's (default 2 minutes).
	CleanupTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default discard).
	Logger *slog.Logger
}

// Job is one job's use of the cluster: every temporary object it creates
// through the Job is journaled first and torn down by Close, or, if the
// process dies, by the next Sweep. Methods are safe for concurrent use.
type Job struct {
	j   *Journal
	d   *jobDir
	cl  nutanix.Cluster // nil in a job on an XCP-ng pool
	xc  *xapi.Client    // nil in a job on an AHV cluster
	o   JobOptions
	log *slog.Logger

	mu          sync.Mutex
	live        map[string]Object      // kind/name → object not yet released
	attachments map[string]*Attachment // open sessions, closed by Close
	closed      bool
}

// Begin starts a job of kind ("backup", "restore", ...) that creates its
// objects through cl. The caller must Close it.
func (j *Journal) Begin(kind string, cl nutanix.Cluster, o JobOptions) (*Job, error) {
	o = o.withDefaults()
	d, err := j.newJobDir(kind, jobInfo{Prism: endpointOf(cl)})
	if err != nil {
		return nil, err
	}
	return &Job{j: j, d: d, cl: cl, o: o, log: o.Logger, live: map[string]Object{}, attachments: map[string]*Attachment{}}, nil
}

// BeginXen starts a job of kind that creates its objects on an XCP-ng /
// XenServer pool through xc. The caller must Close it.
func (j *Journal) BeginXen(ctx context.Context, kind string, xc *xapi.Client, o JobOptions) (*Job, error) {
	o = o.withDefaults()
	pool, err := xc.PoolUUID(ctx)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	d, err := j.newJobDir(kind, jobInfo{Prism: xc.Endpoint(), Hypervisor: HypervisorXen, Pool: pool})
	if err != nil {
		return nil, err
	}
	return &Job{j: j, d: d, xc: xc, o: o, log: o.Logger, live: map[string]Object{}, attachments: map[string]*Attachment{}}, nil
}

func (o JobOptions) withDefaults() JobOptions {
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Run begins a job, calls fn and closes the job whatever fn returns: the
// objects fn left are torn down. fn's error comes first; a teardown that
// left objects behind is joined to it.
func (j *Journal) Run(ctx context.Context, kind string, cl nutanix.Cluster, o JobOptions, fn func(*Job) error) error {
	jb, err := j.Begin(kind, cl, o)
	if err != nil {
		return err
	}
	err = fn(jb)
	if cerr := jb.Close(ctx); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// Cluster is the Prism client the job creates its objects through (nil
// in a job begun with BeginXen).
func (jb *Job) Cluster() nutanix.Cluster { return jb.cl }

// Xen is the XAPI client of a job begun with BeginXen (else nil).
func (jb *Job) Xen() *xapi.Client { return jb.xc }

// ID names the job in the journal.
func (jb *Job) ID() string { return jb.d.id }

// CleanupContext is a context for deleting objects after ctx may have
// been cancelled, bounded by JobOptions.CleanupTimeout.
func (jb *Job) CleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), jb.o.CleanupTimeout)
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Name makes the unique name of an object the job creates:
// "ahvfs-[<prefix>-]<label>-<time>-<random>", label reduced to safe
// characters and 40 bytes.
func (jb *Job) Name(prefix, label string) string {
	var b [4]byte
	rand.Read(b[:])
	label = nameUnsafe.ReplaceAllString(label, "_")
	if len(label) > 40 {
		label = label[:40]
	}
	p := "ahvfs-"
	if prefix != "" {
		p += prefix + "-"
	}
	return p + label + "-" + jb.o.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func key(o Object) string { return string(o.Kind) + "/" + o.Name }

// Record journals o (durably) before the caller creates it, and again
// whenever the caller learns more of it (its ID).
func (jb *Job) Record(o Object) error {
	if o.Created.IsZero() {
		o.Created = jb.o.Now().UTC()
	}
	if o.API == "" && jb.xc != nil {
		o.API = APIXen
	} else if o.API == "" {
		o.API = jb.cl.API()
	}
	if r := o.Replaces; r != nil {
		// The job's copy shares nothing with the caller's object.
		c := *r
		c.VDIs, c.References, c.KeptBy = slices.Clone(r.VDIs), slices.Clone(r.References), slices.Clone(r.KeptBy)
		o.Replaces = &c
	}
	if err := jb.d.put(o); err != nil {
		return err
	}
	jb.mu.Lock()
	jb.live[key(o)] = o
	jb.mu.Unlock()
	return nil
}

// Forget drops o from the journal without deleting it: it is the job's
// result (a restored VM) or now kept on purpose (Keep).
func (jb *Job) Forget(o Object) error {
	if err := jb.d.remove(o); err != nil {
		return err
	}
	jb.mu.Lock()
	delete(jb.live, key(o))
	jb.mu.Unlock()
	return nil
}

// Release deletes o from the cluster, checks it is gone and drops it from
// the journal. On failure the entry stays in the journal for the next
// sweep (Close does not try again) and the error says what is left.
func (jb *Job) Release(ctx context.Context, o Object) error {
	jb.mu.Lock()
	if cur, ok := jb.live[key(o)]; ok {
		// The newest record (ID, replacement state), with the tasks the
		// caller knows of: a task whose journal write failed is in o.
		tasks := o.Tasks
		o = cur
		for _, t := range tasks {
			if !slices.Contains(o.Tasks, t) {
				o.Tasks = append(o.Tasks, t)
			}
		}
	}
	jb.mu.Unlock()
	var protected map[string]bool
	if o.Kind == KindSnapshot {
		// A snapshot handed over to a kept record (Keep) is never deleted,
		// even if the job could not forget it.
		var err error
		if protected, err = jb.j.keptSnapshots(); err != nil {
			return fmt.Errorf("release %s: %w", o, err)
		}
	}
	var res outcome
	var err error
	if o.API == APIXen {
		res, err = releaseXen(ctx, jb.j, jb.xc, o, protected)
	} else {
		res, err = release(ctx, jb.cl, o, protected)
	}
	if err != nil {
		// Left to the sweep: the job's Close does not send the same
		// requests again.
		jb.mu.Lock()
		delete(jb.live, key(o))
		jb.mu.Unlock()
		return fmt.Errorf("%w (kept in the journal: the next job or `ahvfs cleanup` retries)", err)
	}
	if res == deleted || res == finished {
		jb.log.Debug("released", "object", o.String())
	}
	return jb.Forget(o)
}

// created finishes a create call: on success the object is journaled with
// its ID; on failure, whatever the call may have left is released now
// (found by name), and what cannot be released stays journaled.
func (jb *Job) created(ctx context.Context, o Object, id string, err error) (Object, error) {
	if err == nil {
		o.ID = id
		if rerr := jb.Record(o); rerr != nil {
			cctx, cancel := jb.CleanupContext(ctx)
			defer cancel()
			if cerr := jb.Release(cctx, o); cerr != nil {
				jb.log.Warn("release after a journal failure", "object", o.String(), "err", cerr)
			}
			return o, rerr
		}
		return o, nil
	}
	o.ID = id // a failed call may still name what it made
	if notCreated(err) && id == "" {
		jb.Forget(o)
		return o, err
	}
	cctx, cancel := jb.CleanupContext(ctx)
	defer cancel()
	if cerr := jb.Release(cctx, o); cerr != nil {
		jb.log.Warn("release after a failed create", "object", o.String(), "err", cerr)
	}
	return o, err
}

// Close releases, newest kind first (VMs, attachments, volume groups,
// images, snapshots), every object the job still holds, with a context of
// its own, then ends the job. What could not be released stays in the
// journal for the next Sweep, and the error lists it.
func (jb *Job) Close(ctx context.Context) error {
	jb.mu.Lock()
	if jb.closed {
		jb.mu.Unlock()
		return nil
	}
	jb.closed = true
	atts := make([]*Attachment, 0, len(jb.attachments))
	for _, a := range jb.attachments {
		atts = append(atts, a)
	}
	jb.mu.Unlock()
	cctx, cancel := jb.CleanupContext(ctx)
	defer cancel()
	var errs []error
	for _, a := range atts {
		if err := a.Close(cctx); err != nil {
			errs = append(errs, err)
		}
	}
	jb.mu.Lock()
	objs := make([]Object, 0, len(jb.live))
	for _, o := range jb.live {
		objs = append(objs, o)
	}
	jb.mu.Unlock()
	sortForTeardown(objs)
	vmLeft := false
	for _, o := range objs {
		if holdsFor(o, vmLeft) {
			errs = append(errs, fmt.Errorf("%s: kept in the journal while the job's VM remains", o))
			continue
		}
		jb.log.Info("removing what the job created", "object", o.String())
		if err := jb.Release(cctx, o); err != nil {
			vmLeft = vmLeft || o.Kind == KindVM
			errs = append(errs, err)
		}
	}
	if err := jb.d.finish(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sortForTeardown orders objects as a teardown deletes them: by kind,
// newest first within a kind.
func sortForTeardown(objs []Object) {
	sort.SliceStable(objs, func(a, b int) bool {
		if objs[a].Kind.order() != objs[b].Kind.order() {
			return objs[a].Kind.order() < objs[b].Kind.order()
		}
		return objs[a].Created.After(objs[b].Created)
	})
}
