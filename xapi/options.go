package xapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultTimeout bounds one JSON-RPC call when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// Options configure a Client. The zero value of every field means its
// documented default; Validate reports every problem at once.
type Options struct {
	// URL is the pool master: "https://HOST[:PORT]" or "HOST[:PORT]". The
	// port defaults to 443. Required. A pool member works too: Connect
	// follows its HOST_IS_SLAVE answer to the master once.
	URL string
	// User and Password log in with session.login_with_password. User is
	// required. Neither is ever logged.
	User, Password string
	// CAFile (a file) and CAPEM hold PEM certificates trusted in addition
	// to the system roots, such as a host's self-signed certificate.
	CAFile string
	CAPEM  []byte
	// Insecure skips TLS verification (lab use only; Connect logs a
	// warning). It excludes CAFile and CAPEM.
	Insecure bool
	// Timeout bounds one JSON-RPC call. Default 2 min. HTTP transfers
	// have none: their context bounds them.
	Timeout time.Duration
	// Logger receives a debug line per call and transfer and info lines
	// for logins, with secrets redacted. Default: discard.
	Logger *slog.Logger
}

// Validate reports every problem with the options at once (errors.Join).
func (o Options) Validate() error {
	var errs []error
	if _, err := o.baseURL(); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(o.User) == "" {
		errs = append(errs, errors.New("no XAPI user"))
	}
	if o.Insecure && (o.CAFile != "" || len(o.CAPEM) > 0) {
		errs = append(errs, errors.New("Insecure excludes CAFile and CAPEM"))
	}
	if _, err := o.certPool(); err != nil {
		errs = append(errs, err)
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative XAPI timeout %s", o.Timeout))
	}
	return errors.Join(errs...)
}

// baseURL returns "https://host:port" of URL.
func (o Options) baseURL() (*url.URL, error) {
	s := strings.TrimSpace(o.URL)
	if s == "" {
		return nil, errors.New("no XAPI URL")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("XAPI URL %q: %w", o.URL, err)
	case u.Scheme != "https":
		return nil, fmt.Errorf("XAPI URL %q: the scheme must be https", o.URL)
	case u.Hostname() == "":
		return nil, fmt.Errorf("XAPI URL %q: no host", o.URL)
	case u.User != nil:
		return nil, fmt.Errorf("XAPI URL %q: credentials belong in User and Password", o.URL)
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return nil, fmt.Errorf("XAPI URL %q: must not have a path or query", o.URL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	return &url.URL{Scheme: "https", Host: host}, nil
}

// certPool returns the system roots plus CAFile and CAPEM, or nil when
// neither is set (crypto/tls then uses the system roots).
func (o Options) certPool() (*x509.CertPool, error) {
	if o.CAFile == "" && len(o.CAPEM) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("XAPI CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("XAPI CA file %s: no PEM certificate", o.CAFile)
		}
	}
	if len(o.CAPEM) > 0 && !pool.AppendCertsFromPEM(o.CAPEM) {
		return nil, errors.New("XAPI CAPEM: no PEM certificate")
	}
	return pool, nil
}

func (o Options) tlsConfig() (*tls.Config, error) {
	pool, err := o.certPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, InsecureSkipVerify: o.Insecure}, nil
}
