package nbd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options configure a Client. The zero value of every field means its
// documented default; Validate reports every problem at once.
type Options struct {
	// Address is the server: "host:port", "host" (port 10809),
	// "[v6]:port", or "unix:/path" for a Unix domain socket. Required.
	Address string
	// Export is the export name; empty selects the server's default
	// export.
	Export string

	// TLS upgrades the connection with NBD_OPT_STARTTLS before any other
	// option and fails when the server cannot (ErrTLSUnavailable). It is
	// implied by TLSConfig, CAFile, CAPEM, CertFile and ServerName.
	// Default off: a server that requires TLS then fails Dial with
	// ErrTLSRequired.
	TLS bool
	// TLSConfig is the base TLS configuration; it is cloned, and the
	// fields below fill what it leaves unset. Default: the system's root
	// CAs, the host of Address as the server name, TLS 1.2 at least.
	TLSConfig *tls.Config
	// CAFile and CAPEM hold PEM certificates of the authorities that may
	// sign the server's certificate, instead of the system's roots (an
	// XCP-ng host hands out its certificate this way). Default none.
	CAFile string
	CAPEM  []byte
	// CertFile and KeyFile are a client certificate and its key, for a
	// server that checks its clients. Default none.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry.
	// Default the host of Address; required for TLS over a Unix socket.
	ServerName string
	// InsecureSkipVerify accepts any server certificate. Lab use only.
	InsecureSkipVerify bool

	// QueueDepth is the number of requests kept in flight at most.
	// Default 8; 1 to 1024.
	QueueDepth int
	// MaxRequest is the largest read sent as one request; longer reads
	// are split and their parts put in flight together (in requests of
	// at most 256 KiB when QueueDepth is above 1: see ReadAtContext). It is
	// lowered to the server's maximum payload when the server advertises
	// one. Default 32 MiB (the size every server must accept); 512 B to
	// 1 GiB.
	MaxRequest int
	// NoStructuredReplies keeps to simple replies (no
	// NBD_OPT_STRUCTURED_REPLY, hence no holes in read replies and no
	// block status). Default: structured replies are negotiated when the
	// server offers them.
	NoStructuredReplies bool

	// DialTimeout bounds the connect. Default 10 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the whole negotiation, TLS included.
	// Default 30 s.
	HandshakeTimeout time.Duration
	// IOTimeout is how long the server may stay silent while requests
	// are outstanding before the connection is declared dead and every
	// request fails (ErrConnectionLost wrapping a timeout). Default 60 s.
	IOTimeout time.Duration
	// DialContext opens the connection. Default net.Dialer.DialContext
	// with DialTimeout.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// Logger receives connection events at info level and protocol
	// detail at debug level. Default: discard.
	Logger *slog.Logger
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	network, _, _, err := splitAddress(o.Address)
	if err != nil {
		errs = append(errs, err)
	}
	if err := checkString(o.Export); err != nil {
		errs = append(errs, fmt.Errorf("Export: %w", err))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("CertFile and KeyFile go together"))
	}
	if err == nil && network == "unix" && o.wantTLS() && !o.InsecureSkipVerify && o.ServerName == "" &&
		(o.TLSConfig == nil || o.TLSConfig.ServerName == "" && !o.TLSConfig.InsecureSkipVerify) {
		errs = append(errs, errors.New("TLS over a Unix socket needs ServerName"))
	}
	chk := func(name string, v, lo, hi int) {
		if v != 0 && (v < lo || v > hi) {
			errs = append(errs, fmt.Errorf("%s %d out of range [%d, %d]", name, v, lo, hi))
		}
	}
	chk("QueueDepth", o.QueueDepth, 1, 1024)
	chk("MaxRequest", o.MaxRequest, 512, 1<<30)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DialTimeout", o.DialTimeout}, {"HandshakeTimeout", o.HandshakeTimeout}, {"IOTimeout", o.IOTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s is negative", d.name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nbd options: %w", errors.Join(errs...))
	}
	return nil
}

func (o *Options) wantTLS() bool {
	return o.TLS || o.TLSConfig != nil || o.CAFile != "" || len(o.CAPEM) > 0 || o.CertFile != "" || o.ServerName != ""
}

// withDefaults returns a copy with every zero field set to its default.
func (o Options) withDefaults() Options {
	o.TLS = o.wantTLS()
	if o.QueueDepth == 0 {
		o.QueueDepth = 8
	}
	if o.MaxRequest == 0 {
		o.MaxRequest = 32 << 20
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.IOTimeout == 0 {
		o.IOTimeout = 60 * time.Second
	}
	if o.DialContext == nil {
		d := &net.Dialer{Timeout: o.DialTimeout}
		o.DialContext = d.DialContext
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// tlsConfig builds the client's TLS configuration for a server at host.
func (o *Options) tlsConfig(host string) (*tls.Config, error) {
	var cfg *tls.Config
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.ServerName == "" {
		cfg.ServerName = o.ServerName
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if o.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	if o.CAFile != "" || len(o.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if o.CAFile != "" {
			b, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
			}
		}
		if len(o.CAPEM) > 0 && !pool.AppendCertsFromPEM(o.CAPEM) {
			return nil, errors.New("CAPEM holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}

// splitAddress parses Options.Address into what net.Dial takes and the
// host name a certificate is checked against.
func splitAddress(a string) (network, address, host string, err error) {
	if a == "" {
		return "", "", "", errors.New("Address is required")
	}
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		if p == "" {
			return "", "", "", fmt.Errorf("bad address %q: empty socket path", a)
		}
		return "unix", p, "", nil
	}
	if h, pt, err := net.SplitHostPort(a); err == nil {
		if n, err := strconv.ParseUint(pt, 10, 16); h == "" || err != nil || n == 0 {
			return "", "", "", fmt.Errorf("bad address %q", a)
		}
		return "tcp", a, h, nil
	}
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		h := a[1 : len(a)-1]
		return "tcp", net.JoinHostPort(h, DefaultPort), h, nil
	}
	if strings.Contains(a, ":") || strings.ContainsAny(a, " /") {
		return "", "", "", fmt.Errorf("bad address %q", a)
	}
	return "tcp", net.JoinHostPort(a, DefaultPort), a, nil
}

// checkString applies proto.md's rules for strings: no NUL, at most 4096
// bytes.
func checkString(s string) error {
	if len(s) > maxStringLen {
		return fmt.Errorf("longer than %d bytes", maxStringLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("contains NUL")
	}
	return nil
}
