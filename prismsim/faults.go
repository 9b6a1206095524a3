package prismsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// Faults are the failures the simulator injects. The zero value injects
// nothing. Change them at run time with Sim.SetFaults or PUT /sim/faults.
type Faults struct {
	// Rate429 is the fraction (0..1) of API requests answered 429 Too Many
	// Requests (with Retry-After: 1).
	Rate429 float64 `json:"rate_429,omitempty"`
	// Rate500 is the fraction of API requests answered 500.
	Rate500 float64 `json:"rate_500,omitempty"`
	// Latency is added to every API request.
	Latency time.Duration `json:"latency,omitempty"`
	// FailTasks makes the next N tasks fail (then counts down).
	FailTasks int `json:"fail_tasks,omitempty"`
	// FailTaskRate is the fraction of tasks that fail.
	FailTaskRate float64 `json:"fail_task_rate,omitempty"`
	// FailOps, when not empty, limits FailTasks/FailTaskRate to tasks whose
	// operation type contains one of these strings (e.g. "snapshot").
	FailOps []string `json:"fail_ops,omitempty"`
	// FailFirst answers the first N requests of every distinct API request
	// (method and path, query ignored) 500, then lets that request through:
	// a transient failure that a client sending each request N+1 times
	// rides out. Setting the faults starts the counts again.
	FailFirst int `json:"fail_first,omitempty"`
	// Paths, when not empty, limits Rate429/Rate500/FailFirst/Latency to
	// request paths containing one of these strings.
	Paths []string `json:"paths,omitempty"`
	// HideV3CBT answers 404 to v3 vm_snapshots and data/changed_regions,
	// as Prism Central does: a v3 client then snapshots through v2.0,
	// without changed regions.
	HideV3CBT bool `json:"hide_v3_cbt,omitempty"`
	// HideV2 answers 404 to every v2.0 path, as a Prism Central without
	// the v2.0 gateway: a v3 client then has no volume groups, v2.0
	// snapshots, hosts' memory use or container space.
	HideV2 bool `json:"hide_v2,omitempty"`
	// SeparateSnapshotAPIs answers 404 when a snapshot is addressed by ID
	// (GET, DELETE) through another API than the one that made it: v3
	// vm_snapshots/{uuid} for a v2.0 snapshot, v2.0 snapshots/{uuid} for a
	// v3 vm_snapshot, either for a v4 VM recovery point. By default the
	// simulator serves every snapshot through all of them; on a cluster
	// they may be distinct objects.
	SeparateSnapshotAPIs bool `json:"separate_snapshot_apis,omitempty"`
}

func (f Faults) validate() error {
	var errs []error
	for name, r := range map[string]float64{"Rate429": f.Rate429, "Rate500": f.Rate500, "FailTaskRate": f.FailTaskRate} {
		if r < 0 || r > 1 {
			errs = append(errs, fmt.Errorf("fault %s %v is outside 0..1", name, r))
		}
	}
	if f.Latency < 0 || f.FailTasks < 0 || f.FailFirst < 0 {
		errs = append(errs, errors.New("fault Latency, FailTasks and FailFirst must not be negative"))
	}
	return errors.Join(errs...)
}

type faultState struct {
	mu       sync.Mutex
	f        Faults
	injected map[int]int    // status -> count
	failed   map[string]int // "METHOD path" -> 500s answered by FailFirst
}

func (fs *faultState) set(f Faults) {
	fs.mu.Lock()
	fs.f = f
	if fs.injected == nil {
		fs.injected = map[int]int{}
	}
	fs.failed = map[string]int{}
	fs.mu.Unlock()
}

// SetFaults replaces the injected faults.
func (s *Sim) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.set(f)
	return nil
}

// Faults returns the faults in force (FailTasks counts down as tasks fail).
func (s *Sim) Faults() Faults {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.f
}

