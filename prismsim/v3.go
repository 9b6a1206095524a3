package prismsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

func (s *Sim) routesV3(mux *http.ServeMux) {
	p := v3Prefix
	mux.HandleFunc("GET "+p+"/users/me", s.v3UsersMe)
	mux.HandleFunc("POST "+p+"/vms/list", s.v3ListVMs)
	mux.HandleFunc("POST "+p+"/vms", s.v3Idempotent(s.v3CreateVM))
	mux.HandleFunc("GET "+p+"/vms/{uuid}", s.v3GetVM)
	mux.HandleFunc("PUT "+p+"/vms/{uuid}", s.v3UpdateVM)
	mux.HandleFunc("DELETE "+p+"/vms/{uuid}", s.v3DeleteVM)
	mux.HandleFunc("POST "+p+"/clusters/list", s.v3ListClusters)
	mux.HandleFunc("POST "+p+"/hosts/list", s.v3ListHosts)
	mux.HandleFunc("GET "+p+"/clusters/{uuid}", s.v3GetCluster)
	mux.HandleFunc("POST "+p+"/subnets/list", s.v3ListSubnets)
	mux.HandleFunc("GET "+p+"/subnets/{uuid}", s.v3GetSubnet)
	mux.HandleFunc("GET "+p+"/tasks/{uuid}", s.v3GetTask)
	mux.HandleFunc("POST "+p+"/tasks/poll", s.v3PollTasks)
	mux.HandleFunc("POST "+p+"/tasks/list", s.v3ListTasks)
	if !s.opts.NoV3Snapshots {
		// Without them the catch-all answers 404, as a Prism Central or an
		// older Prism Element does.
		mux.HandleFunc("POST "+p+"/vm_snapshots", s.v3Idempotent(s.v3CreateSnapshot))
		mux.HandleFunc("POST "+p+"/vm_snapshots/list", s.v3ListSnapshots)
		mux.HandleFunc("GET "+p+"/vm_snapshots/{uuid}", s.v3GetSnapshot)
		mux.HandleFunc("DELETE "+p+"/vm_snapshots/{uuid}", s.v3DeleteSnapshot)
		mux.HandleFunc("POST "+p+"/data/changed_regions", s.v3ChangedRegions)
	}
	mux.HandleFunc("POST "+p+"/images", s.v3Idempotent(s.v3CreateImage))
	mux.HandleFunc("POST "+p+"/images/list", s.v3ListImages)
	mux.HandleFunc("GET "+p+"/images/{uuid}", s.v3GetImage)
	mux.HandleFunc("DELETE "+p+"/images/{uuid}", s.v3DeleteImage)
	mux.HandleFunc("PUT "+p+"/images/{uuid}/file", s.imageUpload)
	mux.HandleFunc("POST "+p+"/category/query", s.v3CategoryQuery)
	mux.HandleFunc("PUT "+p+"/categories/{name}/{value}", s.v3PutCategoryValue)
	mux.HandleFunc("GET "+p+"/categories/{name}/{value}", s.v3GetCategoryValue)
	mux.HandleFunc("GET "+p+"/images/{uuid}/file", s.imageDownload)
}

// ---------- common v3 pieces ----------

type listReq struct {
	Kind          string `json:"kind"`
	Offset        *int   `json:"offset"`
	Length        *int   `json:"length"`
	Filter        string `json:"filter"`
	SortAttribute string `json:"sort_attribute"`
	SortOrder     string `json:"sort_order"`
}

const (
	v3DefaultLength = 20
	v3MaxLength     = 500
)

// page applies offset/length to n items and returns the slice bounds and the
// list metadata.
func (q listReq) page(kind string, n int) (lo, hi int, meta obj, err *apiErr) {
	off, length := 0, v3DefaultLength
	if q.Offset != nil {
		off = *q.Offset
	}
	if q.Length != nil {
		length = *q.Length
	}
	if off < 0 {
		return 0, 0, nil, errInvalid("offset %d must be >= 0", off)
	}
	if length < 1 {
		return 0, 0, nil, errInvalid("length %d must be >= 1", length)
	}
	length = min(length, v3MaxLength)
	lo, hi = min(off, n), min(off+length, n)
	meta = obj{"kind": kind, "total_matches": n, "offset": off, "length": hi - lo}
	if q.Filter != "" {
		meta["filter"] = q.Filter
	}
	if q.SortAttribute != "" {
		meta["sort_attribute"] = q.SortAttribute
	}
	if q.SortOrder != "" {
		meta["sort_order"] = q.SortOrder
	}
	return lo, hi, meta, nil
}

