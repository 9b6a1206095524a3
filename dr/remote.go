package dr

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/retention"
)

// Remote is an `ahvfs serve` reached over HTTPS, as either side of a sync.
type Remote struct {
	base string
	hc   *http.Client
}

// ErrAppendOnly is what an append-only server answers to a removal.
var ErrAppendOnly = errors.New("append-only")

// IsRemote reports whether loc names a server (https://HOST:PORT).
func IsRemote(loc string) bool { return strings.HasPrefix(loc, "https://") }

// Dial makes a client of the server at loc (https://HOST:PORT), with the
// TLS configuration of ClientTLS. It does not connect yet.
func Dial(loc string, tc *tls.Config) (*Remote, error) {
	u, err := url.Parse(loc)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("remote repository %q: want https://HOST:PORT", loc)
	}
	// Keep-alive probes find a server that vanished without closing its
	// connections (a cut link, a powered-off site) in about half a minute
	// while the client waits for a reply.
	d := &net.Dialer{Timeout: 30 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 30 * time.Second,
		// HTTP/1.1: one stream per connection, so a batch in flight is
		// one connection and a cut loses that batch only.
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 10 * time.Minute,
		DisableCompression:    true,
	}
	return &Remote{base: "https://" + u.Host, hc: &http.Client{Transport: tr}}, nil
}

// Location is the server's URL.
func (r *Remote) Location() string { return r.base }

// call sends a request and checks the reply's status; the caller closes
// the body.
func (r *Remote) call(ctx context.Context, method, path string, body io.Reader, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.base, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var e errorReply
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		return nil, fmt.Errorf("%s%s: HTTP %s", r.base, path, resp.Status)
	}
	switch e.Code {
	case codeMissing:
		return nil, &engine.MissingBlobsError{Point: "(remote)", IDs: e.Missing}
	case codeAppendOnly:
		return nil, fmt.Errorf("%s: %w: %s", r.base, ErrAppendOnly, e.Error)
	case codeBusy:
		return nil, fmt.Errorf("%s: %w", r.base, busyError{e.Error})
	case codeExists:
		return nil, fmt.Errorf("%s: %w: %s", r.base, engine.ErrExists, e.Error)
	case codeCorrupt:
		return nil, fmt.Errorf("%s: %w: %s", r.base, engine.ErrCorrupt, e.Error)
	}
	return nil, fmt.Errorf("%s: %s", r.base, e.Error)
}

func (r *Remote) getJSON(ctx context.Context, path string, v any) error {
	resp, err := r.call(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s%s: reply: %w", r.base, path, err)
	}
	return nil
}

func (r *Remote) postJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := r.call(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s%s: reply: %w", r.base, path, err)
	}
	return nil
}

// postIDs posts an ID list and returns the whole reply (at most limit bytes).
func (r *Remote) postIDs(ctx context.Context, path string, ids []engine.ID, limit int64) ([]byte, error) {
	resp, err := r.call(ctx, http.MethodPost, path, bytes.NewReader(encodeIDs(ids)), "application/octet-stream")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s%s: reply: %w", r.base, path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s%s: reply larger than %d bytes", r.base, path, limit)
	}
	return b, nil
}

// Info implements Source and Target.
func (r *Remote) Info(ctx context.Context) (Info, error) {
	var i Info
	err := r.getJSON(ctx, "/v1/info", &i)
	i.Location = r.base
	return i, err
}

// Points implements Source and Target.
func (r *Remote) Points(ctx context.Context) ([]Point, error) {
	var ps []Point
	if err := r.getJSON(ctx, "/v1/points", &ps); err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.RestorePoint == nil {
			return nil, fmt.Errorf("%s: a restore point without its record", r.base)
		}
	}
	return ps, nil
}

// PageIDs implements Source.
func (r *Remote) PageIDs(ctx context.Context, pages []engine.ID) ([][]engine.ID, error) {
	b, err := r.postIDs(ctx, "/v1/pages", pages, int64(len(pages))*(4+maxIDs*engine.IDSize))
	if err != nil {
		return nil, err
	}
	lists, err := decodePages(b, len(pages))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.base, err)
	}
	return lists, nil
}

// WholePacks implements PackSource.
func (r *Remote) WholePacks(ctx context.Context, ids []engine.ID) (map[engine.PackID][]engine.ID, []engine.ID, error) {
	b, err := r.postIDs(ctx, "/v1/wholepacks", ids, int64(len(ids)*(engine.IDSize+packIDSize+4)))
	if err != nil {
		return nil, nil, err
	}
	packs, rest, err := decodeWholePacks(b, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", r.base, err)
	}
	return packs, rest, nil
}

