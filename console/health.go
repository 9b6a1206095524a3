package console

import (
	"net/http"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

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
