package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// Actions are what the console's users start: backups, restores, and
// changes to restore points. Methods that queue a job return its ID, to
// follow it at /api/v1/jobs/{id}. by is the user, for the job history.
// Errors wrap ErrInvalid (a bad request: 400), ErrConflict (not now: 409)
// or fs.ErrNotExist (404); any other is the daemon's (500).
type Actions interface {
	// BackupNow queues a backup of one protected VM, in its policy.
	BackupNow(ctx context.Context, vm VMStatus, o BackupRequest, by string) (jobID string, err error)
	// Restore queues a restore of a restore point (vm, uuid, at as in
	// Source.PointFS) to a cluster.
	Restore(ctx context.Context, vm, uuid, at string, o RestoreRequest, by string) (jobID string, err error)
	// Lock keeps a restore point from retention and forget until a time;
	// a lock is only ever extended.
	Lock(ctx context.Context, vm, uuid, at string, until time.Time, by string) error
	// Forget removes a restore point (its data goes at the next gc);
	// a locked one is refused with ErrConflict.
	Forget(ctx context.Context, vm, uuid, at string, by string) error
	// Export queues the conversion of a restore point's disks (with an
	// OVF and a libvirt description) into files to download from the
	// job (JobFile).
	Export(ctx context.Context, vm, uuid, at string, o ExportRequest, by string) (jobID string, err error)
	// JobFile opens a file an ended job made (an export's), to serve;
	// fs.ErrNotExist when there is none of that name.
	JobFile(ctx context.Context, jobID, name string) (ReadSeekCloser, error)
}

// ReadSeekCloser is a file to serve.
type ReadSeekCloser interface {
	Read(p []byte) (int, error)
	Seek(offset int64, whence int) (int64, error)
	Close() error
}

// ExportRequest is the body of POST .../points/{time}/export: the
// options of `ahvfs export`.
type ExportRequest struct {
	// Format is qcow2 (default), vmdk, vhdx or raw.
	Format string `json:"format,omitempty"`
	// Disks are the indexes of the disks to export; default all.
	Disks []int `json:"disks,omitempty"`
}

var (
	// ErrInvalid is a request the action cannot take as it is.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict is an action that cannot happen now.
	ErrConflict = errors.New("conflict")
)

// Invalid is err as a request the action cannot take (errors.Is
// ErrInvalid), with err's message alone.
func Invalid(err error) error { return kindError{err, ErrInvalid} }

// Conflict is err as an action that cannot happen now (errors.Is
// ErrConflict), with err's message alone.
func Conflict(err error) error { return kindError{err, ErrConflict} }

type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// BackupRequest is the body of POST /api/v1/vms/{vm}/backup.
type BackupRequest struct {
	// Full asks for a full backup; by default the policy's level rule
	// decides (an incremental when a chain exists).
	Full bool `json:"full,omitempty"`
}

// RestoreRequest is the body of POST .../points/{time}/restore: the
// options of `ahvfs restore`.
type RestoreRequest struct {
	// Cluster is the daemon's [[cluster]] (a Prism, or an XCP-ng pool)
	// to restore to; default the VM's policy's.
	Cluster string `json:"cluster,omitempty"`
	// SR is the storage repository of the new disks on an XCP-ng pool
	// (name or UUID); default the SR each disk came from, else the
	// pool's default SR.
	SR string `json:"sr,omitempty"`
	// TargetCluster is the AHV cluster there (name or UUID); default
	// the VM's own when it is there, else the only one.
	TargetCluster string `json:"target_cluster,omitempty"`
	// Name is the new VM's name; default the original's.
	Name      string `json:"name,omitempty"`
	Container string `json:"container,omitempty"`
	// NetworkMap maps the original's network names or UUIDs to networks
	// of the target.
	NetworkMap map[string]string `json:"network_map,omitempty"`
	// Disks are the indexes of the disks to restore; default all.
	Disks   []int `json:"disks,omitempty"`
	PowerOn bool  `json:"power_on,omitempty"`
	// DataPath is how the disks are written: auto (iscsi), iscsi or
	// rest (image uploads), as `ahvfs restore --data-path`.
	DataPath string `json:"data_path,omitempty"`
	// Instant runs the VM at once from the repository over NFS (the
	// cluster's instant_nfs) while it hydrates; DataPath is then unused.
	Instant bool `json:"instant,omitempty"`
}

// LockRequest is the body of POST .../points/{time}/lock.
type LockRequest struct {
	Until time.Time `json:"until"`
}

