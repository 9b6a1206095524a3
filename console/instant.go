package console

import (
	"context"
	"net/http"
	"slices"

	"github.com/ahvfs/ahvfs/console/auth"
)

// InstantVM is a VM restored instantly that still runs (or ran) from the
// repository over NFS, with its disks' hydration.
type InstantVM struct {
	// Cluster is the daemon's [[cluster]] (a Prism) it runs on.
	Cluster    string `json:"cluster"`
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	PowerState string `json:"power_state,omitempty"`
	Hydrated   bool   `json:"hydrated"`
	// SourceVM and SourceUUID are the VM of the restore point, when the
	// console restored it (a scoped user sees those of its VMs alone).
	SourceVM   string        `json:"source_vm,omitempty"`
	SourceUUID string        `json:"source_uuid,omitempty"`
	Disks      []InstantDisk `json:"disks"`
}

// InstantDisk is one disk's hydration.
type InstantDisk struct {
	Address        string `json:"address"`
	Size           int64  `json:"size"`
	RemainingBytes int64  `json:"remaining_bytes"`
	Status         string `json:"status"`
}

// Instant is the console's view of instant restores.
type Instant interface {
	// InstantVMs lists the VMs still reading from an external repository
	// on the clusters that allow instant restores.
	InstantVMs(ctx context.Context) ([]InstantVM, error)
	// EndInstant queues the end of an instant restore: finish (wait for
	// hydration, then remove the external repository and release the
	// restore point) or, with cancel, delete the VM instead.
	EndInstant(ctx context.Context, vm InstantVM, cancel bool, by string) (jobID string, err error)
}

func (c *Console) instantRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/instant", c.a.Require(auth.ActionView, http.HandlerFunc(c.instantList)))
	mux.Handle("POST /api/v1/instant/{cluster}/{name}/finish", c.a.Require(auth.ActionRestore, http.HandlerFunc(c.instantEnd)))
	mux.Handle("POST /api/v1/instant/{cluster}/{name}/cancel", c.a.Require(auth.ActionRestore, http.HandlerFunc(c.instantEnd)))
}

// visibleInstant is the instant restores the user sees: all for a user
// without scopes, else those the console made of VMs it sees.
func (c *Console) visibleInstant(w http.ResponseWriter, r *http.Request) ([]InstantVM, bool) {
	all, err := c.inst.InstantVMs(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the instant restores: "+err.Error())
		return nil, false
	}
	if u, _ := auth.UserFrom(r.Context()); len(u.Scopes) == 0 {
		return all, true
	}
	vms, err := c.visible(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the protected VMs: "+err.Error())
		return nil, false
	}
	return slices.DeleteFunc(all, func(iv InstantVM) bool {
		return iv.SourceUUID == "" || !slices.ContainsFunc(vms, func(v VMStatus) bool { return v.UUID == iv.SourceUUID })
	}), true
}

func (c *Console) instantList(w http.ResponseWriter, r *http.Request) {
	vms, ok := c.visibleInstant(w, r)
	if !ok {
		return
	}
	if vms == nil {
		vms = []InstantVM{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"vms": vms})
}

func (c *Console) instantEnd(w http.ResponseWriter, r *http.Request) {
	cluster, name := r.PathValue("cluster"), r.PathValue("name")
	cancel := r.URL.Path[len(r.URL.Path)-len("/cancel"):] == "/cancel"
	what := "finish instant restore"
	if cancel {
		what = "cancel instant restore"
	}
	vms, ok := c.visibleInstant(w, r)
	if !ok {
		return
	}
	i := slices.IndexFunc(vms, func(v InstantVM) bool { return v.Cluster == cluster && v.Name == name })
	if i < 0 {
		c.a.Record(r, auth.Event{Action: string(auth.ActionRestore), Target: what + " " + cluster + "/" + name, Result: auth.ResultDenied,
			Detail: "not an instant restore the user sees (or none of that name)"})
		writeError(w, http.StatusNotFound, "no instant restore "+name+" on "+cluster)
		return
	}
	id, err := c.inst.EndInstant(r.Context(), vms[i], cancel, user(r))
	c.answer(w, r, auth.ActionRestore, what+" "+cluster+"/"+name, id, err)
}
