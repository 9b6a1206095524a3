package xapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testtls"
	"github.com/ahvfs/ahvfs/xapi"
)

func TestLoginLogout(t *testing.T) {
	f := newFake(t)
	c, err := xapi.Connect(context.Background(), f.options())
	if err != nil {
		t.Fatal(err)
	}
	if c.Session() != fakeSession {
		t.Errorf("Session() = %q", c.Session())
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.currentSession() != "" || f.count("session.logout") != 1 {
		t.Errorf("logout not done: calls %v", f.called())
	}
	if err := c.Close(context.Background()); err != nil || f.count("session.logout") != 1 {
		t.Errorf("second Close: %v, calls %v", err, f.called())
	}
	if _, err := c.VMs(context.Background()); !errors.Is(err, xapi.ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}
}

func TestWrongPassword(t *testing.T) {
	f := newFake(t)
	o := f.options()
	o.Password = "wrong-horse"
	_, err := xapi.Connect(context.Background(), o)
	if !xapi.IsCode(err, xapi.CodeSessionAuthenticationFailed) {
		t.Fatalf("err = %v", err)
	}
	contains(t, err.Error(), "wrong user name or password", `"root"`)
	if strings.Contains(err.Error(), "wrong-horse") {
		t.Errorf("the password is in the error: %v", err)
	}
}

func hostPort(t *testing.T, f *fakeXAPI) string {
	u, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func slaveOf(f, master *fakeXAPI, t *testing.T) {
	f.handle("session.login_with_password", func([]json.RawMessage) (any, error) {
		return nil, &xapi.Error{Code: "HOST_IS_SLAVE", Params: []string{hostPort(t, master)}}
	})
}

func TestHostIsSlave(t *testing.T) {
	master, member := newFake(t), newFake(t)
	slaveOf(member, master, t)
	master.returns("VM.get_all_records", map[string]any{})
	c, err := xapi.Connect(context.Background(), member.options())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if c.Session() != fakeSession || master.count("session.login_with_password") != 1 || c.Endpoint() != master.srv.URL {
		t.Fatalf("not logged in at the master: %v", master.called())
	}
	if _, err := c.VMs(context.Background()); err != nil || master.count("VM.get_all_records") != 1 {
		t.Errorf("call not sent to the master: %v %v", err, master.called())
	}

	// Followed once only: a member naming another member fails.
	a, b := newFake(t), newFake(t)
	slaveOf(a, b, t)
	slaveOf(b, a, t)
	_, err = xapi.Connect(context.Background(), a.options())
	if !xapi.IsCode(err, xapi.CodeHostIsSlave) || a.count("session.login_with_password") != 1 || b.count("session.login_with_password") != 1 {
		t.Errorf("err = %v; logins %v %v", err, a.called(), b.called())
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newFake(t)
	f.returns("VM.get_record", map[string]any{"uuid": "u1"})
	c := f.connect(t)
	f.mu.Lock()
	f.session = "" // XAPI restarted and forgot the session
	f.mu.Unlock()
	vm, err := c.VM(context.Background(), "OpaqueRef:vm")
	if err != nil || vm.UUID != "u1" {
		t.Fatalf("VM = %+v, %v", vm, err)
	}
	if f.loginCount() != 2 || c.Session() == fakeSession || string(c.Session()) != f.currentSession() {
		t.Errorf("logins %d, session %q", f.loginCount(), c.Session())
	}

	// A session refused again right after a login is not retried twice.
	f.handle("VM.get_record", func([]json.RawMessage) (any, error) {
		return nil, &xapi.Error{Code: "SESSION_INVALID", Params: []string{fakeSession}}
	})
	_, err = c.VM(context.Background(), "OpaqueRef:vm")
	if !xapi.IsCode(err, xapi.CodeSessionInvalid) || f.loginCount() != 3 || f.count("VM.get_record") != 4 {
		t.Errorf("err %v, logins %d, calls %v", err, f.loginCount(), f.called())
	}
	if strings.Contains(err.Error(), fakeSession) {
		t.Errorf("the session is in the error: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	f := newFake(t)
	f.handle("VM.get_record", func(p []json.RawMessage) (any, error) {
		return nil, &xapi.Error{Code: "HANDLE_INVALID", Params: []string{"VM", str(p[0])}}
	})
	f.handle("VM.get_by_uuid", func(p []json.RawMessage) (any, error) {
		return nil, &xapi.Error{Code: "UUID_INVALID", Params: []string{"VM", str(p[0])}}
	})
	f.handle("VDI.destroy", func(p []json.RawMessage) (any, error) {
		return nil, &xapi.Error{Code: "VDI_IN_USE", Params: []string{str(p[0]), "destroy"}}
	})
	c := f.connect(t)
	ctx := context.Background()
	_, err := c.VM(ctx, "OpaqueRef:gone")
	if !errors.Is(err, xapi.ErrNotFound) || !xapi.IsCode(err, xapi.CodeHandleInvalid) {
		t.Errorf("VM: %v", err)
	}
	contains(t, err.Error(), "VM.get_record: XAPI HANDLE_INVALID: VM, OpaqueRef:gone")
	if _, err := c.VMByUUID(ctx, "nope"); !errors.Is(err, xapi.ErrNotFound) {
		t.Errorf("VMByUUID: %v", err)
	}
	err = c.DestroyVDI(ctx, "OpaqueRef:d")
	var xe *xapi.Error
	if !errors.As(err, &xe) || xe.Code != "VDI_IN_USE" || errors.Is(err, xapi.ErrNotFound) || len(xe.Params) != 2 {
		t.Errorf("DestroyVDI: %v", err)
	}
}

func TestMalformedAnswers(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"not JSON", "<html>oops", "malformed JSON-RPC answer"},
		{"truncated", `{"jsonrpc":"2.0","result":{"uuid"`, "malformed JSON-RPC answer"},
		{"neither", `{"jsonrpc":"2.0","id":2}`, "neither result nor error"},
		{"null result", `{"jsonrpc":"2.0","result":null,"id":2}`, "decode VM record"},
		{"bad error", `{"jsonrpc":"2.0","error":{"code":1},"id":2}`, "malformed JSON-RPC error"},
		{"v1 error", `{"result":null,"error":["HANDLE_INVALID","VM","x"],"id":2}`, "XAPI HANDLE_INVALID: VM, x"},
		{"wrong id", `{"jsonrpc":"2.0","result":{},"id":99}`, "carries id 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.handle("VM.get_record", func([]json.RawMessage) (any, error) { return nil, rawAnswer(tc.body) })
			_, err := f.connect(t).VM(context.Background(), "OpaqueRef:v")
			if err == nil {
				t.Fatal("no error")
			}
			contains(t, err.Error(), "VM", tc.want)
		})
	}
}

func TestHTTPErrorOnRPC(t *testing.T) {
	f := newFake(t)
	c := f.connect(t)
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html><body><h1>HTTP 500 internal server error</h1>\nmore", http.StatusInternalServerError)
	})
	_, err := c.SRs(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	contains(t, err.Error(), "SR.get_all_records", "500", "HTTP 500 internal server error")
}

func TestTLS(t *testing.T) {
	f := newFake(t)
	ca := testtls.NewCA(t, t.TempDir(), "elsewhere")
	other, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	o := f.options()
	o.CAPEM = other
	_, err = xapi.Connect(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong CA accepted: %v", err)
	}
	o.CAPEM = nil
	if _, err := xapi.Connect(context.Background(), o); err == nil {
		t.Fatal("system roots accepted a self-signed certificate")
	}
	o.Insecure = true
	c, err := xapi.Connect(context.Background(), o)
	if err != nil {
		t.Fatalf("Insecure: %v", err)
	}
	c.Close(context.Background())
	o.Insecure, o.CAFile = false, t.TempDir()+"/ca.pem"
	os.WriteFile(o.CAFile, f.caPEM(), 0o600)
	c, err = xapi.Connect(context.Background(), o)
	if err != nil {
		t.Fatalf("CAFile: %v", err)
	}
	c.Close(context.Background())
}

func TestValidate(t *testing.T) {
	if err := (xapi.Options{URL: "pool.example", User: "root"}).Validate(); err != nil {
		t.Errorf("minimal options: %v", err)
	}
	err := xapi.Options{URL: "http://h/path", CAPEM: []byte("junk"), Insecure: true, Timeout: -time.Second}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	contains(t, err.Error(), "https", "no XAPI user", "Insecure excludes", "CAPEM", "negative")
	for _, u := range []string{"", "https://", "https://u:p@h", "h/x", "https://h?q=1"} {
		if err := (xapi.Options{URL: u, User: "root"}).Validate(); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

func TestTimeout(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	defer close(release)
	f.handle("VM.get_record", func([]json.RawMessage) (any, error) { <-release; return map[string]any{}, nil })
	o := f.options()
	o.Timeout = 2 * time.Second // long enough for the login on a busy machine
	c, err := xapi.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.VM(context.Background(), "OpaqueRef:slow")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	contains(t, err.Error(), "VM.get_record: no answer within 2s")
}

func TestSecretsNotLogged(t *testing.T) {
	f := newFake(t)
	var logs bytes.Buffer
	o := f.options()
	o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.handle("task.create", func([]json.RawMessage) (any, error) { return "OpaqueRef:t", nil })
	f.task("OpaqueRef:t", taskRec("pending", ""))
	f.handleHTTP("/export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close() // a transport error, whose text holds the URL
	})
	c, err := xapi.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ExportRawVDI(context.Background(), "OpaqueRef:v")
	if err == nil || strings.Contains(err.Error(), fakeSession) {
		t.Errorf("export error: %v", err)
	}
	contains(t, err.Error(), "export_raw_vdi", "session_id=OpaqueRef%3A5e551011%E2%80%A6")
	c.Close(context.Background())
	for _, secret := range []string{fakePassword, fakeSession, strings.TrimPrefix(fakeSession, "OpaqueRef:")} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log holds %q:\n%s", secret, logs.String())
		}
	}
	contains(t, logs.String(), "OpaqueRef:5e551011…", "XAPI call", "session.login_with_password")
}