// actionRoutes mounts the actions on mux.
func (c *Console) actionRoutes(mux *http.ServeMux) {
	mux.Handle("POST /api/v1/vms/{vm}/backup", c.a.Require(auth.ActionBackup, http.HandlerFunc(c.backupNow)))
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/restore", c.a.Require(auth.ActionRestore, pointAction(c, auth.ActionRestore, "", c.act.Restore)))
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/export", c.a.Require(auth.ActionRestore, pointAction(c, auth.ActionRestore, "export", c.act.Export)))
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/lock", c.a.Require(auth.ActionLock, pointAction(c, auth.ActionLock, "",
		func(ctx context.Context, vm, uuid, at string, req LockRequest, by string) (string, error) {
			return "", c.act.Lock(ctx, vm, uuid, at, req.Until, by)
		})))
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/forget", c.a.Require(auth.ActionForget, pointAction(c, auth.ActionForget, "",
		func(ctx context.Context, vm, uuid, at string, _ struct{}, by string) (string, error) {
			return "", c.act.Forget(ctx, vm, uuid, at, by)
		})))
	// An export holds whole disks (deleted data included): for users who
	// may restore, as disk-N.raw is.
	mux.Handle("GET /api/v1/jobs/{id}/files/{name}", c.a.Require(auth.ActionRestore, http.HandlerFunc(c.jobFile)))
}

// jobFile serves a file of a job the user sees (an export's disk or
// description), with ranges, to users who may restore.
func (c *Console) jobFile(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("name")
	jobs, ok := c.visibleJobs(w, r)
	if !ok {
		return
	}
	i := slices.IndexFunc(jobs, func(j Job) bool { return j.ID == id })
	if i < 0 || !slices.Contains(jobs[i].Files, name) {
		writeError(w, http.StatusNotFound, "no file "+name+" of job "+id)
		return
	}
	f, err := c.act.JobFile(r.Context(), id, name)
	if err != nil {
		writeFSError(w, name, err)
		return
	}
	defer f.Close()
	c.a.Record(r, auth.Event{Action: string(auth.ActionDownload), Target: "job " + id + " " + name, Result: auth.ResultOK})
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox")
	http.ServeContent(w, r, name, time.Time{}, f)
}

func (c *Console) backupNow(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if !readBody(w, r, &req) {
		return
	}
	name := r.PathValue("vm")
	if _, ok := c.sees(w, r, name, auth.ActionBackup); !ok {
		return
	}
	vms, _ := c.visible(r)
	var vm VMStatus
	for _, v := range vms {
		if v.Name == name {
			vm = v
		}
	}
	id, err := c.act.BackupNow(r.Context(), vm, req, user(r))
	c.answer(w, r, auth.ActionBackup, "vm "+name, id, err)
}

// pointAction is the handler of a POST on a restore point: its body
// decoded into a Req, the VM checked against the user's scopes, then do
// (which returns the job it queued, or ""), audited as action on what
// (a verb, or "") and the point.
func pointAction[Req any](c *Console, action auth.Action, what string,
	do func(ctx context.Context, vm, uuid, at string, req Req, by string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !readBody(w, r, &req) {
			return
		}
		vm, at := r.PathValue("vm"), r.PathValue("time")
		uuid, ok := c.sees(w, r, vm, action)
		if !ok {
			return
		}
		id, err := do(r.Context(), vm, uuid, at, req, user(r))
		c.answer(w, r, action, strings.TrimSpace(what+" "+vm+"@"+at), id, err)
	}
}

// answer audits an action's outcome and answers it: 202 with the job it
// queued, 200, or the error's status.
func (c *Console) answer(w http.ResponseWriter, r *http.Request, action auth.Action, target, jobID string, err error) {
	ev := auth.Event{Action: string(action), Target: target, Result: auth.ResultOK}
	if err != nil {
		ev.Result, ev.Detail = auth.ResultFailed, err.Error()
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict) || errors.Is(err, fs.ErrNotExist) {
			ev.Result = auth.ResultDenied
		}
	} else if jobID != "" {
		ev.Detail = "job " + jobID
	}
	c.a.Record(r, ev)
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, fs.ErrNotExist):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, string(action)+": "+err.Error())
	case jobID != "":
		writeJSON(w, http.StatusAccepted, map[string]string{"job": jobID})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
	}
}

// readBody decodes a JSON body (at most 64 KiB; none is the zero value)
// into v, or answers 400.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("request body: %v", err))
		return false
	}
	return true
}

// user is the name of the request's user.
func user(r *http.Request) string {
	u, _ := auth.UserFrom(r.Context())
	return u.Name
}
