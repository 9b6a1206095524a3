package xapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ref is an opaque reference to a XAPI object, "OpaqueRef:<uuid>".
type Ref string

// NullRef is the reference to no object.
const NullRef Ref = "OpaqueRef:NULL"

// IsNull reports whether r names no object (NullRef or empty).
func (r Ref) IsNull() bool { return r == "" || r == NullRef }

const (
	apiVersion = "1.0"
	originator = "ahvfs"
	// maxAnswer bounds a JSON-RPC answer (get_all_records of a large pool
	// is a few MiB).
	maxAnswer = 256 << 20
)

// Client is a logged-in XAPI session. It is safe for concurrent use.
type Client struct {
	opts    Options
	timeout time.Duration
	log     *slog.Logger
	hc      *http.Client
	nextID  atomic.Uint64

	loginMu sync.Mutex // serialises logins and Close
	mu      sync.Mutex // guards the fields below
	base    *url.URL   // the pool master, https://host:port
	session Ref
	closed  bool
	pool    string // the pool's UUID, once PoolUUID read it
}

// Connect validates o, logs in to the pool master (following a pool
// member's HOST_IS_SLAVE answer once) and returns the client. Close it to
// log out.
func Connect(ctx context.Context, o Options) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("XAPI options: %w", err)
	}
	base, _ := o.baseURL()
	tlsConf, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{opts: o, timeout: o.Timeout, log: o.Logger, base: base, hc: newHTTPClient(tlsConf)}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if o.Insecure {
		c.log.Warn("XAPI TLS verification is off (Insecure)", "host", base.Host)
	}
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if err := c.login(ctx); err != nil {
		c.hc.CloseIdleConnections()
		return nil, err
	}
	return c, nil
}

func newHTTPClient(tlsConf *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 15 * time.Second,
		MaxIdleConns:        16,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, CheckRedirect: checkRedirect}
}

// checkRedirect lets GET transfers follow a host's redirect (to the host
// that sees the SR) and hands every other redirect to the caller: Go would
// turn a PUT into a body-less GET.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if via[0].Method != http.MethodGet {
		return http.ErrUseLastResponse
	}
	if len(via) > 3 {
		return errors.New("more than 3 redirects")
	}
	return nil
}

// Endpoint returns the pool master this client talks to,
// "https://host:port" (after a HOST_IS_SLAVE redirect, the master's).
func (c *Client) Endpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.String()
}

// Session returns the current session reference (it changes when Call
// logs in again). It is a credential: do not log it.
func (c *Client) Session() Ref {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

func (c *Client) current() (*url.URL, Ref, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, "", ErrClosed
	}
	return c.base, c.session, nil
}

// login opens a new session; the caller holds loginMu.
func (c *Client) login(ctx context.Context) error {
	c.mu.Lock()
	base := c.base
	c.mu.Unlock()
	var sess Ref
	err := c.rpc(ctx, base, "session.login_with_password", &sess, c.opts.User, c.opts.Password, apiVersion, originator)
	var xe *Error
	if errors.As(err, &xe) && xe.Code == CodeHostIsSlave && len(xe.Params) > 0 {
		master, merr := masterURL(base, xe.Params[0])
		if merr != nil {
			return fmt.Errorf("XAPI login at %s: %w", base.Host, merr)
		}
		c.log.Info("XAPI host is a pool member; logging in at the master", "host", base.Host, "master", master.Host)
		base = master
		err = c.rpc(ctx, base, "session.login_with_password", &sess, c.opts.User, c.opts.Password, apiVersion, originator)
	}
	switch {
	case IsCode(err, CodeSessionAuthenticationFailed):
		return fmt.Errorf("XAPI login as %q at %s: wrong user name or password: %w", c.opts.User, base.Host, err)
	case err != nil:
		return fmt.Errorf("XAPI login as %q at %s: %w", c.opts.User, base.Host, err)
	case !strings.HasPrefix(string(sess), "OpaqueRef:"):
		return fmt.Errorf("XAPI login as %q at %s: the answer is not a session reference", c.opts.User, base.Host)
	}
	c.mu.Lock()
	c.base, c.session = base, sess
	c.mu.Unlock()
	c.log.Info("XAPI session opened", "host", base.Host, "user", c.opts.User, "session", redactRef(sess))
	return nil
}

// masterURL is base with its host replaced by a HOST_IS_SLAVE address
// ("10.0.0.1", "[fd00::1]", or with a port); the port stays when none is
// given.
func masterURL(base *url.URL, addr string) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	host := addr
	if h, p, err := net.SplitHostPort(addr); err != nil {
		host = net.JoinHostPort(strings.Trim(addr, "[]"), base.Port())
	} else if h == "" || p == "" {
		return nil, fmt.Errorf("bad pool master address %q", addr)
	}
	u, err := url.Parse("https://" + host)
	if addr == "" || err != nil || u.Hostname() == "" || u.Path != "" {
		return nil, fmt.Errorf("bad pool master address %q", addr)
	}
	return &url.URL{Scheme: "https", Host: u.Host}, nil
}

// relogin logs in again unless another goroutine already replaced the
// stale session.
func (c *Client) relogin(ctx context.Context, stale Ref) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	closed, same := c.closed, c.session == stale
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !same {
		return nil
	}
	return c.login(ctx)
}

