package nutanix

import (
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

// APIVersion selects which Prism API family the client speaks.
type APIVersion string

const (
	// APIAuto probes the cluster and picks v4 when every namespace the
	// jobs need answers, else v3 (+ v2 for volume groups).
	APIAuto APIVersion = "auto"
	// APIV4 uses the v4 namespaces (vmm, dataprotection, volumes, prism,
	// clustermgmt, networking) on Prism Central pc.2024.3+ / AOS 7.
	APIV4 APIVersion = "v4"
	// APIV3 uses v3 (vms, vm_snapshots, data/changed_regions, images) plus
	// v2.0 (cluster, volume groups) — Prism Element.
	APIV3 APIVersion = "v3"
	// APIV2 only labels snapshots made through v2.0 (no CBT); it cannot
	// be selected.
	APIV2 APIVersion = "v2"
)

// ParseAPIVersion accepts "auto", "v4", "v3" (and "" for auto).
func ParseAPIVersion(s string) (APIVersion, error) {
	switch v := APIVersion(strings.ToLower(strings.TrimSpace(s))); v {
	case "", APIAuto:
		return APIAuto, nil
	case APIV4, APIV3:
		return v, nil
	case "v2":
		return APIV3, nil
	}
	return "", fmt.Errorf("unknown API version %q (want auto, v4 or v3)", s)
}

// Environment variables read for the password, in this order after
// Options.PasswordFile. A password is never taken from argv.
const (
	EnvPasswordFile = "AHVFS_PASSWORD_FILE"
	EnvPassword     = "AHVFS_PASSWORD"
)

// maxAttemptsLimit caps Options.MaxAttempts: more attempts only hide an
// outage for longer.
const maxAttemptsLimit = 100

// Options configure a Client. Zero values mean the documented default.
type Options struct {
	// Endpoint is the Prism address: "host", "host:port" or
	// "https://host:port". The port defaults to 9440. Required.
	Endpoint string
	// User defaults to "admin".
	User string
	// PasswordFile holds the password (first line, trailing newline
	// ignored). If empty, $AHVFS_PASSWORD_FILE and then $AHVFS_PASSWORD are
	// used. There is deliberately no password field fed from flags.
	PasswordFile string
	// CACertFile is a PEM bundle trusted in addition to the system roots.
	CACertFile string
	// Insecure disables TLS verification (lab only). New logs a warning
	// on every run.
	Insecure bool
	// API defaults to APIAuto.
	API APIVersion
	// RateLimit caps requests per second sent by this client (all
	// attempts, including retries). Default 20; negative means unlimited.
	RateLimit float64
	// Timeout bounds connecting and waiting for response headers of one
	// attempt (a slow server counts as a timeout and is retried). Default 60s.
	Timeout time.Duration
	// MaxAttempts is how many times one request is sent at most, the
	// first time included, when it fails in a way worth retrying (429,
	// 500, 502, 503, 504, a timeout, a reset connection) and is safe to
	// repeat. The retry policy is described in one place, transport.go.
	// Default 5; 1 sends every request once; at most 100.
	MaxAttempts int
	// RetryBudget bounds the retries of one request in time: no attempt
	// starts later than this after the first. Default 2m.
	RetryBudget time.Duration
	// RetryBaseDelay is the delay before the second attempt (doubled for
	// each further one, with jitter, capped by RetryMaxDelay). Defaults
	// 500ms and 30s. A Retry-After header is honoured up to RetryMaxDelay.
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// TaskTimeout bounds WaitTask when the context has no earlier
	// deadline. Default 1h.
	TaskTimeout time.Duration
	// TaskPollInterval is the first task poll delay (grows by half each
	// poll, to 5s). Default 25ms: volume group, disk and attach tasks
	// often finish in well under a second, and a task of several seconds
	// costs only a few more polls than with a longer first delay.
	TaskPollInterval time.Duration
	// Logger receives debug lines for every HTTP attempt (secrets
	// redacted) and warnings. Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.User == "" {
		o.User = "admin"
	}
	if o.API == "" {
		o.API = APIAuto
	}
	if o.RateLimit == 0 {
		o.RateLimit = 20
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBudget == 0 {
		o.RetryBudget = 2 * time.Minute
	}
	if o.RetryBaseDelay == 0 {
		o.RetryBaseDelay = 500 * time.Millisecond
	}
	if o.RetryMaxDelay == 0 {
		o.RetryMaxDelay = 30 * time.Second
	}
	if o.TaskTimeout == 0 {
		o.TaskTimeout = time.Hour
	}
	if o.TaskPollInterval == 0 {
		o.TaskPollInterval = 25 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// BaseURL returns the normalised "https://host:port" of Endpoint.
func (o Options) BaseURL() (*url.URL, error) {
	ep := strings.TrimSpace(o.Endpoint)
	if ep == "" {
		return nil, errors.New("no Prism endpoint (--prism or AHVFS_PRISM)")
	}
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return nil, fmt.Errorf("Prism endpoint %q: %w", o.Endpoint, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("Prism endpoint %q: scheme must be https", o.Endpoint)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("Prism endpoint %q: no host", o.Endpoint)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "9440")
	}
	u.Path, u.RawQuery, u.Fragment, u.User = "", "", "", nil
	return u, nil
}

// Validate reports every problem with the options at once (errors.Join).
func (o Options) Validate() error {
	var errs []error
	if _, err := o.BaseURL(); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseAPIVersion(string(o.API)); err != nil {
		errs = append(errs, err)
	}
	if _, err := o.password(); err != nil {
		errs = append(errs, err)
	}
	if o.CACertFile != "" {
		if _, err := loadCA(o.CACertFile); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Insecure && o.CACertFile != "" {
		errs = append(errs, errors.New("--insecure and --ca-cert are mutually exclusive"))
	}
	if o.Timeout < 0 || o.TaskTimeout < 0 || o.RetryBaseDelay < 0 || o.RetryMaxDelay < 0 || o.RetryBudget < 0 || o.TaskPollInterval < 0 {
		errs = append(errs, errors.New("timeouts and delays must not be negative"))
	}
	if o.MaxAttempts < 0 || o.MaxAttempts > maxAttemptsLimit {
		errs = append(errs, fmt.Errorf("MaxAttempts %d is outside 1..%d (0: the default, 5)", o.MaxAttempts, maxAttemptsLimit))
	}
	if o.RetryBaseDelay > 0 && o.RetryMaxDelay > 0 && o.RetryBaseDelay > o.RetryMaxDelay {
		errs = append(errs, fmt.Errorf("RetryBaseDelay %s is longer than RetryMaxDelay %s", o.RetryBaseDelay, o.RetryMaxDelay))
	}
	if strings.ContainsAny(o.User, ":\n") {
		errs = append(errs, errors.New("user name must not contain ':' or a newline"))
	}
	return errors.Join(errs...)
}

// password resolves the password from PasswordFile, $AHVFS_PASSWORD_FILE or
// $AHVFS_PASSWORD.
func (o Options) password() (string, error) {
	file, from := o.PasswordFile, "password file"
	if file == "" {
		file, from = os.Getenv(EnvPasswordFile), "$"+EnvPasswordFile
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", from, err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimRight(pw, "\r")
		if pw == "" {
			return "", fmt.Errorf("%s %s is empty", from, file)
		}
		return pw, nil
	}
	if pw := os.Getenv(EnvPassword); pw != "" {
		return pw, nil
	}
	return "", errors.New("no password: use --password-file, $" + EnvPasswordFile + " or $" + EnvPassword)
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA certificate %s: no PEM certificate found", file)
	}
	return pool, nil
}
