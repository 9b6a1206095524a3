package clusterjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// Clusters gives the client of an API family: a sweep deletes each object
// through the API that created it (a v3 snapshot is not a v4 recovery
// point to every cluster). api is "" for objects that recorded none.
type Clusters func(ctx context.Context, api nutanix.APIVersion) (nutanix.Cluster, error)

// Only serves cl for its own API family (and for objects without one),
// and refuses the others with an error that says how to reach them.
func Only(cl nutanix.Cluster) Clusters {
	return func(_ context.Context, api nutanix.APIVersion) (nutanix.Cluster, error) {
		if api == "" || cl.API() == "" || Family(api) == Family(cl.API()) {
			return cl, nil
		}
		return nil, fmt.Errorf("created through API %s, this client uses %s: run `ahvfs cleanup --api %s`", Family(api), cl.API(), Family(api))
	}
}

// Report says what a sweep did. Deleted lists only deletions the cluster
// confirmed (the object read back as gone).
type Report struct {
	// Deleted cluster objects.
	Deleted []string `json:"deleted,omitempty"`
	// Released entries of objects kept on purpose: snapshots that are
	// references now, external repositories a VM reads or read from.
	Released []string `json:"released,omitempty"`
	// Finished overwrites: the original VM deleted, the restored one kept.
	Finished []string `json:"finished,omitempty"`
	// Unresolved entries: objects that may exist but could not be found
	// or deleted. Kept in the journal for the next sweep.
	Unresolved []string `json:"unresolved,omitempty"`
	// Errors reading the journal.
	Errors []string `json:"errors,omitempty"`
	// Running jobs, whose objects were left alone.
	Running []string `json:"running,omitempty"`
	// Elsewhere are dead jobs made through another Prism than the sweep's:
	// left alone for a sweep there (that Prism would not know their
	// objects, and an object not found counts as gone).
	Elsewhere []string `json:"elsewhere,omitempty"`
}

// Summary is a one-line description of the report.
func (r *Report) Summary() string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(len(r.Deleted), "deleted")
	add(len(r.Released), "kept (references, repositories of VMs)")
	add(len(r.Finished), "overwrites finished")
	add(len(r.Unresolved), "unresolved")
	add(len(r.Errors), "failed")
	add(len(r.Elsewhere), "jobs of another Prism left alone")
	if len(parts) == 0 {
		return "nothing to clean up"
	}
	return strings.Join(parts, ", ")
}

// SweepBefore is the sweep a job runs before it starts: what earlier jobs
// left is released; a release that fails is logged and the job goes on.
// Only the end of ctx is an error. The report is always returned.
func SweepBefore(ctx context.Context, j *Journal, clusters Clusters, logger *slog.Logger) (*Report, error) {
	rep, err := Sweep(ctx, j, clusters, logger)
	if err != nil {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if logger != nil {
			logger.Warn("cleanup of earlier jobs' leftovers failed; continuing", "err", err)
		}
	}
	return rep, nil
}

// Sweep releases the objects of every job in the journal whose process
// is gone (killed, crashed, or whose teardown failed), whatever job made
// them, and removes those jobs' entries. Jobs still running are left
// alone. Snapshots that a kept record names are never deleted. The
// returned error joins every failure; the report is always returned.
func Sweep(ctx context.Context, j *Journal, clusters Clusters, logger *slog.Logger) (*Report, error) {
	return sweep(ctx, j, prismSweeper(clusters), logger)
}

// sweeper is what one sweep releases objects through: Prism clients
// (Sweep) or an XAPI client (SweepXen).
type sweeper struct {
	// foreign says why a dead job is left alone for a sweep elsewhere
	// (made through another endpoint or on another hypervisor); "" when
	// its objects are this sweep's.
	foreign func(ctx context.Context, info jobInfo, objs []Object) string
	release func(ctx context.Context, o Object, protected map[string]bool) (outcome, error)
}

func prismSweeper(clusters Clusters) sweeper {
	return sweeper{
		foreign: func(ctx context.Context, info jobInfo, objs []Object) string {
			if info.Hypervisor == HypervisorXen {
				return fmt.Sprintf("made on the XCP-ng pool %s; run ahvfs cleanup --source %s", info.Prism, xenSource(info.Prism))
			}
			if where, ok := elsewhere(ctx, info, objs, clusters); ok {
				return fmt.Sprintf("made through %s; run ahvfs cleanup with --prism there", where)
			}
			return ""
		},
		release: func(ctx context.Context, o Object, protected map[string]bool) (outcome, error) {
			if o.API == APIXen {
				return unresolved, fmt.Errorf("%s is on an XCP-ng pool: run ahvfs cleanup --source xapi://HOST", o)
			}
			cl, err := clusters(ctx, o.API)
			if err != nil {
				return unresolved, fmt.Errorf("%s: %w", o, err)
			}
			return release(ctx, cl, o, protected)
		},
	}
}

