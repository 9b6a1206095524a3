package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/console/auth"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics and /healthz; with basic authentication
// configured, /metrics needs it (/healthz stays open for probes). With a
// users file it also serves the web console's API under /api/v1/ (see
// package console), and /metrics, unless basic authentication guards it,
// needs a console user who sees every VM; the returned close ends the
// console's audit log.
func (d *Daemon) Handler(h HTTPConfig) (http.Handler, func(), error) {
	mux := http.NewServeMux()
	closeConsole := func() {}
	var cons *console.Console
	if h.Users != "" {
		audit, err := auth.OpenAuditFile(h.AuditLog)
		if err != nil {
			return nil, nil, fmt.Errorf("http.audit_log: %w", err)
		}
		a, err := auth.New(auth.Options{UsersFile: h.Users, Audit: audit, Log: d.log, Now: d.clock.Now, TrustedProxies: h.proxies})
		if err != nil {
			audit.Close()
			return nil, nil, fmt.Errorf("http.users: %w", err)
		}
		cons = console.New(a, consoleSource{d}, consoleSource{d}, consoleSource{d})
		cons.Routes(mux)
		closeConsole = func() { a.Close(); audit.Close() }
	}
	metrics := promhttp.HandlerFor(d.Registry(), promhttp.HandlerOpts{ErrorLog: nil})
	if h.BasicUser != "" {
		pw, err := os.ReadFile(h.BasicPasswordFile)
		if err != nil {
			closeConsole()
			return nil, nil, fmt.Errorf("http.basic_password_file: %w", err)
		}
		metrics = basicAuth(h.BasicUser, strings.TrimRight(string(pw), "\r\n"), metrics)
	}
	if cons != nil && h.BasicUser == "" {
		// The series name every VM: with console users, /metrics is for
		// those who see every VM (Prometheus sends a bearer token).
		metrics = cons.Unscoped(metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", d.healthz)
	return mux, closeConsole, nil
}

// basicAuth compares hashes in constant time, so neither the user nor the
// password leaks through timing.
func basicAuth(user, password string, next http.Handler) http.Handler {
	wantU, wantP := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotU, gotP := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotU[:], wantU[:])&subtle.ConstantTimeCompare(gotP[:], wantP[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="ahvfs"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// healthz answers 200 while the scheduler loop runs.
func (d *Daemon) healthz(w http.ResponseWriter, r *http.Request) {
	s := d.stats
	s.mu.Lock()
	body := map[string]any{"status": "ok", "started": s.started.UTC(), "jobs_running": s.running, "jobs_queued": s.queued,
		"repository_stats_ok": s.repoOK}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

// Serve listens on h.Listen until ctx ends: HTTPS when a certificate is
// configured, requiring client certificates signed by ClientCA when set.
// ready, when not nil, receives the bound address.
func (d *Daemon) Serve(ctx context.Context, h HTTPConfig, ready func(addr string)) error {
	handler, closeConsole, err := d.Handler(h)
	if err != nil {
		return err
	}
	defer closeConsole()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	ln, err := net.Listen("tcp", h.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	if h.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(h.TLSCert, h.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("http TLS: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if h.ClientCA != "" {
			pem, err := os.ReadFile(h.ClientCA)
			if err != nil {
				ln.Close()
				return fmt.Errorf("http.client_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				ln.Close()
				return fmt.Errorf("http.client_ca %s: no certificate", h.ClientCA)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		ln = tls.NewListener(ln, tc)
	}
	if h.BasicUser != "" && h.TLSCert == "" {
		d.log.Warn("http: basic authentication without TLS sends the password in clear: set tls_cert and tls_key")
	}
	if ready != nil {
		ready(ln.Addr().String())
	}
	d.log.Info("serving /metrics and /healthz", "addr", ln.Addr().String(), "tls", h.TLSCert != "", "mtls", h.ClientCA != "", "console", h.Users != "")
	// Serve returns as soon as Shutdown begins: the console (its audit
	// log) is closed only once the requests have drained, or been cut
	// after 5 s.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-drained
		return nil
	}
	srv.Close()
	return err
}
