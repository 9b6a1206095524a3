package xapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Every transfer runs under a task this client creates (task.create) and
// names in the query (task_id): the handler completes it, so its status
// says whether the host took or gave all the data, and an import's task
// result holds the new VM references.

// ExportRawVDI streams a VDI's whole virtual disk
// (GET /export_raw_vdi?vdi=REF&format=raw). The stream ends with io.EOF
// only when the export's task succeeded; reading ends with an error
// otherwise. Close it; closing early cancels the export.
func (c *Client) ExportRawVDI(ctx context.Context, vdi Ref) (io.ReadCloser, error) {
	return c.export(ctx, "export_raw_vdi", url.Values{"vdi": {string(vdi)}, "format": {"raw"}})
}

// ExportVHD streams a VDI as a VHD (GET /export_raw_vdi?format=vhd):
// with a base VDI (a ref or UUID of an earlier snapshot of the same disk)
// only the blocks that differ from it, else the whole disk. It has
// ExportRawVDI's guarantees.
func (c *Client) ExportVHD(ctx context.Context, vdi, base Ref) (io.ReadCloser, error) {
	q := url.Values{"vdi": {string(vdi)}, "format": {"vhd"}}
	if !base.IsNull() {
		q.Set("base", string(base))
	}
	return c.export(ctx, "export_raw_vdi", q)
}

// ExportVM streams a halted VM or a snapshot as an uncompressed XVA
// (GET /export?ref=REF&use_compression=false), with ExportRawVDI's
// guarantees.
func (c *Client) ExportVM(ctx context.Context, vm Ref) (io.ReadCloser, error) {
	return c.export(ctx, "export", url.Values{"ref": {string(vm)}, "use_compression": {"false"}})
}

// ImportRawVDI writes size bytes from r over a VDI's whole disk
// (PUT /import_raw_vdi?vdi=REF&format=raw) and waits for the import's
// task.
func (c *Client) ImportRawVDI(ctx context.Context, vdi Ref, r io.Reader, size int64) error {
	_, err := c.upload(ctx, "import_raw_vdi", url.Values{"vdi": {string(vdi)}, "format": {"raw"}}, r, size)
	return err
}

// ImportVM imports an XVA into an SR (PUT /import?sr_id=REF) and returns
// the new VMs. XAPI refuses chunked uploads, so r must tell its length:
// a *os.File, anything with Len() int (bytes.Reader, strings.Reader) or an
// io.Seeker; otherwise use ImportVMSize.
func (c *Client) ImportVM(ctx context.Context, sr Ref, r io.Reader) ([]Ref, error) {
	size, err := lengthOf(r)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return c.ImportVMSize(ctx, sr, r, size)
}

// ImportVMSize is ImportVM for a stream of size bytes.
func (c *Client) ImportVMSize(ctx context.Context, sr Ref, r io.Reader, size int64) ([]Ref, error) {
	res, err := c.upload(ctx, "import", url.Values{"sr_id": {string(sr)}}, r, size)
	if err != nil {
		return nil, err
	}
	vals, err := ParseTaskResult(res)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	refs := make([]Ref, 0, len(vals))
	for _, v := range vals {
		refs = append(refs, Ref(v))
	}
	if len(refs) == 0 {
		return nil, errors.New("import: the task returned no VM")
	}
	return refs, nil
}

// lengthOf finds how many bytes are left in r.
func lengthOf(r io.Reader) (int64, error) {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len()), nil
	case io.Seeker: // *os.File among others; a pipe fails to seek
		cur, err := v.Seek(0, io.SeekCurrent)
		if err == nil {
			var end int64
			if end, err = v.Seek(0, io.SeekEnd); err == nil {
				_, err = v.Seek(cur, io.SeekStart)
				return end - cur, err
			}
		}
	}
	return 0, errors.New("the length of the stream is unknown (XAPI refuses chunked uploads): use ImportVMSize")
}

func (c *Client) export(ctx context.Context, handler string, q url.Values) (io.ReadCloser, error) {
	task, err := c.createTask(ctx, "ahvfs "+handler, "HTTP GET /"+handler)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", handler, err)
	}
	q.Set("task_id", string(task))
	resp, err := c.transfer(ctx, http.MethodGet, handler, q, nil, 0)
	if err != nil {
		c.abandonTask(ctx, task)
		return nil, err
	}
	return &exportBody{c: c, ctx: ctx, handler: handler, task: task, body: resp.Body}, nil
}

// exportBody turns the end of an export's body into io.EOF only once its
// task succeeded: a host that fails mid-stream may just close. Close may
// be called from another goroutine to stop a Read.
type exportBody struct {
	c       *Client
	ctx     context.Context
	handler string
	task    Ref
	body    io.ReadCloser
	err     error       // the end of the stream, set by Read
	ended   atomic.Bool // err is set and the task is over
}

func (e *exportBody) Read(p []byte) (int, error) {
	if e.ended.Load() {
		return 0, e.err
	}
	n, err := e.body.Read(p)
	switch {
	case err == io.EOF:
		e.err = io.EOF
		if _, terr := e.c.waitTask(e.ctx, e.task); terr != nil {
			e.err = fmt.Errorf("%s: the stream ended but the export failed: %w", e.handler, terr)
		}
		e.ended.Store(true)
		return n, e.err
	case err != nil:
		return n, fmt.Errorf("%s: %w", e.handler, redactErr(err))
	}
	return n, nil
}

