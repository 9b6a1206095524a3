package nutanix

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// The HTTP stack is a chain of http.RoundTripper decorators around one
// reused *http.Transport, outermost first:
//
//	requestID → retry → rateLimit → auth → log → http.Transport
//
// requestID is outside retry so every attempt of one logical request carries
// the same NTNX-Request-Id (what makes a retried v4 POST safe); auth is
// inside retry so each attempt uses the current session cookie; log is
// innermost so every attempt is logged once.

var (
	_ http.RoundTripper = (*requestIDTransport)(nil)
	_ http.RoundTripper = (*retryTransport)(nil)
	_ http.RoundTripper = (*rateLimitTransport)(nil)
	_ http.RoundTripper = (*authTransport)(nil)
	_ http.RoundTripper = (*logTransport)(nil)
)

type ctxKey int

const (
	keyRetryable ctxKey = iota // a POST that is safe to repeat (…/list, data/changed_regions)
	keyNoAuth                  // send no credentials (the caller set its own, e.g. the v4 JWT cookie)
)

func withRetryable(ctx context.Context) context.Context {
	return context.WithValue(ctx, keyRetryable, true)
}

func withNoAuth(ctx context.Context) context.Context { return context.WithValue(ctx, keyNoAuth, true) }

func ctxFlag(ctx context.Context, k ctxKey) bool { v, _ := ctx.Value(k).(bool); return v }

// headerRequestID is the v4 idempotence / tracing header.
const headerRequestID = "NTNX-Request-Id"

// headerAttempts is set by retryTransport on the response it returns, so an
// error can say how many attempts were made. It never leaves the process.
const headerAttempts = "X-Ahvfs-Attempts"

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newHTTPClient builds the one *http.Client a Client uses for its lifetime.
func newHTTPClient(o Options, password string) (*http.Client, *http.Transport, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACertFile != "" {
		pool, err := loadCA(o.CACertFile)
		if err != nil {
			return nil, nil, err
		}
		tlsConf.RootCAs = pool
	}
	if o.Insecure {
		tlsConf.InsecureSkipVerify = true
	}
	dialer := &net.Dialer{Timeout: min(o.Timeout, 30*time.Second), KeepAlive: 30 * time.Second}
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   min(o.Timeout, 30*time.Second),
		ResponseHeaderTimeout: o.Timeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	var limiter *rate.Limiter
	if o.RateLimit > 0 {
		limiter = rate.NewLimiter(rate.Limit(o.RateLimit), max(1, int(o.RateLimit)))
	}
	var rt http.RoundTripper = &logTransport{next: base, log: o.Logger}
	rt = &authTransport{next: rt, user: o.User, password: password}
	if limiter != nil {
		rt = &rateLimitTransport{next: rt, limiter: limiter}
	}
	rt = &retryTransport{next: rt, retries: max(o.Retries, 0), base: o.RetryBaseDelay, max: o.RetryMaxDelay, log: o.Logger}
	rt = &requestIDTransport{next: rt}
	return &http.Client{
		Transport: rt,
		// Prism redirects (302 with X-Redirect-Token) are followed by
		// net/http; credentials are re-added by authTransport per hop.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if t := via[len(via)-1].Response; t != nil {
				if tok := t.Header.Get("X-Redirect-Token"); tok != "" {
					req.Header.Set("Cookie", tok)
				}
			}
			return nil
		},
	}, base, nil
}

// requestIDTransport adds a fresh NTNX-Request-Id to every v4 request that
// has none.
type requestIDTransport struct{ next http.RoundTripper }

func (t *requestIDTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if isV4Path(req.URL.Path) && req.Header.Get(headerRequestID) == "" {
		req = req.Clone(req.Context())
		req.Header.Set(headerRequestID, newUUID())
	}
	return t.next.RoundTrip(req)
}

func isV4Path(p string) bool {
	// /api/<namespace>/v4.<r>/...
	rest, ok := strings.CutPrefix(p, "/api/")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	return ok && strings.HasPrefix(rest, "v4.")
}

// retryTransport retries 429 always (the server did not act on the request)
// and 502/503/504, timeouts and dropped connections when the request is
// safe to repeat: an idempotent method, an NTNX-Request-Id, or a context
// marked with withRetryable. The delay is exponential with full jitter,
// at least what Retry-After asks, at most max.
type retryTransport struct {
	next    http.RoundTripper
	retries int
	base    time.Duration
	max     time.Duration
	log     *slog.Logger
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	safe := isIdempotent(req)
	rewindable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.next.RoundTrip(r)
		retry, why := false, ""
		var after time.Duration
		switch {
		case err != nil:
			retry, why = safe && isTransient(err) && ctx.Err() == nil, err.Error()
		case resp.StatusCode == http.StatusTooManyRequests:
			retry, why = true, resp.Status
			after = retryAfter(resp.Header.Get("Retry-After"))
		case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusServiceUnavailable,
			resp.StatusCode == http.StatusGatewayTimeout:
			retry, why = safe, resp.Status
			after = retryAfter(resp.Header.Get("Retry-After"))
		}
		if !retry || !rewindable || attempt >= t.retries {
			if attempt > 0 {
				if err != nil {
					return nil, fmt.Errorf("%w (gave up after %d attempts)", err, attempt+1)
				}
				resp.Header.Set(headerAttempts, strconv.Itoa(attempt+1))
			}
			return resp, err
		}
		if resp != nil {
			drainClose(resp.Body)
		}
		d := t.backoff(attempt)
		if after > d {
			d = min(after, t.max)
		}
		t.log.Debug("prism retry", "method", req.Method, "path", req.URL.Path, "attempt", attempt+1, "reason", why, "delay", d)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (t *retryTransport) backoff(attempt int) time.Duration {
	d := t.base << min(attempt, 20)
	if d <= 0 || d > t.max {
		d = t.max
	}
	// "equal jitter": half fixed, half random, so delays never collapse to 0.
	return d/2 + rand.N(d/2+1)
}

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get(headerRequestID) != "" || ctxFlag(req.Context(), keyRetryable)
}