// Close logs out (session.logout). Later calls fail with ErrClosed; a
// second Close does nothing.
func (c *Client) Close(ctx context.Context) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	base, sess := c.base, c.session
	c.session = ""
	c.mu.Unlock()
	err := c.rpc(ctx, base, "session.logout", nil, sess)
	c.hc.CloseIdleConnections()
	if err != nil && !IsCode(err, CodeSessionInvalid) {
		return fmt.Errorf("XAPI logout: %w", err)
	}
	c.log.Debug("XAPI session closed", "session", redactRef(sess))
	return nil
}

// Call invokes a XenAPI method with the session prepended to params and
// decodes its result into result (nil: ignored; json.RawMessage: kept).
// After SESSION_INVALID it logs in again and repeats the call, once.
func (c *Client) Call(ctx context.Context, method string, result any, params ...any) error {
	base, sess, err := c.current()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	err = c.rpc(ctx, base, method, result, append([]any{sess}, params...)...)
	if !IsCode(err, CodeSessionInvalid) {
		return err
	}
	c.log.Info("XAPI session expired; logging in again", "method", method)
	if lerr := c.relogin(ctx, sess); lerr != nil {
		return fmt.Errorf("%s: session expired, and logging in again failed: %w", method, lerr)
	}
	if base, sess, err = c.current(); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return c.rpc(ctx, base, method, result, append([]any{sess}, params...)...)
}

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
	ID      uint64 `json:"id"`
}

// rpc sends one JSON-RPC request to base and decodes the answer.
func (c *Client) rpc(ctx context.Context, base *url.URL, method string, result any, params ...any) (err error) {
	id := c.nextID.Add(1)
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(rpcRequest{JSONRPC: "2.0", Method: method, Params: params, ID: id})
	if err != nil {
		return fmt.Errorf("%s: encode parameters: %w", method, err)
	}
	start := time.Now()
	defer func() {
		c.log.Debug("XAPI call", "method", method, "id", id, "took", time.Since(start).Round(time.Millisecond), "err", err)
	}()
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, base.JoinPath("jsonrpc").String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			return fmt.Errorf("%s: no answer within %s: %w", method, c.timeout, redactErr(err))
		}
		return fmt.Errorf("%s: %w", method, redactErr(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return fmt.Errorf("%s: read the answer: %w", method, redactErr(err))
	case len(data) > maxAnswer:
		return fmt.Errorf("%s: the answer is larger than %d MiB", method, maxAnswer>>20)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: HTTP %s: %s", method, resp.Status, firstLine(data))
	}
	if err := decodeResponse(data, id, result); err != nil {
		var xe *Error
		if errors.As(err, &xe) && xe.Code == CodeSessionInvalid {
			for i := range xe.Params { // our own session: keep it out of messages
				xe.Params[i] = redactRef(Ref(xe.Params[i]))
			}
		}
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

// decodeResponse decodes a JSON-RPC answer (2.0, or 1.0 with an error
// array) to the request with this id.
func decodeResponse(data []byte, id uint64, result any) error {
	var a struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
		ID     json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return fmt.Errorf("malformed JSON-RPC answer (%w): %s", err, snippet(data))
	}
	if len(a.Error) > 0 && string(a.Error) != "null" {
		return decodeError(a.Error)
	}
	if a.Result == nil {
		return fmt.Errorf("JSON-RPC answer has neither result nor error: %s", snippet(data))
	}
	if len(a.ID) > 0 {
		n := strconv.FormatUint(id, 10)
		if s := string(a.ID); s != n && s != `"`+n+`"` {
			return fmt.Errorf("JSON-RPC answer to request %d carries id %s", id, snippet(a.ID))
		}
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(a.Result, result); err != nil {
		return fmt.Errorf("decode result: %w", err)
	}
	return nil
}

// decodeError reads {"code":1,"message":CODE,"data":[params]} (2.0) or
// [CODE, params…] (1.0).
func decodeError(raw json.RawMessage) error {
	var obj struct {
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &obj); err == nil && obj.Message != "" {
		e := &Error{Code: obj.Message}
		if len(obj.Data) > 0 && string(obj.Data) != "null" {
			if ps, err := parseStrings(obj.Data); err == nil {
				e.Params = ps
			} else {
				e.Params = []string{string(obj.Data)}
			}
		}
		return e
	}
	if list, err := parseStrings(raw); err == nil && len(list) > 0 && list[0] != "" {
		return &Error{Code: list[0], Params: list[1:]}
	}
	return fmt.Errorf("malformed JSON-RPC error: %s", snippet(raw))
}

// firstLine returns the first non-blank line of b, trimmed and cut.
func firstLine(b []byte) string {
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" {
			return cut(line, 200)
		}
	}
	return ""
}

func snippet(b []byte) string { return cut(strings.TrimSpace(string(b)), 120) }

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// redactRef keeps "OpaqueRef:" and 8 characters of a reference.
func redactRef(r Ref) string {
	const keep = len("OpaqueRef:") + 8
	if len(r) <= keep {
		return string(r)
	}
	return string(r[:keep]) + "…"
}

// redactURL replaces the session_id of a URL's query with its redacted form.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	q := u.Query()
	if sess := q.Get("session_id"); sess != "" {
		q.Set("session_id", redactRef(Ref(sess)))
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactErr removes the session from the URL that net/http puts in its
// errors.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return err
}
