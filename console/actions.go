package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
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
	// Cluster is the daemon's [[cluster]] (a Prism) to restore to;
	// default the VM's policy's.
	Cluster string `json:"cluster,omitempty"`
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
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/restore", c.a.Require(auth.ActionRestore, http.HandlerFunc(c.restore)))
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/lock", c.a.Require(auth.ActionLock, http.HandlerFunc(c.lock)))
	mux.Handle("POST /api/v1/vms/{vm}/points/{time}/forget", c.a.Require(auth.ActionForget, http.HandlerFunc(c.forget)))
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

func (c *Console) restore(w http.ResponseWriter, r *http.Request) {
	var req RestoreRequest
	if !readBody(w, r, &req) {
		return
	}
	vm, at := r.PathValue("vm"), r.PathValue("time")
	uuid, ok := c.sees(w, r, vm, auth.ActionRestore)
	if !ok {
		return
	}
	id, err := c.act.Restore(r.Context(), vm, uuid, at, req, user(r))
	c.answer(w, r, auth.ActionRestore, vm+"@"+at, id, err)
}

func (c *Console) lock(w http.ResponseWriter, r *http.Request) {
	var req LockRequest
	if !readBody(w, r, &req) {
		return
	}
	vm, at := r.PathValue("vm"), r.PathValue("time")
	uuid, ok := c.sees(w, r, vm, auth.ActionLock)
	if !ok {
		return
	}
	err := c.act.Lock(r.Context(), vm, uuid, at, req.Until, user(r))
	c.answer(w, r, auth.ActionLock, vm+"@"+at+" until "+req.Until.UTC().Format(time.RFC3339), "", err)
}

func (c *Console) forget(w http.ResponseWriter, r *http.Request) {
	vm, at := r.PathValue("vm"), r.PathValue("time")
	uuid, ok := c.sees(w, r, vm, auth.ActionForget)
	if !ok {
		return
	}
	err := c.act.Forget(r.Context(), vm, uuid, at, user(r))
	c.answer(w, r, auth.ActionForget, vm+"@"+at, "", err)
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