// isTransient reports errors worth another attempt: timeouts, resets, a
// connection closed under us. Refused connections and TLS failures are not.
func isTransient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

// retryAfter parses a Retry-After header (seconds or HTTP date).
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func drainClose(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// rateLimitTransport waits for a token before each attempt.
type rateLimitTransport struct {
	next    http.RoundTripper
	limiter *rate.Limiter
}

func (t *rateLimitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.limiter.Wait(req.Context()); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(req)
}

// sessionCookieNames are the Prism session cookies worth keeping: PE and PC
// without IAMv2 (IGW), PC with IAMv2 (IAM), and Java sessions.
func isSessionCookie(name string) bool {
	switch name {
	case "JSESSIONID", "NTNX_IGW_SESSION", "NTNX_MERCURY_IGW_SESSION",
		"NTNX_IAM_SESSION", "NTNX_MERCURY_IAM_SESSION", "NTNX_MERCURY_IAM_REFRESH_TOKEN":
		return true
	}
	return strings.Contains(strings.ToUpper(name), "SESSION")
}

// authTransport sends HTTP Basic credentials until Prism hands out a session
// cookie, then sends the cookie instead. A 401 while using the cookie (the
// session expired) clears it and repeats the attempt once with Basic auth.
// Requests whose body cannot be replayed always use Basic auth.
type authTransport struct {
	next     http.RoundTripper
	user     string
	password string

	mu      sync.Mutex
	cookies map[string]map[string]*http.Cookie // host → name → cookie
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if ctxFlag(req.Context(), keyNoAuth) {
		return t.next.RoundTrip(req)
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	host := req.URL.Host
	r := req.Clone(req.Context())
	usedCookie := false
	if replayable {
		if c := t.cookieHeader(host); c != "" {
			r.Header.Set("Cookie", c)
			usedCookie = true
		}
	}
	if !usedCookie {
		r.SetBasicAuth(t.user, t.password)
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && usedCookie {
		drainClose(resp.Body)
		t.clear(host)
		r = req.Clone(req.Context())
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r.Body = body
		}
		r.SetBasicAuth(t.user, t.password)
		resp, err = t.next.RoundTrip(r)
		if err != nil {
			return nil, err
		}
	}
	t.remember(host, resp)
	return resp, nil
}

func (t *authTransport) cookieHeader(host string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	now := time.Now()
	for name, c := range t.cookies[host] {
		if !c.Expires.IsZero() && c.Expires.Before(now) {
			delete(t.cookies[host], name)
			continue
		}
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

func (t *authTransport) clear(host string) {
	t.mu.Lock()
	delete(t.cookies, host)
	t.mu.Unlock()
}

func (t *authTransport) remember(host string, resp *http.Response) {
	if resp.StatusCode == http.StatusUnauthorized {
		t.clear(host)
		return
	}
	cs := resp.Cookies()
	if len(cs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cs {
		if !isSessionCookie(c.Name) {
			continue
		}
		if t.cookies == nil {
			t.cookies = map[string]map[string]*http.Cookie{}
		}
		if t.cookies[host] == nil {
			t.cookies[host] = map[string]*http.Cookie{}
		}
		if c.Value == "" || c.MaxAge < 0 {
			delete(t.cookies[host], c.Name)
			continue
		}
		if c.MaxAge > 0 {
			c.Expires = time.Now().Add(time.Duration(c.MaxAge) * time.Second)
		}
		t.cookies[host][c.Name] = c
	}
}

// logTransport logs every attempt at debug level, secrets redacted.
type logTransport struct {
	next http.RoundTripper
	log  *slog.Logger
}

func (t *logTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.log.Enabled(req.Context(), slog.LevelDebug) {
		return t.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	attrs := []any{"method", req.Method, "url", req.URL.Redacted(), "request_headers", redactHeaders(req.Header), "elapsed", time.Since(start).Round(time.Millisecond)}
	if err != nil {
		t.log.Debug("prism request failed", append(attrs, "err", err)...)
		return nil, err
	}
	t.log.Debug("prism request", append(attrs, "status", resp.StatusCode, "response_headers", redactHeaders(resp.Header))...)
	return resp, nil
}

// redactHeaders renders headers for a log line with credentials replaced.
func redactHeaders(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(k)
			b.WriteString("=")
			b.WriteString(redactHeaderValue(k, v))
		}
	}
	return b.String()
}

func redactHeaderValue(k, v string) string {
	switch http.CanonicalHeaderKey(k) {
	case "Authorization", "Proxy-Authorization", "X-Ntnx-Api-Key", "X-Redirect-Token":
		if scheme, _, ok := strings.Cut(v, " "); ok {
			return scheme + " REDACTED"
		}
		return "REDACTED"
	case "Cookie", "Set-Cookie":
		// keep cookie names, drop values
		var names []string
		for _, part := range strings.Split(v, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name != "" && !strings.EqualFold(name, "path") && !strings.EqualFold(name, "expires") {
				names = append(names, name+"=REDACTED")
			}
		}
		return strings.Join(names, ",")
	}
	return v
}
