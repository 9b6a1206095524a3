package nutanix_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// fakePrism is a tiny v3+v4 endpoint for transport tests: it authenticates
// like Prism (Basic, then a NTNX_IGW_SESSION cookie; 401 plain text) and
// lets a test script the status of the next answers.
type fakePrism struct {
	password string

	mu         sync.Mutex
	sessions   map[string]bool
	script     []int // statuses to answer before succeeding
	always     int   // status answered forever (0: none)
	retryAfter string
	basic      int // requests authenticated with Basic
	cookie     int // requests authenticated with the cookie
	requests   int
	requestIDs []string
	delay      time.Duration
}

func (f *fakePrism) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	f.requestIDs = append(f.requestIDs, r.Header.Get("NTNX-Request-Id"))
	delay := f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	authed := false
	if c, err := r.Cookie("NTNX_IGW_SESSION"); err == nil {
		f.mu.Lock()
		authed = f.sessions[c.Value]
		if authed {
			f.cookie++
		}
		f.mu.Unlock()
	}
	if !authed {
		u, p, ok := r.BasicAuth()
		if !ok || u != "admin" || p != f.password {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "invalid Nutanix credentials\n")
			return
		}
		f.mu.Lock()
		f.basic++
		if f.sessions == nil {
			f.sessions = map[string]bool{}
		}
		tok := fmt.Sprintf("tok%d", f.basic)
		f.sessions[tok] = true
		f.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "NTNX_IGW_SESSION", Value: tok, Path: "/", Secure: true, HttpOnly: true})
	}
	f.mu.Lock()
	status := f.always
	if status == 0 && len(f.script) > 0 {
		status, f.script = f.script[0], f.script[1:]
	}
	ra := f.retryAfter
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"api_version":"3.1","code":%d,"kind":"cluster","state":"ERROR","message_list":[{"message":"cluster is busy (scripted %d)","reason":"SERVICE_UNAVAILABLE"}]}`, status, status)
		return
	}
	io.WriteString(w, `{"api_version":"3.1","metadata":{"kind":"vm","total_matches":1},"entities":[{"metadata":{"kind":"vm","uuid":"u1"},"status":{"name":"vm1","resources":{"num_sockets":2,"num_vcpus_per_socket":2,"memory_size_mib":2048}}}]}`)
}

func (f *fakePrism) expireSessions() {
	f.mu.Lock()
	f.sessions = map[string]bool{}
	f.mu.Unlock()
}

// startCountingConns starts a TLS server for h that counts the
// connections it accepts. The caller closes it.
func startCountingConns(h http.Handler) (*httptest.Server, *atomic.Int32) {
	srv := httptest.NewUnstartedServer(h)
	conns := new(atomic.Int32)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	return srv, conns
}

func startFake(t *testing.T, f *fakePrism) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return srv
}

// v3Client forces v3 without a probe round trip: ListVMs triggers the probe,
// which the fake answers like a PE without v2/CBT.
func listVMs(ctx context.Context, c *nutanix.Client) error {
	_, err := c.ListVMs(ctx)
	return err
}

func TestSessionCookieAndReauthOn401(t *testing.T) {
	f := &fakePrism{password: "pw"}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	c := newClient(t, o)
	ctx := ctxT(t)
	for range 3 {
		if err := listVMs(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	basic, cookie := f.basic, f.cookie
	f.mu.Unlock()
	if basic != 1 || cookie < 3 {
		t.Fatalf("basic %d cookie %d: want 1 Basic then cookies", basic, cookie)
	}
	f.expireSessions() // as the 15-minute expiry would
	if err := listVMs(ctx, c); err != nil {
		t.Fatalf("after session expiry: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.basic != 2 {
		t.Fatalf("basic %d after expiry, want 2 (one re-auth)", f.basic)
	}
}

func TestWrongPassword(t *testing.T) {
	f := &fakePrism{password: "right"}
	srv := startFake(t, f)
	c := newClient(t, fastOptions(t, srv, "wrong"))
	_, err := c.Probe(ctxT(t))
	if !errors.Is(err, nutanix.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	var ae *nutanix.APIError
	if !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(err.Error(), "invalid Nutanix credentials") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("password leaked in error: %v", err)
	}
}

func TestRetry429ThenSuccess(t *testing.T) {
	f := &fakePrism{password: "pw", script: []int{429, 429, 503}, retryAfter: "0"}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	c := newClient(t, o)
	if err := listVMs(ctxT(t), c); err != nil {
		t.Fatalf("retries should have succeeded: %v", err)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	f := &fakePrism{password: "pw", script: []int{429}, retryAfter: "1"}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	o.RetryMaxDelay = 2 * time.Second
	c := newClient(t, o)
	start := time.Now()
	if err := listVMs(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("Retry-After: 1 ignored, took %v", d)
	}
}

func TestPersistent503GivesClearError(t *testing.T) {
	defer checkNoGoroutineLeak(t)()
	f := &fakePrism{password: "pw", always: 503}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	o.MaxAttempts = 4
	c := newClient(t, o)
	err := listVMs(ctxT(t), c)
	var ae *nutanix.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if ae.Status != 503 || ae.Reason != "SERVICE_UNAVAILABLE" || ae.Attempts != 4 {
		t.Fatalf("APIError %+v", ae)
	}
	for _, want := range []string{"503", "cluster is busy", "gave up after 4 attempts", "/api/nutanix/v3/clusters/list"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	c.Close()
	srv.Close()
}

// TestTimeoutRetriedThenClearError: a server slower than Options.Timeout
// is tried MaxAttempts times. Each attempt opens a connection (a timed-out
// one is closed), so the server counts attempts as accepted connections:
// under load an attempt may time out in the TLS handshake, before any
// request reaches the handler.
func TestTimeoutRetriedThenClearError(t *testing.T) {
	defer checkNoGoroutineLeak(t)()
	f := &fakePrism{password: "pw", delay: 300 * time.Millisecond}
	srv, conns := startCountingConns(f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	o.Timeout = 50 * time.Millisecond
	o.MaxAttempts = 3
	c := newClient(t, o)
	err := listVMs(ctxT(t), c)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	// the server accepts the last connection when it gets to it
	for deadline := time.Now().Add(10 * time.Second); conns.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d attempts reached the server, want 3", n)
	}
	c.Close()
	srv.Close()
}

func TestTLSVerification(t *testing.T) {
	f := &fakePrism{password: "pw"}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.CACertFile = "" // the system roots do not know the test CA
	c := newClient(t, o)
	_, err := c.Probe(ctxT(t))
	if !errors.Is(err, nutanix.ErrTLSVerify) || !strings.Contains(err.Error(), "--ca-cert") {
		t.Fatalf("err = %v, want ErrTLSVerify mentioning --ca-cert", err)
	}
	// --insecure works, and warns.
	var logBuf bytes.Buffer
	o.Insecure = true
	o.API = nutanix.APIV3
	o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	c = newClient(t, o)
	if err := listVMs(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logBuf.String(), "insecure") {
		t.Fatalf("no warning for --insecure: %q", logBuf.String())
	}
}

func TestIdempotentDeleteRetriedOn502(t *testing.T) {
	f := &fakePrism{password: "pw"}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	c := newClient(t, o)
	ctx := ctxT(t)
	if _, err := c.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.always, f.requests = 502, 0
	f.mu.Unlock()
	// DeleteVM is a DELETE: retried, MaxAttempts (default 5) times in all.
	_ = c.DeleteVM(ctx, "x")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.requests != 5 {
		t.Fatalf("DELETE attempts %d, want 5", f.requests)
	}
}

func TestRequestIDOnV4(t *testing.T) {
	f := &fakePrism{password: "pw", script: []int{503, 503}}
	srv := startFake(t, f)
	c := newClient(t, fastOptions(t, srv, "pw"))
	// the first probe request is GET /api/vmm/v4.x/…: one logical request,
	// three attempts, one request id.
	_, _ = c.Probe(ctxT(t))
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requestIDs) < 3 || f.requestIDs[0] == "" || f.requestIDs[0] != f.requestIDs[1] || f.requestIDs[1] != f.requestIDs[2] {
		t.Fatalf("request ids %q", f.requestIDs[:min(3, len(f.requestIDs))])
	}
}

func TestRateLimit(t *testing.T) {
	f := &fakePrism{password: "pw"}
	srv := startFake(t, f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	o.RateLimit = 20
	c := newClient(t, o)
	ctx := ctxT(t)
	start := time.Now()
	for range 30 {
		if err := listVMs(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// 30+ requests at 20/s with a burst of 20: at least ~0.5s
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Fatalf("30 requests in %v: rate limit not applied", d)
	}
}

func TestDebugLogRedactsSecrets(t *testing.T) {
	f := &fakePrism{password: "s3cr3t-pw"}
	srv := startFake(t, f)
	var logBuf bytes.Buffer
	o := fastOptions(t, srv, "s3cr3t-pw")
	o.API = nutanix.APIV3
	o.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newClient(t, o)
	ctx := ctxT(t)
	for range 2 {
		if err := listVMs(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	log := logBuf.String()
	if !strings.Contains(log, "prism request") || !strings.Contains(log, "REDACTED") {
		t.Fatalf("no debug lines: %s", log)
	}
	for _, secret := range []string{"s3cr3t-pw", "YWRtaW46czNjcjN0LXB3", "tok1"} { // password, its base64, the session
		if strings.Contains(log, secret) {
			t.Fatalf("secret %q in debug log:\n%s", secret, log)
		}
	}
}

func TestNoConnectionLeakOnManyRequests(t *testing.T) {
	done := checkNoGoroutineLeak(t)
	f := &fakePrism{password: "pw"}
	srv, conns := startCountingConns(f)
	o := fastOptions(t, srv, "pw")
	o.API = nutanix.APIV3
	c, err := nutanix.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 50 {
		if err := listVMs(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("%d connections for 50 sequential requests: the client is not reused", n)
	}
	c.Close()
	srv.Close()
	done()
}

func TestOptionsValidateReportsEverything(t *testing.T) {
	t.Setenv(nutanix.EnvPassword, "")
	t.Setenv(nutanix.EnvPasswordFile, "")
	err := nutanix.Options{Endpoint: "http://x", API: "v9", CACertFile: "/nonexistent", Insecure: true,
		MaxAttempts: -1, RetryBudget: -time.Second, RetryBaseDelay: time.Minute, RetryMaxDelay: time.Second}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"https", "v9", "no password", "CA certificate", "mutually exclusive",
		"must not be negative", "MaxAttempts -1", "RetryBaseDelay 1m0s is longer than RetryMaxDelay 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, lacks %q", err, want)
		}
	}
	t.Setenv(nutanix.EnvPassword, "from-env")
	if err := (nutanix.Options{Endpoint: "prism.example:9440"}).Validate(); err != nil {
		t.Errorf("env password: %v", err)
	}
	u, _ := nutanix.Options{Endpoint: "prism.example"}.BaseURL()
	if u.String() != "https://prism.example:9440" {
		t.Errorf("BaseURL %s", u)
	}
}