// InjectedErrors returns how many requests were answered with status code
// (429 or 500) by fault injection (rates and FailFirst).
func (s *Sim) InjectedErrors(code int) int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.injected[code]
}

// FailedFirst returns how many times FailFirst answered each distinct
// request ("METHOD path") 500 since the faults were last set.
func (s *Sim) FailedFirst() map[string]int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return maps.Clone(s.faults.failed)
}

func matchAny(s string, subs []string) bool {
	if len(subs) == 0 {
		return true
	}
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// injectFault applies latency, error rates and the snapshot visibility
// faults to an API request; it reports whether it answered the request.
func (s *Sim) injectFault(w http.ResponseWriter, r *http.Request) bool {
	s.faults.mu.Lock()
	f := s.faults.f
	code := 0
	if matchAny(r.URL.Path, f.Paths) {
		x := rand.Float64()
		switch {
		case x < f.Rate429:
			code = http.StatusTooManyRequests
		case x < f.Rate429+f.Rate500:
			code = http.StatusInternalServerError
		}
		if k := r.Method + " " + r.URL.Path; code == 0 && s.faults.failed[k] < f.FailFirst {
			s.faults.failed[k]++
			code = http.StatusInternalServerError
		}
		if code != 0 {
			s.faults.injected[code]++
		}
	} else {
		f.Latency = 0
	}
	s.faults.mu.Unlock()
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return true
		}
	}
	switch code {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		s.apiError(w, r, code, "TOO_MANY_REQUESTS", "Too many requests: rate limit exceeded (injected)")
		return true
	case http.StatusInternalServerError:
		s.apiError(w, r, code, "INTERNAL_ERROR", "Internal server error (injected)")
		return true
	}
	if f.HideV3CBT && (strings.HasPrefix(r.URL.Path, v3Prefix+"/vm_snapshots") || r.URL.Path == v3Prefix+"/data/changed_regions") {
		s.notFound(w, r, "no such endpoint: "+r.Method+" "+r.URL.Path+" (not served here, injected)")
		return true
	}
	if f.HideV2 && (strings.HasPrefix(r.URL.Path, v2Prefix) || strings.HasPrefix(r.URL.Path, v2AltPrefix)) {
		s.notFound(w, r, "no such endpoint: "+r.Method+" "+r.URL.Path+" (not served here, injected)")
		return true
	}
	if f.SeparateSnapshotAPIs {
		if api, id := snapshotByIDPath(r.URL.Path); api != "" {
			s.mu.Lock()
			sn := s.m.Snapshots[id]
			s.mu.Unlock()
			if sn != nil && sn.API != "" && sn.API != api {
				s.notFound(w, r, "Snapshot "+id+" does not exist (made through "+sn.API+", injected)")
				return true
			}
		}
	}
	return false
}

// snapshotByIDPath returns the API ("v3" or "v2") and the snapshot ID of a
// path addressing one snapshot, or "".
func snapshotByIDPath(p string) (api, id string) {
	if rest, ok := strings.CutPrefix(p, v3Prefix+"/vm_snapshots/"); ok && rest != "list" {
		return "v3", strings.TrimSuffix(rest, "/")
	}
	for _, pre := range []string{v2Prefix, v2AltPrefix} {
		if rest, ok := strings.CutPrefix(p, pre+"/snapshots/"); ok && strings.Trim(rest, "/") != "" {
			return "v2", strings.TrimSuffix(rest, "/")
		}
	}
	return "", ""
}

