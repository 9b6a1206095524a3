package xapi_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ahvfs/ahvfs/xapi"
)

const (
	fakeUser     = "root"
	fakePassword = "s3cret-Pa55"
	fakeSession  = "OpaqueRef:5e551011-aaaa-bbbb-cccc-000000000001"
)

// method answers one JSON-RPC call: a result, an *xapi.Error, or a
// rawAnswer written as the whole body.
type method func(params []json.RawMessage) (any, error)

// rawAnswer is a body written verbatim (malformed answers).
type rawAnswer string

func (r rawAnswer) Error() string { return string(r) }

// fakeXAPI is a scripted XAPI over TLS: a JSON-RPC router plus HTTP
// handlers, both registered per test.
type fakeXAPI struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	methods  map[string]method
	handlers map[string]http.HandlerFunc
	calls    []string // method names, in order
	logins   int
	sessions int // sessions handed out
	session  string
}

func newFake(t *testing.T) *fakeXAPI {
	t.Helper()
	f := &fakeXAPI{t: t, methods: map[string]method{}, handlers: map[string]http.HandlerFunc{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.handle("session.login_with_password", func(p []json.RawMessage) (any, error) {
		if len(p) != 4 || str(p[0]) != fakeUser || str(p[1]) != fakePassword {
			return nil, &xapi.Error{Code: "SESSION_AUTHENTICATION_FAILED", Params: []string{str(p[0]), "Authentication failure"}}
		}
		if str(p[2]) != "1.0" || str(p[3]) != "ahvfs" {
			t.Errorf("login version/originator = %s/%s", p[2], p[3])
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.logins++
		f.sessions++
		f.session = fakeSession
		if f.sessions > 1 {
			f.session = fmt.Sprintf("OpaqueRef:5e551011-aaaa-bbbb-cccc-%012d", f.sessions)
		}
		return f.session, nil
	})
	f.handle("session.logout", func(p []json.RawMessage) (any, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if str(p[0]) != f.session {
			return nil, &xapi.Error{Code: "SESSION_INVALID", Params: []string{str(p[0])}}
		}
		f.session = ""
		return "", nil
	})
	return f
}

// handle registers a JSON-RPC method; params exclude the session, which
// the router checks (except for login).
func (f *fakeXAPI) handle(name string, m method) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.methods[name] = m
}

// handleHTTP registers an HTTP handler at path ("/export_raw_vdi").
func (f *fakeXAPI) handleHTTP(path string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[path] = h
}

// returns registers a method with a fixed result.
func (f *fakeXAPI) returns(name string, result any) {
	f.handle(name, func([]json.RawMessage) (any, error) { return result, nil })
}

func (f *fakeXAPI) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeXAPI) count(name string) int {
	n := 0
	for _, c := range f.called() {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeXAPI) loginCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins
}

func (f *fakeXAPI) currentSession() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.session
}

func (f *fakeXAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/jsonrpc" {
		f.mu.Lock()
		h := f.handlers[r.URL.Path]
		f.mu.Unlock()
		if h == nil {
			http.Error(w, "no handler "+r.URL.Path, http.StatusNotFound)
			return
		}
		if r.URL.Query().Get("session_id") != f.currentSession() {
			http.Error(w, "bad session", http.StatusForbidden)
			return
		}
		h(w, r)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		f.t.Errorf("JSON-RPC request %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	var req struct {
		JSONRPC string            `json:"jsonrpc"`
		Method  string            `json:"method"`
		Params  []json.RawMessage `json:"params"`
		ID      json.RawMessage   `json:"id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.JSONRPC != "2.0" || req.ID == nil || req.Params == nil {
		f.t.Errorf("bad JSON-RPC request: %v %+v", err, req)
		http.Error(w, "bad request", http.StatusInternalServerError)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, req.Method)
	m := f.methods[req.Method]
	session := f.session
	f.mu.Unlock()
	params := req.Params
	var result any
	var err error
	switch {
	case m == nil:
		err = &xapi.Error{Code: "MESSAGE_METHOD_UNKNOWN", Params: []string{req.Method}}
	case req.Method == "session.login_with_password" || req.Method == "session.logout":
		result, err = m(params)
	case len(params) == 0 || str(params[0]) != session || session == "":
		err = &xapi.Error{Code: "SESSION_INVALID", Params: []string{str(params[0])}}
	default:
		result, err = m(params[1:])
	}
	w.Header().Set("Content-Type", "application/json")
	answer := map[string]any{"jsonrpc": "2.0", "id": req.ID}
	switch e := err.(type) {
	case nil:
		answer["result"] = result
	case rawAnswer:
		io.WriteString(w, string(e))
		return
	case *xapi.Error:
		answer["error"] = map[string]any{"code": 1, "message": e.Code, "data": append([]string{}, e.Params...)}
	default:
		f.t.Errorf("method %s: %v", req.Method, err)
		return
	}
	json.NewEncoder(w).Encode(answer)
}

// options returns Options that trust the fake's certificate.
func (f *fakeXAPI) options() xapi.Options {
	return xapi.Options{URL: f.srv.URL, User: fakeUser, Password: fakePassword, CAPEM: f.caPEM()}
}

func (f *fakeXAPI) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
}

// connect logs in and logs out at the end of the test.
func (f *fakeXAPI) connect(t *testing.T) *xapi.Client {
	t.Helper()
	c, err := xapi.Connect(context.Background(), f.options())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// task scripts a task: get_record answers the records in turn (the last
// one for ever) and task.destroy / task.cancel are recorded.
type fakeTask struct {
	mu        sync.Mutex
	records   []map[string]any
	polls     int
	destroyed bool
	cancelled bool
}

func (f *fakeXAPI) task(ref string, records ...map[string]any) *fakeTask {
	ft := &fakeTask{records: records}
	f.handle("task.get_record", func(p []json.RawMessage) (any, error) {
		if str(p[0]) != ref {
			return nil, &xapi.Error{Code: "HANDLE_INVALID", Params: []string{"task", str(p[0])}}
		}
		ft.mu.Lock()
		defer ft.mu.Unlock()
		rec := ft.records[min(ft.polls, len(ft.records)-1)]
		if ft.cancelled && rec["status"] == "pending" {
			rec = taskRec("cancelled", "")
		}
		ft.polls++
		return rec, nil
	})
	f.handle("task.destroy", func(p []json.RawMessage) (any, error) {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		ft.destroyed = str(p[0]) == ref
		return "", nil
	})
	f.handle("task.cancel", func(p []json.RawMessage) (any, error) {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		ft.cancelled = str(p[0]) == ref
		return "", nil
	})
	return ft
}

func (ft *fakeTask) state() (polls int, destroyed, cancelled bool) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.polls, ft.destroyed, ft.cancelled
}

// taskRec is a task record; errorInfo is for failures.
func taskRec(status, result string, errorInfo ...string) map[string]any {
	return map[string]any{"uuid": "0b7c", "name_label": "Async.VM.snapshot", "status": status, "progress": 0.5,
		"result": result, "error_info": append([]string{}, errorInfo...), "created": "20261204T03:19:07Z"}
}

// str decodes a JSON string parameter ("" when it is not one).
func str(raw json.RawMessage) string {
	var s string
	json.Unmarshal(raw, &s)
	return s
}

// contains fails unless s contains every part.
func contains(t *testing.T, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%q does not contain %q", s, p)
		}
	}
}
