package nutanix_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
)

// TestDeleteChecksA404: a DELETE answered 404, or whose task cannot be
// found, is reported as done only when the object reads back as gone.
func TestDeleteChecksA404(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"entities":[]}`) }
	mux.HandleFunc("POST /api/nutanix/v3/clusters/list", ok)
	mux.HandleFunc("DELETE /api/nutanix/v3/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "answers-404" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":{"state":"DELETE_PENDING","execution_context":{"task_uuid":"lost-task"}}}`)
	})
	mux.HandleFunc("GET /api/nutanix/v3/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "gone" {
			http.NotFound(w, r)
			return
		}
		ok(w, r)
	})
	// everything else, the task included, is not found
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	c := newClient(t, o)
	ctx := ctxT(t)
	for id, want := range map[string]string{
		"answers-404": "the DELETE answered 404, yet it still exists",
		"task-lost":   "its task cannot be found, yet it still exists",
		"gone":        "",
	} {
		err := c.DeleteVM(ctx, id)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("DeleteVM(%s) = %v, want %q", id, err, want)
		}
	}
}
