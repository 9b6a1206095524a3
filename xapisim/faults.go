package xapisim

import (
	"slices"
	"sync"
)

// Fault is a failure queued for the next calls of one method.
type Fault struct {
	// Method is a XenAPI message without "Async." ("VM.snapshot" fails
	// the call and the Async task alike), an HTTP handler ("export",
	// "import", "export_raw_vdi", "import_raw_vdi"), or "nbd" (the next
	// NBD export lookups are refused).
	Method string `json:"method"`
	// Code and Params are the XenAPI error returned.
	Code   string   `json:"code"`
	Params []string `json:"params"`
	// Count is how many calls it fails (at least 1).
	Count int `json:"count"`
}

type faultState struct {
	mu     sync.Mutex
	queue  []Fault
	failed map[string]int
}

func (f *faultState) init() { f.failed = map[string]int{} }

// take consumes the first fault queued for method, if any.
func (f *faultState) take(method string) *xenError {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.queue {
		q := &f.queue[i]
		if q.Method != method {
			continue
		}
		xe := xerr(q.Code, q.Params...)
		if q.Count--; q.Count <= 0 {
			f.queue = slices.Delete(f.queue, i, i+1)
		}
		f.failed[method]++
		return xe
	}
	return nil
}

// FailNext makes the next call of method fail with XenAPI error code and
// params (see Fault.Method). Calls add up: FailNext twice fails the next
// two calls.
func (s *Sim) FailNext(method, code string, params ...string) {
	s.AddFault(Fault{Method: method, Code: code, Params: params, Count: 1})
}

// AddFault queues a fault for the next f.Count calls of f.Method.
func (s *Sim) AddFault(f Fault) {
	f.Count = max(f.Count, 1)
	f.Params = append([]string{}, f.Params...)
	s.faults.mu.Lock()
	s.faults.queue = append(s.faults.queue, f)
	s.faults.mu.Unlock()
}

// Faults returns the faults still queued.
func (s *Sim) Faults() []Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return append([]Fault{}, s.faults.queue...)
}

// ClearFaults drops every queued fault.
func (s *Sim) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.queue = nil
	s.faults.mu.Unlock()
}

// Injected returns how many calls of method a fault has failed.
func (s *Sim) Injected(method string) int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.failed[method]
}
