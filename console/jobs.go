package console

import (
	"net/http"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// The results of a job that has not ended (Job.Result).
const (
	ResultQueued  = "queued"
	ResultRunning = "running"
)

// Job is one job of the daemon: of its history, or running or queued now
// (Result ResultRunning, ResultQueued; then its VMs carry their progress
// and Log the job's lines so far).
type Job struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Policy  string    `json:"policy,omitempty"`
	Trigger string    `json:"trigger,omitempty"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end,omitzero"`
	Result  string    `json:"result"`
	// Error and Notes are the job's own; a user with scopes sees neither
	// (they may name VMs outside them), only its VMs' lines.
	Error string   `json:"error,omitempty"`
	Notes []string `json:"notes,omitempty"`
	VMs   []JobVM  `json:"vms,omitempty"`
	// Log is what a running job has logged (the newest lines); a user
	// with scopes sees the lines about its VMs alone.
	Log []LogLine `json:"log,omitempty"`
	// Files are what an ended job made to download (an export's), at
	// /api/v1/jobs/{id}/files/{name}.
	Files []string `json:"files,omitempty"`
}

// running reports whether j has not ended.
func (j Job) running() bool { return j.Result == ResultRunning || j.Result == ResultQueued }

// JobVM is one VM's part of a job.
type JobVM struct {
	VM           string  `json:"vm"`
	UUID         string  `json:"uuid,omitempty"`
	Result       string  `json:"result"`
	RestorePoint string  `json:"restore_point,omitempty"`
	Level        string  `json:"level,omitempty"`
	BytesRead    int64   `json:"bytes_read,omitempty"`
	BytesStored  int64   `json:"bytes_stored,omitempty"`
	Seconds      float64 `json:"seconds,omitempty"`
	Error        string  `json:"error,omitempty"`
	// DoneBytes of TotalBytes is the progress of a running job's VM
	// (its disks' bytes covered: read, zero or unchanged).
	DoneBytes  int64 `json:"done_bytes,omitempty"`
	TotalBytes int64 `json:"total_bytes,omitempty"`
}

// LogLine is one line a running job logged.
type LogLine struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	// VMUUID is the VM the line is about, when it is about one.
	VMUUID string `json:"vm_uuid,omitempty"`
}

// jobs serves the job history with the running and queued jobs, newest
// first. A user with scopes sees the jobs of VMs it sees, each with those
// VMs' lines alone.
func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	out, ok := c.visibleJobs(w, r)
	if !ok {
		return
	}
	slices.SortFunc(out, func(a, b Job) int {
		if a.running() != b.running() {
			if a.running() {
				return -1
			}
			return 1
		}
		return b.Start.Compare(a.Start)
	})
	if out == nil {
		out = []Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": out})
}

// job serves one job, running or ended: the page follows a job it started
// by polling it.
func (c *Console) job(w http.ResponseWriter, r *http.Request) {
	all, ok := c.visibleJobs(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	for _, j := range all {
		if j.ID == id {
			writeJSON(w, http.StatusOK, j)
			return
		}
	}
	writeError(w, http.StatusNotFound, "no job "+id)
}

// visibleJobs is every job the request's user sees, cut to its VMs.
func (c *Console) visibleJobs(w http.ResponseWriter, r *http.Request) ([]Job, bool) {
	u, _ := auth.UserFrom(r.Context())
	all, err := c.src.Jobs(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read the job history: "+err.Error())
		return nil, false
	}
	if !auth.Allowed(u.Role, auth.ActionRestore) {
		// An export's files are whole disks: not for them.
		for i := range all {
			all[i].Files = nil
		}
	}
	if len(u.Scopes) == 0 {
		return all, true
	}
	vms, err := c.visible(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the protected VMs: "+err.Error())
		return nil, false
	}
	// By UUID: another VM may have had, or have elsewhere, the name.
	seen := map[string]bool{}
	for _, v := range vms {
		if v.UUID != "" {
			seen[v.UUID] = true
		}
	}
	var out []Job
	for _, j := range all {
		j.VMs = slices.DeleteFunc(slices.Clone(j.VMs), func(v JobVM) bool { return v.UUID == "" || !seen[v.UUID] })
		if len(j.VMs) == 0 {
			continue
		}
		j.Error, j.Notes = "", nil
		j.Log = slices.DeleteFunc(slices.Clone(j.Log), func(l LogLine) bool { return l.VMUUID == "" || !seen[l.VMUUID] })
		out = append(out, j)
	}
	return out, true
}
