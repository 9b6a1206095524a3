package simkit_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// TestPassword: a given password wins, else the file's (trimmed), else a
// random one with the prefix; the file always holds it.
func TestPassword(t *testing.T) {
	pf := filepath.Join(t.TempDir(), "admin.password")
	random, err := simkit.Password(pf, "", "Nx-")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^Nx-[0-9a-f]{24}$`).MatchString(random) {
		t.Fatalf("random password %q", random)
	}
	for _, tc := range []struct {
		file, given, want string
	}{
		{random + "\n", "", random},
		{"  kept\t\n", "", "kept"},
		{"kept\n", "given", "given"},
		{" \n", "given", "given"},
	} {
		if err := os.WriteFile(pf, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := simkit.Password(pf, tc.given, "Nx-")
		if err != nil || got != tc.want {
			t.Errorf("file %q, given %q: %q, %v; want %q", tc.file, tc.given, got, err, tc.want)
		}
		if b, _ := os.ReadFile(pf); string(b) != tc.want+"\n" {
			t.Errorf("file %q, given %q: the file holds %q", tc.file, tc.given, b)
		}
	}
	os.WriteFile(pf, []byte("\n"), 0o600)
	if again, err := simkit.Password(pf, "", "Nx-"); err != nil || again == random || !strings.HasPrefix(again, "Nx-") {
		t.Errorf("empty file: %q, %v", again, err)
	}
	if st, err := os.Stat(pf); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v %v", st.Mode(), err)
	}
	if _, err := simkit.Password(filepath.Join(pf, "nodir"), "x", "Nx-"); err == nil || !strings.HasPrefix(err.Error(), "write password file: ") {
		t.Errorf("unwritable file: %v", err)
	}
}

func TestNewUUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		u := simkit.NewUUID()
		if !re.MatchString(u) || seen[u] {
			t.Fatalf("UUID %q (seen before: %v)", u, seen[u])
		}
		seen[u] = true
	}
}

// logs collects Logf lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// serve starts an HTTPS server for h with a fresh CA, whose file it
// returns.
func serve(t *testing.T, h http.Handler, lg *logs) (*simkit.HTTPS, string) {
	t.Helper()
	l, err := simkit.ListenHTTPS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := simkit.NewCerts(simkit.CertRequest{Org: "ahvfs test", CAName: "test CA", Name: "test",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP(l.Host)}})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, c.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	l.Serve(h, simkit.ServerTLS(tls.Certificate{Certificate: [][]byte{c.Cert}, PrivateKey: c.Key}), lg.logf)
	t.Cleanup(l.Close)
	return l, ca
}

// TestCerts: the server certificate chains to the CA and names what was
// asked; the key matches it.
func TestCerts(t *testing.T) {
	c, err := simkit.NewCerts(simkit.CertRequest{Org: "ahvfs test", CAName: "test CA", Name: "host.example",
		DNSNames: []string{"host.example", "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(c.CA)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(c.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.Subject.CommonName != "test CA" || cert.Subject.CommonName != "host.example" ||
		cert.Subject.Organization[0] != "ahvfs test" || ca.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Errorf("CA %v, certificate %v", ca.Subject, cert.Subject)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	for _, name := range []string{"host.example", "localhost", "127.0.0.2"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err == nil {
		t.Error("the certificate names 127.0.0.1")
	}
	if time.Until(cert.NotAfter) < 365*24*time.Hour || time.Until(cert.NotBefore) > -time.Minute {
		t.Errorf("certificate valid %v to %v", cert.NotBefore, cert.NotAfter)
	}
	key, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(c.CertPEM(), key); err != nil {
		t.Errorf("key pair: %v", err)
	}
}

// TestHTTPS: a client trusting the CA file gets answers; one that does
// not fails its handshake, which the server logs to logf; Close stops
// the server and waits for it.
func TestHTTPS(t *testing.T) {
	var lg logs
	l, ca := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		simkit.WriteJSON(w, http.StatusTeapot, map[string]int{"n": 1})
	}), &lg)
	if l.Host != "127.0.0.1" || !strings.HasPrefix(l.URL, "https://127.0.0.1:") {
		t.Fatalf("host %q, URL %q", l.Host, l.URL)
	}
	c, err := simkit.HTTPClient(ca, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusTeapot || res.Header.Get("Content-Type") != "application/json" || string(b) != `{"n":1}` {
		t.Fatalf("answer %s %q %q", res.Status, res.Header.Get("Content-Type"), b)
	}
	c.CloseIdleConnections()

	if _, err := http.Get(l.URL); err == nil {
		t.Fatal("a client without the CA got an answer")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(lg.String(), "TLS handshake error") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(lg.String(), "TLS handshake error") {
		t.Errorf("logf got %q", lg.String())
	}

	l.Close()
	if _, err := c.Get(l.URL); err == nil {
		t.Error("an answer after Close")
	}
	if strings.Contains(lg.String(), "serve:") {
		t.Errorf("logf got %q", lg.String())
	}
}

// TestHTTPSCloseBeforeServe: Close without Serve releases the port.
func TestHTTPSCloseBeforeServe(t *testing.T) {
	l, err := simkit.ListenHTTPS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	ln, err := net.Listen("tcp", strings.TrimPrefix(l.URL, "https://"))
	if err != nil {
		t.Fatalf("the port is still held: %v", err)
	}
	ln.Close()
	if _, err := simkit.ListenHTTPS("127.0.0.1:-1"); err == nil || !strings.HasPrefix(err.Error(), "listen 127.0.0.1:-1: ") {
		t.Errorf("bad address: %v", err)
	}
}

// TestHTTPSUnspecified: a listener on every address advertises 127.0.0.1.
func TestHTTPSUnspecified(t *testing.T) {
	l, err := simkit.ListenHTTPS("0.0.0.0:0")
	if err != nil {
		t.Fatalf("listen on 0.0.0.0: %v", err)
	}
	defer l.Close()
	if l.Host != "127.0.0.1" || !strings.HasPrefix(l.URL, "https://127.0.0.1:") {
		t.Errorf("host %q, URL %q", l.Host, l.URL)
	}
}

// TestRecoverPanics: a panic is logged and answered by fail;
// http.ErrAbortHandler goes on up (the server drops the connection).
func TestRecoverPanics(t *testing.T) {
	var lg logs
	h := simkit.RecoverPanics(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		panic("boom")
	}), lg.logf, func(w http.ResponseWriter, _ *http.Request, v any) {
		http.Error(w, fmt.Sprint("failed: ", v), http.StatusInternalServerError)
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != http.StatusInternalServerError || strings.TrimSpace(rec.Body.String()) != "failed: boom" {
		t.Errorf("answer %d %q", rec.Code, rec.Body)
	}
	if lg.String() != "panic serving GET /x: boom" {
		t.Errorf("logf got %q", lg.String())
	}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/abort", nil))
	}()
	if strings.Contains(lg.String(), "/abort") {
		t.Errorf("logf got %q", lg.String())
	}
}

// TestWriteJSON: the status, the content type and the body; a value that
// does not marshal is a 500.
func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	simkit.WriteJSON(rec, http.StatusCreated, map[string]any{"a": []int{1}})
	if rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != `{"a":[1]}` {
		t.Errorf("answer %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	rec = httptest.NewRecorder()
	simkit.WriteJSON(rec, http.StatusOK, func() {})
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Type") == "application/json" {
		t.Errorf("unmarshalable: %d %q", rec.Code, rec.Body)
	}
}

func TestHTTPClientBadCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := simkit.HTTPClient(filepath.Join(dir, "none.crt"), time.Second); err == nil || !strings.HasPrefix(err.Error(), "read CA: ") {
		t.Errorf("missing CA file: %v", err)
	}
	junk := filepath.Join(dir, "junk.crt")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	if _, err := simkit.HTTPClient(junk, time.Second); err == nil || err.Error() != "no certificate in "+junk {
		t.Errorf("junk CA file: %v", err)
	}
}

// TestGetInventory: the request carries the wait and the basic auth; the
// answer is decoded; errors name the simulator and come in order (the CA
// before the password, the status and body of a refusal).
func TestGetInventory(t *testing.T) {
	var lg logs
	l, ca := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "root" || p != "secret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/sim/inventory" {
			http.NotFound(w, r)
			return
		}
		simkit.WriteJSON(w, http.StatusOK, map[string]string{"wait": r.URL.Query().Get("wait")})
	}), &lg)
	ctx := context.Background()
	req := simkit.InventoryRequest{URL: l.URL + "/", CAFile: ca, User: "root", Wait: 1500 * time.Millisecond,
		Password: func() (string, error) { return "secret", nil }}
	var got struct{ Wait string }
	if err := simkit.GetInventory(ctx, req, &got); err != nil || got.Wait != "1.5s" {
		t.Fatalf("inventory %+v, %v", got, err)
	}

	bad := req
	bad.Password = func() (string, error) { return "wrong", nil }
	err := simkit.GetInventory(ctx, bad, &got)
	if want := "inventory of " + req.URL + ": 401 Unauthorized: who are you"; err == nil || err.Error() != want {
		t.Errorf("wrong password: %v, want %s", err, want)
	}

	noPW := req
	noPW.Password = func() (string, error) { return "", os.ErrNotExist }
	if err := simkit.GetInventory(ctx, noPW, &got); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no password: %v", err)
	}

	noCA := noPW
	noCA.CAFile = filepath.Join(t.TempDir(), "none.crt")
	if err := simkit.GetInventory(ctx, noCA, &got); err == nil || !strings.HasPrefix(err.Error(), "inventory of "+req.URL+": read CA: ") {
		t.Errorf("no CA: %v", err)
	}

	var n int
	if err := simkit.GetInventory(ctx, req, &n); err == nil || !strings.Contains(err.Error(), ": decode: ") {
		t.Errorf("decode into an int: %v", err)
	}
}