// ReadPack implements PackSource.
func (r *Remote) ReadPack(ctx context.Context, id engine.PackID, buf []byte) ([]byte, error) {
	resp, err := r.call(ctx, http.MethodGet, "/v1/pack/"+id.String(), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength < 0 || resp.ContentLength > engine.MaxPackFile {
		return nil, fmt.Errorf("%s: pack %s: length %d", r.base, id, resp.ContentLength)
	}
	data := engine.PackBuffer(buf, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, data); err != nil {
		return nil, fmt.Errorf("%s: pack %s: %w", r.base, id, err)
	}
	return data, nil
}

// AdoptPack implements PackTarget.
func (r *Remote) AdoptPack(ctx context.Context, id engine.PackID, data []byte) (int, error) {
	resp, err := r.call(ctx, http.MethodPost, "/v1/pack/"+id.String(), bytes.NewReader(data), "application/octet-stream")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out adoptPackReply
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("%s: pack %s: reply: %w", r.base, id, err)
	}
	return out.Blobs, nil
}

// ReadBlobs implements Source: one streamed request, blobs checked
// against their frame CRC as they arrive.
func (r *Remote) ReadBlobs(ctx context.Context, ids []engine.ID, fn func(*engine.StoredBlob) error) error {
	resp, err := r.call(ctx, http.MethodPost, "/v1/read", bytes.NewReader(encodeIDs(ids)), "application/octet-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fr := newFrameReader(resp.Body)
	want := map[engine.ID]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for {
		b, err := fr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: read blobs: %w", r.base, err)
		}
		if !want[b.ID] {
			return fmt.Errorf("%s: read blobs: sent blob %s, which was not asked for", r.base, b.ID.Short())
		}
		delete(want, b.ID)
		if err := fn(b); err != nil {
			return err
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("%s: read blobs: %d blobs missing from the reply", r.base, len(want))
	}
	return nil
}

// Have implements Target.
func (r *Remote) Have(ctx context.Context, ids []engine.ID, check bool) ([]bool, error) {
	path := "/v1/have"
	if check {
		path += "?check=1"
	}
	b, err := r.postIDs(ctx, path, ids, int64(len(ids)))
	if err != nil {
		return nil, err
	}
	if len(b) != len(ids) {
		return nil, fmt.Errorf("%s: have: %d answers to %d questions", r.base, len(b), len(ids))
	}
	out := make([]bool, len(b))
	for i, v := range b {
		out[i] = v == 1
	}
	return out, nil
}

// StoreBlobs implements Target: the blobs stream in one request.
func (r *Remote) StoreBlobs(ctx context.Context, replace bool, in <-chan *engine.StoredBlob) (int, error) {
	pr, pw := io.Pipe()
	go func() {
		fw := newFrameWriter(pw)
		for b := range in {
			if err := fw.blob(b); err != nil {
				pw.CloseWithError(err)
				for range in {
				}
				return
			}
		}
		pw.CloseWithError(fw.end())
	}()
	path := "/v1/store"
	if replace {
		path += "?replace=1"
	}
	resp, err := r.call(ctx, http.MethodPost, path, pr, "application/octet-stream")
	pr.CloseWithError(errors.New("request done"))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Stored int `json:"stored"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("%s: store: reply: %w", r.base, err)
	}
	return out.Stored, nil
}

// Flush implements Target.
func (r *Remote) Flush(ctx context.Context) error {
	return r.postJSON(ctx, "/v1/flush", struct{}{}, nil)
}

// Adopt implements Target.
func (r *Remote) Adopt(ctx context.Context, p Point) error {
	err := r.postJSON(ctx, "/v1/adopt", p, nil)
	var miss *engine.MissingBlobsError
	if errors.As(err, &miss) {
		miss.Point = p.Name()
	}
	return err
}

// Lock implements Target.
func (r *Remote) Lock(ctx context.Context, name string, until time.Time) error {
	return r.postJSON(ctx, "/v1/lock", lockRequest{Name: name, Until: until}, nil)
}

// Forget removes restore points on the server (refused by an append-only
// one: ErrAppendOnly) and returns their names.
func (r *Remote) Forget(ctx context.Context, names []string) ([]string, error) {
	var rep forgetReply
	if err := r.postJSON(ctx, "/v1/forget", forgetRequest{Names: names}, &rep); err != nil {
		return nil, err
	}
	return rep.Removed, nil
}

// Prune applies a retention policy to the server's restore points of the
// VMs vms matches (every VM when empty). With dryRun it only plans, and
// also returns what gc would then reclaim; otherwise the server removes
// what the plan removes (ErrAppendOnly when it is append-only).
func (r *Remote) Prune(ctx context.Context, vms []string, p retention.Policy, dryRun bool) (*engine.PrunePlan, int64, error) {
	path := "/v1/prune"
	if dryRun {
		path += "/plan"
	}
	var rep pruneReply
	if err := r.postJSON(ctx, path, pruneRequest{VMs: vms, Policy: p}, &rep); err != nil {
		return nil, 0, err
	}
	if rep.Plan == nil {
		return nil, 0, fmt.Errorf("%s: prune: no plan in the reply", r.base)
	}
	return rep.Plan, rep.Reclaimable, nil
}

// Close implements Source and Target.
func (r *Remote) Close() error {
	r.hc.CloseIdleConnections()
	return nil
}

// busyError is the server's ErrBusy message, as it said it.
type busyError struct{ msg string }

func (e busyError) Error() string        { return e.msg }
func (e busyError) Is(target error) bool { return target == ErrBusy }