// fiqlMatch evaluates a simple FIQL filter ("a==x;b==y", also "=cs=" for
// contains and "!=") against attribute values.
func fiqlMatch(filter string, attr func(string) string) bool {
	if filter == "" {
		return true
	}
	for _, term := range strings.Split(filter, ";") {
		ok := false
		for _, alt := range strings.Split(term, ",") {
			var k, v, op string
			for _, o := range []string{"==", "!=", "=cs="} {
				if i := strings.Index(alt, o); i > 0 {
					k, v, op = alt[:i], alt[i+len(o):], o
					break
				}
			}
			if op == "" {
				continue
			}
			if uv, err := url.QueryUnescape(v); err == nil {
				v = uv
			}
			got := attr(strings.TrimSpace(k))
			switch op {
			case "==":
				ok = ok || got == v
			case "!=":
				ok = ok || got != v
			case "=cs=":
				ok = ok || strings.Contains(got, v)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// v3List serves a v3 POST <kind>s/list: the items (read under s.mu, in the
// request's order) that pass its FIQL filter (attr gives an item's value of
// an attribute), one page of them rendered without api_version.
func v3List[T any](s *Sim, w http.ResponseWriter, r *http.Request, kind string, items func(listReq) []T,
	attr func(T, string) string, render func(T) obj) {
	var q listReq
	if !s.decodeJSON(w, r, &q, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []T
	for _, it := range items(q) {
		if fiqlMatch(q.Filter, func(k string) string { return attr(it, k) }) {
			all = append(all, it)
		}
	}
	lo, hi, meta, err := q.page(kind, len(all))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ents := []obj{}
	for _, it := range all[lo:hi] {
		e := render(it)
		delete(e, "api_version")
		ents = append(ents, e)
	}
	simkit.WriteJSON(w, http.StatusOK, obj{"api_version": "3.1", "metadata": meta, "entities": ents})
}

func v3Meta(kind, uuid string, specVersion int64, created, updated time.Time) obj {
	return obj{
		"kind":               kind,
		"uuid":               uuid,
		"spec_version":       specVersion,
		"spec_hash":          "00000000000000000000000000000000000000000000000000",
		"categories":         obj{},
		"categories_mapping": obj{},
		"creation_time":      rfc3339(created),
		"last_update_time":   rfc3339(updated),
		"owner_reference":    obj{"kind": "user", "uuid": "00000000-0000-0000-0000-000000000000", "name": "admin"},
	}
}

func ref(kind, uuid, name string) obj {
	o := obj{"kind": kind, "uuid": uuid}
	if name != "" {
		o["name"] = name
	}
	return o
}

// accepted answers a v3 mutation: 202 with status PENDING and the task.
func v3Accepted(w http.ResponseWriter, meta, spec obj, t *task, state string) {
	o := obj{"api_version": "3.1", "metadata": meta,
		"status": obj{"state": state, "execution_context": obj{"task_uuid": t.UUID}}}
	if spec != nil {
		o["spec"] = spec
	} else {
		o["spec"] = ""
	}
	simkit.WriteJSON(w, http.StatusAccepted, o)
}

func (s *Sim) v3UsersMe(w http.ResponseWriter, _ *http.Request) {
	simkit.WriteJSON(w, http.StatusOK, obj{"api_version": "3.1",
		"metadata": v3Meta("user", "00000000-0000-0000-0000-000000000000", 0, time.Unix(0, 0), time.Unix(0, 0)),
		"spec":     obj{"resources": obj{}},
		"status":   obj{"name": "admin", "state": "COMPLETE", "resources": obj{"username": "admin", "user_type": "LOCAL"}}})
}

// v3Idempotent makes a v3 create whose body names metadata.uuid
// idempotent: the same uuid again gets the first answer, as Prism treats
// it as the idempotence UUID of the request.
func (s *Sim) v3Idempotent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			v3Error(w, http.StatusBadRequest, "", "INVALID_REQUEST", err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct {
			Metadata struct {
				UUID string `json:"uuid"`
			} `json:"metadata"`
		}
		if json.Unmarshal(body, &in) != nil || in.Metadata.UUID == "" {
			h(w, r)
			return
		}
		s.idempotent(w, r, r.Method+" "+r.URL.Path+" "+in.Metadata.UUID, h)
	}
}