func sweep(ctx context.Context, j *Journal, sw sweeper, logger *slog.Logger) (*Report, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rep := &Report{}
	ids, err := j.jobIDs()
	if err != nil {
		return rep, err
	}
	var protected map[string]bool
	var errs []error
	for _, id := range ids {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		d, ok, err := j.claim(id)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			errs = append(errs, err)
			continue
		}
		if !ok {
			if running(j.dir, id) {
				rep.Running = append(rep.Running, id)
			}
			continue
		}
		if protected == nil {
			if protected, err = j.keptSnapshots(); err != nil {
				d.release()
				rep.Errors = append(rep.Errors, err.Error())
				return rep, errors.Join(append(errs, err)...)
			}
		}
		if err := sweepJob(ctx, d, sw, protected, rep, logger); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// running reports whether a job directory that could not be claimed
// belongs to a live job (rather than one that finished meanwhile or died
// before taking its lock: an empty directory older than a minute is
// removed).
func running(dir, id string) bool {
	p := filepath.Join(dir, id)
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(p, lockFile)); err == nil {
		return true
	}
	if ents, _ := os.ReadDir(p); len(ents) == 0 && time.Since(st.ModTime()) > time.Minute {
		os.Remove(p)
	}
	return false
}

func sweepJob(ctx context.Context, d *jobDir, sw sweeper, protected map[string]bool, rep *Report, logger *slog.Logger) error {
	defer d.release()
	objs, err := d.objects()
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	errs := []error{}
	if err != nil {
		errs = append(errs, err)
	}
	info := d.info()
	if why := sw.foreign(ctx, info, objs); why != "" {
		rep.Elsewhere = append(rep.Elsewhere, fmt.Sprintf("%s job %s: %s", info.Job, d.id, why))
		logger.Warn("cleanup: a job made elsewhere left alone", "job", d.id, "where", info.Prism)
		return nil
	}
	sortForTeardown(objs)
	vmLeft := false
	for _, o := range objs {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		what := o.String()
		if info.Job != "" {
			what += " (left by " + info.Job + " job " + d.id + ")"
		}
		if holdsFor(o, vmLeft) {
			rep.Unresolved = append(rep.Unresolved, what+": kept while the job's VM remains")
			errs = append(errs, fmt.Errorf("%s: kept while the job's VM remains", o))
			continue
		}
		res, err := sw.release(ctx, o, protected)
		if err != nil {
			vmLeft = vmLeft || o.Kind == KindVM
			rep.Unresolved = append(rep.Unresolved, fmt.Sprintf("%s: %v", what, err))
			errs = append(errs, err)
			logger.Warn("cleanup: could not remove", "object", what, "err", err)
			continue
		}
		if err := d.remove(o); err != nil {
			errs = append(errs, err)
			continue
		}
		switch res {
		case deleted:
			rep.Deleted = append(rep.Deleted, what)
			logger.Info("cleanup: deleted", "object", what)
		case kept:
			rep.Released = append(rep.Released, what)
		case finished:
			rep.Finished = append(rep.Finished, what)
		}
	}
	if len(errs) == 0 {
		// Empty now: take the directory away (finish releases the lock).
		if err := d.finish(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Adopt records objs as the objects of a job of kind that is not running
// (so the next sweep releases them): used to move what an older ahvfs
// recorded elsewhere into the journal.
func (j *Journal) Adopt(kind string, objs []Object) error {
	if len(objs) == 0 {
		return nil
	}
	d, err := j.newJobDir(kind, jobInfo{})
	if err != nil {
		return err
	}
	defer d.release()
	for _, o := range objs {
		if err := d.put(o); err != nil {
			return err
		}
	}
	return nil
}

// Pending lists the objects every job in the journal still records,
// running or not (what a sweep would look at).
func (j *Journal) Pending() ([]Object, error) {
	ids, err := j.jobIDs()
	if err != nil {
		return nil, err
	}
	var out []Object
	var errs []error
	for _, id := range ids {
		objs, err := (&jobDir{id: id, dir: filepath.Join(j.dir, id), seal: j.seal}).objects()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		out = append(out, objs...)
	}
	return out, errors.Join(errs...)
}

// endpointOf is the Prism endpoint of cl ("" when it cannot say).
func endpointOf(cl nutanix.Cluster) string {
	if e, ok := cl.(interface{ Endpoint() string }); ok {
		return strings.TrimSuffix(e.Endpoint(), "/")
	}
	return ""
}

// elsewhere reports whether a dead job was made through another Prism
// than the one the sweep reaches its objects through, and which.
func elsewhere(ctx context.Context, info jobInfo, objs []Object, clusters Clusters) (string, bool) {
	if info.Prism == "" || len(objs) == 0 {
		return "", false
	}
	cl, err := clusters(ctx, objs[0].API)
	if err != nil {
		return "", false // reported per object
	}
	here := endpointOf(cl)
	return info.Prism, here != "" && !samePrism(ctx, here, info.Prism)
}

// samePrism reports whether two endpoints (URLs) reach the same Prism: the
// same host and port, or hosts that resolve to a common address on the
// same port (an IP address and its DNS name).
func samePrism(ctx context.Context, a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil || ua.Port() != ub.Port() {
		return false
	}
	if strings.EqualFold(ua.Hostname(), ub.Hostname()) {
		return true
	}
	addrs := func(h string) []string {
		out, err := net.DefaultResolver.LookupHost(ctx, h)
		if err != nil {
			return nil
		}
		return out
	}
	ab := addrs(ub.Hostname())
	return slices.ContainsFunc(addrs(ua.Hostname()), func(x string) bool { return slices.Contains(ab, x) })
}
