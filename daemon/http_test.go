package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/daemon"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/testtls"
)

// TestHTTPListener: /metrics and /healthz over TLS with client
// certificates required (a client without one is refused at the
// handshake), and basic authentication on /metrics, which /healthz does
// not need.
func TestHTTPListener(t *testing.T) {
	dir := t.TempDir()
	ca := testtls.NewCA(t, dir, "metrics")
	srvCert, srvKey := ca.Server(t, "daemon")
	cliCert, cliKey := ca.Client(t, "prometheus")
	pwFile := filepath.Join(dir, "metrics.pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	repo := t.TempDir()
	d := daemon.New(&daemon.Config{}, daemon.Options{OpenRepo: func(ctx context.Context, _ *daemon.Config, w bool) (*engine.Repository, error) {
		return engine.Open(ctx, repo, engine.OpenOptions{Writable: w})
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- d.Serve(ctx, daemon.HTTPConfig{Listen: "127.0.0.1:0", TLSCert: srvCert, TLSKey: srvKey, ClientCA: ca.CertFile,
			BasicUser: "prom", BasicPasswordFile: pwFile}, func(a string) { addr <- a })
	}()
	base := "https://" + <-addr
	pem, _ := os.ReadFile(ca.CertFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: pool}
		if withCert {
			c, err := tls.LoadX509KeyPair(cliCert, cliKey)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
	}
	get := func(c *http.Client, path, user, pw string) (int, string, error) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if _, _, err := get(client(false), "/healthz", "", ""); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	withCert := client(true)
	if code, body, err := get(withCert, "/healthz", "", ""); err != nil || code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s %v", code, body, err)
	}
	if code, _, err := get(withCert, "/metrics", "", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("metrics without basic auth: %d %v", code, err)
	}
	if code, _, err := get(withCert, "/metrics", "prom", "wrong"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("metrics with a wrong password: %d %v", code, err)
	}
	if code, body, err := get(withCert, "/metrics", "prom", "s3cret"); err != nil || code != 200 || !strings.Contains(body, "ahvfs_jobs_queued 0") {
		t.Fatalf("metrics: %d %v\n%s", code, err, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
