package auth

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Result is how an audited event ended.
type Result string

// The results.
const (
	ResultOK     Result = "ok"     // done
	ResultDenied Result = "denied" // refused before anything was done: no credentials, role, CSRF, rate limit
	ResultFailed Result = "failed" // tried and failed: a wrong password, a job that failed
)

// Event is one line of the audit log.
type Event struct {
	Time time.Time `json:"time"`
	// User is who acted: the authenticated user, or the name a login
	// gave; empty when unknown.
	User string `json:"user"`
	// Action is what was attempted: an Action, "login" or "logout".
	Action string `json:"action"`
	// Target is what it was done to: a restore point, a VM, a user, or
	// the request ("POST /api/v1/...").
	Target string `json:"target"`
	Result Result `json:"result"`
	// Client is the address the request came from (ClientAddr).
	Client string `json:"client"`
	// Detail says why, for a refusal or a failure.
	Detail string `json:"detail,omitempty"`
}

// Audit receives audit events. Record must be safe for concurrent use;
// an event it returns an error for may be lost (the caller logs the
// error: the console keeps serving).
type Audit interface {
	Record(Event) error
}

// AuditFile is an append-only audit log: one JSON line per event, each
// written with one write(2) to a file opened O_APPEND, so that lines from
// concurrent writers, in this process or another, never interleave.
type AuditFile struct {
	mu sync.Mutex
	f  *os.File
}

var _ Audit = (*AuditFile)(nil)

// OpenAuditFile opens (creating it, mode 0600) the audit log at path for
// appending.
func OpenAuditFile(path string) (*AuditFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &AuditFile{f: f}, nil
}

// Record appends e as one line.
func (a *AuditFile) Record(e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit event: %w", err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return fmt.Errorf("audit log is closed")
	}
	if _, err := a.f.Write(b); err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	return nil
}

// Close closes the file; later events are errors.
func (a *AuditFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// MemAudit keeps events in memory, for tests and for a console that shows
// the latest events.
type MemAudit struct {
	mu     sync.Mutex
	events []Event
}

var _ Audit = (*MemAudit)(nil)

// Record keeps e.
func (m *MemAudit) Record(e Event) error {
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
	return nil
}

// Events returns a copy of the events recorded so far, oldest first.
func (m *MemAudit) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}
