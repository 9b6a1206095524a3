package simkit

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Password settles a simulator's admin password: given when it is not
// empty, else the one in file (its content, trimmed), else a random one,
// prefix and 24 hex digits. It writes the password and a newline to file
// (mode 0600) in every case, so that a client finds it there.
func Password(file, given, prefix string) (string, error) {
	pw := given
	if pw == "" {
		if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			pw = strings.TrimSpace(string(b))
		}
	}
	if pw == "" {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		pw = prefix + hex.EncodeToString(b[:])
	}
	if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write password file: %w", err)
	}
	return pw, nil
}

// NewUUID returns a random (version 4) UUID in its canonical form.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// HTTPS is a simulator's HTTPS listener and, once Serve is called, the
// server on it. Its methods are not safe for concurrent use.
type HTTPS struct {
	// Host is the listener's IP address, or 127.0.0.1 when it listens on
	// every address: the address a simulator advertises.
	Host string
	// URL is https://Host:port.
	URL string

	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when the serving goroutine ends
}

// ListenHTTPS listens on the TCP address addr ("127.0.0.1:0": a free
// port). Serve serves on it; Close releases it.
func ListenHTTPS(addr string) (*HTTPS, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	a := ln.Addr().(*net.TCPAddr)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return &HTTPS{Host: host, URL: "https://" + net.JoinHostPort(host, fmt.Sprint(a.Port)), ln: ln}, nil
}

// Serve serves h over TLS with conf in a goroutine of its own, until
// Close. The server's own complaints (a client's failed TLS handshake,
// which tests of a wrong CA cause on purpose) go to logf, not to the
// process's stderr, as does an error that stops it ("serve: …").
func (s *HTTPS) Serve(h http.Handler, conf *tls.Config, logf func(format string, args ...any)) {
	s.srv = &http.Server{
		Handler:           h,
		TLSConfig:         conf,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(logfWriter(logf), "", 0),
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.ServeTLS(s.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("serve: %v", err)
		}
	}()
}

// Close stops the server: it stops listening, gives requests under way 5
// seconds to end, then drops their connections, and waits for the serving
// goroutine. Before Serve, it closes the listener.
func (s *HTTPS) Close() {
	if s.srv == nil {
		s.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}

// logfWriter adapts a Logf function to an io.Writer for log.Logger.
type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
