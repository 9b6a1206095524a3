package nutanix

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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
)

// ErrTLSVerify marks a failure to verify the cluster's TLS certificate.
var ErrTLSVerify = errors.New("TLS certificate not trusted")

// rest performs one logical JSON request through the decorated client.
type rest struct {
	base *url.URL
	hc   *http.Client
	log  *slog.Logger
}

// request describes one call.
type request struct {
	method string
	path   string     // "/api/..." (joined to base) — or an absolute URL
	query  url.Values // optional
	in     any        // JSON body (omitted when nil)
	// raw body, used instead of in (uploads)
	body          io.Reader
	contentLength int64
	contentType   string
	header        http.Header
	out           any // JSON destination (nil: body discarded)
	// idempotent marks a POST that may be sent more than once: a read
	// (…/list, data/changed_regions), one whose repetition is harmless, or
	// a create carrying a client-chosen uuid (see the retry policy in
	// transport.go). Other methods are classified by the transport.
	idempotent bool
	noAuth     bool // credentials are set by the caller (header)
	op         string
}

// response is what callers may need beyond the decoded body.
type response struct {
	Status int
	Header http.Header
}

func (r request) opName() string {
	if r.op != "" {
		return r.op
	}
	p := r.path
	if u, err := url.Parse(p); err == nil {
		p = u.Path
	}
	return r.method + " " + p
}

func (c *rest) newRequest(ctx context.Context, rq request) (*http.Request, error) {
	var u *url.URL
	if strings.HasPrefix(rq.path, "https://") || strings.HasPrefix(rq.path, "http://") {
		var err error
		if u, err = url.Parse(rq.path); err != nil {
			return nil, err
		}
	} else {
		var err error
		// rq.path is in escaped form (segments went through url.PathEscape)
		if u, err = url.Parse(c.base.String() + rq.path); err != nil {
			return nil, err
		}
	}
	if len(rq.query) > 0 {
		q := u.Query()
		for k, vs := range rq.query {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		u.RawQuery = encodeQuery(q)
	}
	var body io.Reader
	contentType := rq.contentType
	if rq.in != nil {
		b, err := json.Marshal(rq.in)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", rq.opName(), err)
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
	} else if rq.body != nil {
		body = rq.body
	}
	if rq.idempotent {
		ctx = withIdempotent(ctx)
	}
	if rq.noAuth {
		ctx = withNoAuth(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if rq.body != nil && rq.contentLength > 0 {
		req.ContentLength = rq.contentLength
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ahvfs")
	for k, vs := range rq.header {
		req.Header[k] = vs
	}
	return req, nil
}

// encodeQuery is url.Values.Encode but keeps '$' literal ($page, $limit).
func encodeQuery(q url.Values) string {
	return strings.ReplaceAll(q.Encode(), "%24", "$")
}

// do sends rq and decodes a 2xx JSON body into rq.out. A non-2xx answer
// becomes an *APIError; a transport failure is wrapped with the operation.
func (c *rest) do(ctx context.Context, rq request) (response, error) {
	resp, err := c.send(ctx, rq)
	if err != nil {
		return response{}, err
	}
	defer drainClose(resp.Body)
	out := response{Status: resp.StatusCode, Header: resp.Header}
	if rq.out == nil {
		return out, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return out, fmt.Errorf("%s: read response: %w", rq.opName(), err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(body, rq.out); err != nil {
		return out, fmt.Errorf("%s: decode response: %w", rq.opName(), err)
	}
	return out, nil
}

// send returns the raw 2xx response (caller closes the body), or an error.
func (c *rest) send(ctx context.Context, rq request) (*http.Response, error) {
	req, err := c.newRequest(ctx, rq)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, wrapTransportError(rq.opName(), req.URL, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer drainClose(resp.Body)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	ae := DecodeError(rq.opName(), resp.StatusCode, body)
	ae.RequestID = req.Header.Get(headerRequestID)
	ae.Attempts, _ = strconv.Atoi(resp.Header.Get(headerAttempts))
	ae.RetryStop = resp.Header.Get(headerRetryStop)
	return nil, ae
}

// wrapTransportError turns net/http errors into one-line messages that say
// what to do, keeping the cause for errors.Is/As.
func wrapTransportError(op string, u *url.URL, err error) error {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidCert x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidCert) || errors.As(err, &verifyErr) {
		return &tlsError{host: u.Host, err: err}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("%s: cannot connect to %s: %w", op, u.Host, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

type tlsError struct {
	host string
	err  error
}

func (e *tlsError) Error() string {
	return fmt.Sprintf("TLS certificate of %s is not trusted (%v); pass the cluster's CA with --ca-cert (or --insecure in a lab)", e.host, e.err)
}

func (e *tlsError) Unwrap() []error { return []error{ErrTLSVerify, e.err} }
