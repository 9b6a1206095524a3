package console

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// Source is what the console shows. Its methods are safe for concurrent
// use.
type Source interface {
	// VMs returns every VM the daemon's policies protect.
	VMs(ctx context.Context) ([]VMStatus, error)
	// Points returns the restore points of one VM (by name), any order;
	// none for a VM the repository has no point of.
	Points(ctx context.Context, vm string) ([]Point, error)
	// PointFS opens the tree of one restore point (VM, engine.FormatTime
	// of its time): vm.json, disk-N.raw, disk-N/part-M/ with the guest's
	// files (package rptree). uuid, when not "", is the VM UUID the point
	// must carry. Call release when done with it; an unknown point is an
	// error wrapping fs.ErrNotExist.
	PointFS(ctx context.Context, vm, uuid, time string) (fsys fs.FS, release func(), err error)
	// Jobs returns the job history, any order.
	Jobs(ctx context.Context) ([]Job, error)
	// Health returns the repository's figures as last computed.
	Health(ctx context.Context) (Health, error)
}

// VMStatus is one protected VM on the dashboard.
type VMStatus struct {
	Name string `json:"name"`
	UUID string `json:"uuid,omitempty"`
	// Categories are the VM's Prism categories as last listed (scopes
	// by category match only what is known).
	Categories map[string][]string `json:"categories,omitempty"`
	Policy     string              `json:"policy"`
	// LastSuccess is the end of its last successful backup; LastResult
	// that of its last backup, "ok" or "failed" ("" before any).
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastResult  string    `json:"last_result,omitempty"`
	// Newest is the time of its newest restore point; RPOCompliant
	// whether that is within its policy's RPO.
	Newest       time.Time `json:"newest,omitzero"`
	RPOCompliant bool      `json:"rpo_compliant"`
	// DRTarget is where its policy replicates (none: ""); Synced the
	// newest restore point time known to be there, DRLagSeconds how long
	// its newest point has waited to get there (0: in sync).
	DRTarget     string    `json:"dr_target,omitempty"`
	Synced       time.Time `json:"synced,omitzero"`
	DRLagSeconds float64   `json:"dr_lag_seconds,omitempty"`
}

// failing reports whether the dashboard lists v first: its last backup
// failed or it is outside its RPO.
func (v VMStatus) failing() bool { return v.LastResult == "failed" || !v.RPOCompliant }

// Point is one restore point of a VM.
type Point struct {
	Name        string    `json:"name"` // VM@TIME
	Time        time.Time `json:"time"`
	Level       string    `json:"level"`
	Consistency string    `json:"consistency,omitempty"`
	// VMUUID is the UUID of the VM the point was taken of.
	VMUUID string `json:"vm_uuid,omitempty"`
	// Size is the disks' size; NewBytes what the point stored that was
	// not in the repository before.
	Size        int64     `json:"size"`
	NewBytes    int64     `json:"new_bytes"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	// Replicated says whether the point has reached the VM's DR target
	// (by the daemon's last sync); nil when its policy does not sync.
	Replicated *bool `json:"replicated,omitempty"`
}

// Console serves the API and the pages.
type Console struct {
	a    *auth.Authenticator
	src  Source
	act  Actions
	inst Instant
}

// New returns the console of src, whose users act through act and see
// and end instant restores through inst, guarded by a.
func New(a *auth.Authenticator, src Source, act Actions, inst Instant) *Console {
	return &Console{a: a, src: src, act: act, inst: inst}
}

// Routes mounts the API on mux.
func (c *Console) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/login", c.a.Login)
	mux.HandleFunc("POST /api/v1/logout", c.a.Logout)
	mux.HandleFunc("GET /api/v1/me", c.a.Me)
	mux.Handle("GET /api/v1/vms", c.a.Require(auth.ActionView, http.HandlerFunc(c.vms)))
	mux.Handle("GET /api/v1/vms/{vm}/points", c.a.Require(auth.ActionView, http.HandlerFunc(c.points)))
	mux.Handle("GET /api/v1/jobs", c.a.Require(auth.ActionView, http.HandlerFunc(c.jobs)))
	mux.Handle("GET /api/v1/jobs/{id}", c.a.Require(auth.ActionView, http.HandlerFunc(c.job)))
	mux.Handle("GET /api/v1/repository", c.a.Require(auth.ActionView, http.HandlerFunc(c.health)))
	mux.Handle("GET /api/v1/vms/{vm}/points/{time}/files/{path...}", c.a.Require(auth.ActionBrowse, http.HandlerFunc(c.files)))
	mux.Handle("GET /api/v1/vms/{vm}/points/{time}/download/{path...}", c.a.Require(auth.ActionDownload, http.HandlerFunc(c.download)))
	c.actionRoutes(mux)
	c.instantRoutes(mux)
	c.pageRoutes(mux)
}

// Unscoped wraps next (the daemon's /metrics) so that it serves users
// who see every VM alone, by session or API token: its series name every
// VM.
func (c *Console) Unscoped(next http.Handler) http.Handler {
	return c.a.Require(auth.ActionView, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, _ := auth.UserFrom(r.Context()); len(u.Scopes) > 0 {
			c.a.Record(r, auth.Event{Action: string(auth.ActionView), Target: r.URL.Path, Result: auth.ResultDenied,
				Detail: "for users without scopes"})
			writeError(w, http.StatusForbidden, "forbidden: this names every VM; it is for users who see every VM")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// visible is the VMs of src the request's user sees.
func (c *Console) visible(r *http.Request) ([]VMStatus, error) {
	u, ok := auth.UserFrom(r.Context())
	if !ok {
		return nil, nil // Require let no one in without a user
	}
	all, err := c.src.VMs(r.Context())
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(v VMStatus) bool {
		return !u.Sees(auth.VMRef{Name: v.Name, UUID: v.UUID, Categories: v.Categories})
	}), nil
}

// vms serves the dashboard: the VMs the user sees, failing ones first,
// then by name.
func (c *Console) vms(w http.ResponseWriter, r *http.Request) {
	vms, err := c.visible(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the protected VMs: "+err.Error())
		return
	}
	slices.SortFunc(vms, func(a, b VMStatus) int {
		if a.failing() != b.failing() {
			if a.failing() {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	writeJSON(w, http.StatusOK, map[string]any{"vms": vms})
}

// points serves a VM's restore points, newest first. A VM the user does
// not see is not found, and the attempt is audited.
func (c *Console) points(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("vm")
	uuid, ok := c.sees(w, r, name, auth.ActionView)
	if !ok {
		return
	}
	pts, err := c.src.Points(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the restore points of "+name+": "+err.Error())
		return
	}
	if uuid != "" {
		pts = slices.DeleteFunc(pts, func(p Point) bool { return p.VMUUID != uuid })
	}
	slices.SortFunc(pts, func(a, b Point) int { return b.Time.Compare(a.Time) })
	writeJSON(w, http.StatusOK, map[string]any{"vm": name, "points": pts})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
