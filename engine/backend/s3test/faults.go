package s3test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Faults are the failures a FaultProxy injects, each a probability per
// request.
type Faults struct {
	// Unavailable answers 503 ServiceUnavailable without forwarding.
	Unavailable float64
	// SlowDown answers 503 SlowDown (S3's throttling) without forwarding.
	SlowDown float64
	// DropBefore closes the connection before forwarding: the store never
	// sees the request.
	DropBefore float64
	// DropAfter forwards the request, lets the store act on it, and closes
	// the connection instead of answering: the reply is lost.
	DropAfter float64
	// CutBody forwards and answers, but closes the connection halfway
	// through the reply's body (GETs with a body only).
	CutBody float64
	// Delay holds every request this long first (a slow link).
	Delay time.Duration
}

// FaultProxy is an HTTP proxy between a client and an S3 server that
// fails requests at random, as a flaky network or an overloaded store
// does. Counts says how often each fault fired.
type FaultProxy struct {
	URL    string
	mu     sync.Mutex
	rng    *rand.Rand
	faults Faults
	on     atomic.Bool
	counts sync.Map // fault name -> *atomic.Int64
	reqs   atomic.Int64
}

// Requests is how many requests the proxy received.
func (p *FaultProxy) Requests() int64 { return p.reqs.Load() }

// StartFaultProxy serves a proxy to target until the test ends. seed
// makes the sequence of faults repeatable for one sequence of requests.
func StartFaultProxy(t testing.TB, target string, f Faults, seed uint64) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{rng: rand.New(rand.NewPCG(seed, 15)), faults: f}
	p.on.Store(true)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, rp)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetEnabled turns the faults on or off.
func (p *FaultProxy) SetEnabled(on bool) { p.on.Store(on) }

// Count is how many times fault (a Faults field name) fired.
func (p *FaultProxy) Count(fault string) int64 {
	if v, ok := p.counts.Load(fault); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (p *FaultProxy) hit(fault string) {
	v, _ := p.counts.LoadOrStore(fault, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// pick draws the fault for one request ("" for none).
func (p *FaultProxy) pick() string {
	if !p.on.Load() {
		return ""
	}
	p.mu.Lock()
	x := p.rng.Float64()
	p.mu.Unlock()
	for _, f := range []struct {
		name string
		p    float64
	}{{"Unavailable", p.faults.Unavailable}, {"SlowDown", p.faults.SlowDown}, {"DropBefore", p.faults.DropBefore},
		{"DropAfter", p.faults.DropAfter}, {"CutBody", p.faults.CutBody}} {
		if x < f.p {
			return f.name
		}
		x -= f.p
	}
	return ""
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	p.reqs.Add(1)
	if p.faults.Delay > 0 {
		time.Sleep(p.faults.Delay)
	}
	fault := p.pick()
	switch fault {
	case "Unavailable", "SlowDown":
		p.hit(fault)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+fault+`</Code><Message>injected by the test proxy</Message></Error>`)
		return
	case "DropBefore":
		p.hit(fault)
		hangUp(w)
		return
	case "DropAfter":
		p.hit(fault)
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		hangUp(w)
		return
	case "CutBody":
		if r.Method != http.MethodGet {
			break
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code/100 != 2 || len(body) < 2 {
			copyReply(w, rec)
			return
		}
		p.hit(fault)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		hangUp(w)
		return
	}
	rp.ServeHTTP(w, r)
}

// hangUp closes the client's connection without an answer.
func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func copyReply(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	io.Copy(w, bytes.NewReader(rec.Body.Bytes()))
}
