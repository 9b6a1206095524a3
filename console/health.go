package console

import (
	"net/http"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// Job is one job of the daemon's history, as the console shows it.
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
}

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
}

// Health is the repository at a glance.
type Health struct {
	Reachable     bool      `json:"reachable"`
	RestorePoints int       `json:"restore_points"`
	LogicalBytes  int64     `json:"logical_bytes"`
	StoredBytes   int64     `json:"stored_bytes"`
	DedupRatio    float64   `json:"dedup_ratio"`
	Compression   float64   `json:"compression_ratio"`
	Reclaimable   int64     `json:"reclaimable_bytes"`
	LastVerify    time.Time `json:"last_verify,omitzero"`
	VerifyErrors  int       `json:"verify_errors"`
}

// jobs serves the job history, newest first. A user with scopes sees the
// jobs of VMs it sees, each with those VMs' lines alone.
func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	u, _ := auth.UserFrom(r.Context())
	all, err := c.src.Jobs(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read the job history: "+err.Error())
		return
	}
	var out []Job
	if len(u.Scopes) > 0 {
		vms, err := c.visible(r)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "list the protected VMs: "+err.Error())
			return
		}
		// By UUID: another VM may have had, or have elsewhere, the name.
		seen := map[string]bool{}
		for _, v := range vms {
			if v.UUID != "" {
				seen[v.UUID] = true
			}
		}
		for _, j := range all {
			j.VMs = slices.DeleteFunc(slices.Clone(j.VMs), func(v JobVM) bool { return v.UUID == "" || !seen[v.UUID] })
			if len(j.VMs) > 0 {
				j.Error, j.Notes = "", nil
				out = append(out, j)
			}
		}
	} else {
		out = all
	}
	slices.SortFunc(out, func(a, b Job) int { return b.Start.Compare(a.Start) })
	if out == nil {
		out = []Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": out})
}

// health serves the repository's figures to users who see every VM: they
// sum every tenant's data.
func (c *Console) health(w http.ResponseWriter, r *http.Request) {
	if u, _ := auth.UserFrom(r.Context()); len(u.Scopes) > 0 {
		c.a.Record(r, auth.Event{Action: string(auth.ActionView), Target: "repository", Result: auth.ResultDenied,
			Detail: "the repository's figures are for users without scopes"})
		writeError(w, http.StatusForbidden, "forbidden: the repository's figures sum every VM's; they are for users who see every VM")
		return
	}
	h, err := c.src.Health(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "repository: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, h)
}