// Close closes the stream; before its end it cancels the export.
func (e *exportBody) Close() error {
	err := e.body.Close()
	if !e.ended.Load() {
		e.c.abandonTask(e.ctx, e.task)
	}
	return err
}

// upload PUTs size bytes of r to a handler under a task and returns the
// task's raw result.
func (c *Client) upload(ctx context.Context, handler string, q url.Values, r io.Reader, size int64) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("%s: negative size %d", handler, size)
	}
	task, err := c.createTask(ctx, "ahvfs "+handler, "HTTP PUT /"+handler)
	if err != nil {
		return "", fmt.Errorf("%s: %w", handler, err)
	}
	q.Set("task_id", string(task))
	cr := newCountingReader(r)
	resp, err := c.transfer(ctx, http.MethodPut, handler, q, cr, size)
	if err == nil {
		// The host answers before it reads the body and closes the
		// connection when it is done.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			err = fmt.Errorf("%s: %w", handler, redactErr(err))
		}
	}
	if rerr := cr.readErr(); rerr != nil {
		err = fmt.Errorf("%s: reading the data to send: %w", handler, rerr)
	} else if err == nil && cr.count() != size {
		err = fmt.Errorf("%s: sent %d bytes where %d were announced", handler, cr.count(), size)
	}
	if err != nil {
		c.abandonTask(ctx, task)
		return "", err
	}
	res, err := c.waitTask(ctx, task)
	if err != nil {
		return "", fmt.Errorf("%s: %w", handler, err)
	}
	return res, nil
}

// transfer sends one request to a handler of the pool master. A PUT the
// host redirects (to the host that sees the SR) is sent there once, when
// none of its body was taken yet or the body can seek back.
func (c *Client) transfer(ctx context.Context, method, handler string, q url.Values, body *countingReader, size int64) (*http.Response, error) {
	base, sess, err := c.current()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", handler, err)
	}
	q.Set("session_id", string(sess))
	u := base.JoinPath(handler)
	u.RawQuery = q.Encode()
	for redirected := false; ; redirected = true {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", handler, redactErr(err))
		}
		var sent *signalCloser
		if body != nil {
			// No "Expect: 100-continue": XAPI answers 200 before it reads
			// a body, and Go would then never send it.
			sent = &signalCloser{r: body, closed: make(chan struct{})}
			req.Body, req.ContentLength = sent, size
			if size == 0 {
				req.Body = http.NoBody
			}
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		start := time.Now()
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", handler, redactErr(err))
		}
		c.log.Debug("XAPI transfer", "method", method, "url", redactURL(u.String()), "status", resp.StatusCode, "took", time.Since(start).Round(time.Millisecond))
		if resp.StatusCode/100 == 3 && body != nil {
			loc, lerr := resp.Location()
			resp.Body.Close()
			if lerr != nil || redirected {
				return nil, fmt.Errorf("%s: HTTP %s, not followed (Location %v)", handler, resp.Status, lerr)
			}
			if err := body.rewind(ctx, sent, size); err != nil {
				return nil, fmt.Errorf("%s: redirected to %s: %w", handler, loc.Host, err)
			}
			c.log.Info("XAPI transfer redirected", "handler", handler, "to", loc.Host)
			u = loc
			continue
		}
		if resp.StatusCode/100 != 2 {
			line := make([]byte, 4096)
			n, _ := io.ReadFull(resp.Body, line)
			resp.Body.Close()
			return nil, &HTTPError{Handler: handler, StatusCode: resp.StatusCode, Status: resp.Status, FirstLine: firstLine(line[:n])}
		}
		return resp, nil
	}
}

// signalCloser tells when the transport is done with a request body.
type signalCloser struct {
	r      io.Reader
	once   sync.Once
	closed chan struct{}
}

func (s *signalCloser) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *signalCloser) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// countingReader counts what the transport took and keeps a read error.
type countingReader struct {
	r     io.Reader
	start int64 // r's offset at the start, when r is an io.Seeker
	n     atomic.Int64
	err   atomic.Pointer[error]
}

func newCountingReader(r io.Reader) *countingReader {
	c := &countingReader{r: r, start: -1}
	if s, ok := r.(io.Seeker); ok {
		if off, err := s.Seek(0, io.SeekCurrent); err == nil {
			c.start = off
		}
	}
	return c
}

// rewind readies the reader to be sent again once the transport let go
// of it.
func (c *countingReader) rewind(ctx context.Context, sent *signalCloser, size int64) error {
	if size > 0 {
		select {
		case <-sent.closed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.count() == 0 && c.readErr() == nil {
		return nil
	}
	if c.start < 0 {
		return errors.New("the upload had begun and its source cannot seek back")
	}
	if _, err := c.r.(io.Seeker).Seek(c.start, io.SeekStart); err != nil {
		return fmt.Errorf("seek back: %w", err)
	}
	c.n.Store(0)
	c.err.Store(nil)
	return nil
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err != nil && err != io.EOF {
		c.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (c *countingReader) count() int64 { return c.n.Load() }

func (c *countingReader) readErr() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}
