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
//
// # Retry policy
//
// retryTransport is the one place where a failed Prism request is sent
// again. Nothing above it (backends, jobs) repeats a request that failed:
// the error it returns already says how many attempts were made
// (APIError.Attempts, or "gave up after N attempts").
//
// A request is repeatable when sending it twice has the effect of sending
// it once, and its body can be replayed:
//   - GET, HEAD, OPTIONS, PUT and DELETE (a v3 PUT carries the
//     spec_version it read; a repeated DELETE finds the object gone);
//   - a request with a client-chosen idempotency key: every v4 request
//     carries an NTNX-Request-Id, set once above the retries; v3 creates
//     send metadata.uuid and v2.0 snapshot creates a uuid (request.idempotent);
//   - a POST that only reads or whose repetition is harmless: v3 …/list,
//     data/changed_regions, v2.0 volume group open/close (request.idempotent).
//
// Every other request (a v2.0 volume group create, an image upload's
// stream) is sent once: after a 500 or a timeout the server may have acted
// on it, and a second one could make a second object.
//
// A repeatable request is sent again after 429, 500, 502, 503 or 504, a
// timeout, or a connection reset or closed under it. A 429 is also
// repeated for a request that is not repeatable: the server refused it
// without acting on it. Any other answer is final.
//
// Attempts and delays (Options):
//   - at most MaxAttempts attempts in all, the first included (default 5);
//   - the delay before attempt n+1 is RetryBaseDelay·2^(n-1) (default
//     500ms) with equal jitter (half fixed, half random), capped at
//     RetryMaxDelay (default 30s); a Retry-After asking for more is
//     honoured up to RetryMaxDelay;
//   - no attempt starts later than RetryBudget (default 2m) after the
//     first, nor after the context's deadline: the last answer is
//     returned instead of a context error.
//
// The last answer is returned as it came, with the count of attempts: an
// *APIError whose Attempts is how many were sent and whose Error() ends
// "(gave up after N attempts)", or "(sent once: why)" when the request
// was not repeatable; a transport error says the same.

var (
	_ http.RoundTripper = (*requestIDTransport)(nil)
	_ http.RoundTripper = (*retryTransport)(nil)
	_ http.RoundTripper = (*rateLimitTransport)(nil)
	_ http.RoundTripper = (*authTransport)(nil)
	_ http.RoundTripper = (*logTransport)(nil)
)

type ctxKey int

const (
	keyIdempotent ctxKey = iota // a POST that may be repeated (request.idempotent)
	keyNoAuth                   // send no credentials (the caller set its own, e.g. the v4 JWT cookie)
)

func withIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, keyIdempotent, true)
}

func withNoAuth(ctx context.Context) context.Context { return context.WithValue(ctx, keyNoAuth, true) }

func ctxFlag(ctx context.Context, k ctxKey) bool { v, _ := ctx.Value(k).(bool); return v }

// headerRequestID is the v4 idempotence / tracing header.
const headerRequestID = "NTNX-Request-Id"

// headerAttempts and headerRetryStop are set by retryTransport on the
// response it returns, so an error can say how many attempts were made and
// why no more. They never leave the process.
const (
	headerAttempts  = "X-Ahvfs-Attempts"
	headerRetryStop = "X-Ahvfs-Retry-Stop"
)

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
	rt = &retryTransport{next: rt, attempts: o.MaxAttempts, budget: o.RetryBudget, base: o.RetryBaseDelay, max: o.RetryMaxDelay, log: o.Logger}
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

// retryTransport implements the retry policy described at the top of this
// file.
type retryTransport struct {
	next     http.RoundTripper
	attempts int           // Options.MaxAttempts
	budget   time.Duration // Options.RetryBudget
	base     time.Duration // Options.RetryBaseDelay
	max      time.Duration // Options.RetryMaxDelay
	log      *slog.Logger
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	once := notRepeatable(req)
	stream := req.Body != nil && req.Body != http.NoBody && req.GetBody == nil
	start := time.Now()
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.next.RoundTrip(r)
		why, after := retryable(ctx, resp, err)
		stop := ""
		var d time.Duration
		switch {
		case why == "":
			// a final answer: success, or a failure no retry can change
		case stream || once != "" && (resp == nil || resp.StatusCode != http.StatusTooManyRequests):
			stop = once
		case attempt >= t.attempts:
			why = "" // the attempts are spent: "gave up after N attempts"
		default:
			d = t.backoff(attempt)
			if after > d {
				d = min(after, t.max)
			}
			if time.Since(start)+d > t.budget {
				stop = fmt.Sprintf("the retry budget of %s is spent", t.budget)
			} else if dl, ok := ctx.Deadline(); ok && time.Now().Add(d).After(dl) {
				stop = "the context's deadline comes first"
			}
		}
		if why == "" || stop != "" {
			return finalAnswer(resp, err, attempt, stop)
		}
		if resp != nil {
			drainClose(resp.Body)
		}
		t.log.Debug("prism retry", "method", req.Method, "path", req.URL.Path, "attempt", attempt, "reason", why, "delay", d)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// retryable says why an attempt's outcome is worth another attempt ("":
// it is not), and how long the server asked to wait.
func retryable(ctx context.Context, resp *http.Response, err error) (string, time.Duration) {
	if err != nil {
		if isTransient(err) && ctx.Err() == nil {
			return err.Error(), 0
		}
		return "", 0
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return resp.Status, retryAfter(resp.Header.Get("Retry-After"))
	}
	return "", 0
}

// finalAnswer returns the last attempt's outcome, saying how many attempts
// were made and, when a retryable failure was not retried, why not.
func finalAnswer(resp *http.Response, err error, attempts int, stop string) (*http.Response, error) {
	if err != nil {
		switch {
		case attempts > 1 && stop != "":
			return nil, fmt.Errorf("%w (gave up after %d attempts: %s)", err, attempts, stop)
		case attempts > 1:
			return nil, fmt.Errorf("%w (gave up after %d attempts)", err, attempts)
		case stop != "":
			return nil, fmt.Errorf("%w (sent once: %s)", err, stop)
		}
		return nil, err
	}
	resp.Header.Set(headerAttempts, strconv.Itoa(attempts))
	if stop != "" {
		resp.Header.Set(headerRetryStop, stop)
	}
	return resp, nil
}

func (t *retryTransport) backoff(attempt int) time.Duration {
	d := t.base << min(attempt-1, 20)
	if d <= 0 || d > t.max {
		d = t.max
	}
	// "equal jitter": half fixed, half random, so delays never collapse to 0.
	return d/2 + rand.N(d/2+1)
}

// notRepeatable says why req must be sent at most once ("" when it may be
// repeated): see the retry policy at the top of this file.
func notRepeatable(req *http.Request) string {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return "its body is a stream that cannot be sent again"
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return ""
	}
	if req.Header.Get(headerRequestID) != "" || ctxFlag(req.Context(), keyIdempotent) {
		return ""
	}
	return "a " + req.Method + " without an idempotency key is not repeated"
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