// taskFailure decides whether a new task of operation op fails; it returns
// the failure message or "".
func (s *Sim) taskFailure(op string) string {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	f := &s.faults.f
	if !matchAny(strings.ToLower(op), lower(f.FailOps)) {
		return ""
	}
	if f.FailTasks > 0 {
		f.FailTasks--
		return "Operation " + op + " failed (injected fault)"
	}
	if f.FailTaskRate > 0 && rand.Float64() < f.FailTaskRate {
		return "Operation " + op + " failed (injected fault)"
	}
	return ""
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// DeleteSnapshotBehindBack removes a snapshot (v3 vm_snapshot, v2 snapshot or
// v4 VM recovery point, by uuid/extId; a v4 recovery point extId removes all
// of its VM recovery points) and its files, as an administrator or a retention
// policy would, without telling the client.
func (s *Sim) DeleteSnapshotBehindBack(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rp, ok := s.m.RecoveryPoints[id]; ok {
		for _, sid := range rp.Snapshots {
			s.removeSnapshotLocked(sid)
		}
		delete(s.m.RecoveryPoints, id)
		s.save()
		return nil
	}
	if _, ok := s.m.Snapshots[id]; !ok {
		return fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	s.removeSnapshotLocked(id)
	s.save()
	return nil
}

// ErrNotFound is returned by Sim methods for unknown entities.
var ErrNotFound = errors.New("not found")

// faultsJSON is the /sim/faults wire form (latency as a Go duration string).
type faultsJSON struct {
	Faults
	Latency string `json:"latency,omitempty"`
}

func (s *Sim) simGetFaults(w http.ResponseWriter, _ *http.Request) {
	f := s.Faults()
	simkit.WriteJSON(w, http.StatusOK, faultsJSON{Faults: f, Latency: f.Latency.String()})
}

func (s *Sim) simPutFaults(w http.ResponseWriter, r *http.Request) {
	var in faultsJSON
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		simkit.WriteJSON(w, http.StatusBadRequest, obj{"message": err.Error()})
		return
	}
	f := in.Faults
	if in.Latency != "" {
		d, err := time.ParseDuration(in.Latency)
		if err != nil {
			if ms, err2 := strconv.Atoi(in.Latency); err2 == nil {
				d = time.Duration(ms) * time.Millisecond
			} else {
				simkit.WriteJSON(w, http.StatusBadRequest, obj{"message": "latency: " + err.Error()})
				return
			}
		}
		f.Latency = d
	}
	if err := s.SetFaults(f); err != nil {
		simkit.WriteJSON(w, http.StatusBadRequest, obj{"message": err.Error()})
		return
	}
	s.simGetFaults(w, r)
}

func (s *Sim) simDeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.DeleteSnapshotBehindBack(r.PathValue("uuid")); err != nil {
		simkit.WriteJSON(w, http.StatusNotFound, obj{"message": err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) simDropISCSI(w http.ResponseWriter, r *http.Request) {
	n, err := s.DropISCSIConnections(r.Context())
	if err != nil {
		simkit.WriteJSON(w, http.StatusInternalServerError, obj{"message": err.Error()})
		return
	}
	simkit.WriteJSON(w, http.StatusOK, obj{"dropped": n})
}

// simState answers GET /sim/state: VMs with their disk files, for scripts.
func (s *Sim) simState(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var vms []obj
	for _, v := range s.m.sortedVMs() {
		var disks []string
		for _, d := range v.Disks {
			disks = append(disks, s.abs(d.File))
		}
		vms = append(vms, obj{"uuid": v.UUID, "name": v.Name, "power_state": v.PowerState, "ngt": v.NGT, "disks": disks})
	}
	simkit.WriteJSON(w, http.StatusOK, obj{"url": s.url, "iscsi_portal": s.ISCSIPortal(), "cvm_portal": s.CVMPortal(), "vms": vms})
}

func (s *Sim) routesSim(mux *http.ServeMux) {
	mux.HandleFunc("GET /sim/faults", s.simGetFaults)
	mux.HandleFunc("PUT /sim/faults", s.simPutFaults)
	mux.HandleFunc("DELETE /sim/snapshots/{uuid}", s.simDeleteSnapshot)
	mux.HandleFunc("POST /sim/iscsi/drop", s.simDropISCSI)
	mux.HandleFunc("GET /sim/state", s.simState)
}
