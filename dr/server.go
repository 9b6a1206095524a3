package dr

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/retention"
)

// Server serves a repository to remote ahvfs clients (ahvfs serve). Its
// HTTP API, under /v1/, mirrors Source and Target:
//
//	GET  /v1/info                  Info (JSON)
//	GET  /v1/points                []Point (JSON)
//	POST /v1/pages   ID list       page ID lists
//	POST /v1/read    ID list       blob frames
//	POST /v1/have[?check=1] IDs    one byte per ID
//	POST /v1/store[?replace=1]     blob frames in, {"stored": N} out
//	POST /v1/flush
//	POST /v1/adopt   Point         409 {"missing": [IDs]} when blobs lack
//	POST /v1/lock    {"name", "until"}
//	POST /v1/forget  {"names"}     403 when append-only
//	POST /v1/prune/plan {"vms", "policy"}   the plan (a dry run; a reader)
//	POST /v1/prune   {"vms", "policy"}      the plan, carried out; 403 when append-only
//	POST /v1/gc[/plan], /v1/unlock          see server_maint.go
//	POST /v1/plain, /v1/import              see plain.go (re-encoding)
//	POST /v1/wholepacks ID list    per whole pack: pack ID, count, IDs
//	GET  /v1/pack/ID               the pack file
//	POST /v1/pack/ID  pack file    {"blobs": N} (adopted; 422 when damaged)
//
// Errors are {"error": "...", "code": "..."}. The repository is opened when
// a request needs it (as a reader, or a writer for requests that write)
// and closed after IdleClose without requests, so local jobs on the
// serving host (prune in append-only mode) get the repository between
// syncs.
type Server struct {
	// Open opens the repository.
	Open func(ctx context.Context, writable bool) (*engine.Repository, error)
	// AppendOnly refuses forget (and anything else that removes data).
	AppendOnly bool
	Log        *slog.Logger
	// IdleClose closes the repository after this long without requests
	// (default 30 s).
	IdleClose time.Duration
	// OpenGC opens the repository for a gc, as its only user (a shared
	// one with its exclusive lock); nil: Open, writable.
	OpenGC func(ctx context.Context) (*engine.Repository, error)
	// Unlock removes the repository's stale locks and returns them and
	// the live ones (POST /v1/unlock); nil: there is nothing to remove.
	Unlock func(ctx context.Context) (removed, live []string, err error)

	// GCQuiet is how long after a client's last write a gc waits before
	// it runs (default 1 minute): a sync's blobs are not referenced until
	// it adopts their restore point (server_maint.go).
	GCQuiet time.Duration

	// gate: every request holds it shared, a gc alone (server_maint.go).
	gate sync.RWMutex
	// lastWrite is when a request that writes last ended (unix nanos).
	lastWrite atomic.Int64

	mu       sync.Mutex
	repo     *engine.Repository
	writable bool
	users    int
	lastUse  time.Time
	stop     chan struct{}
	stopOnce sync.Once
}

// Error codes of the API.
const (
	codeAppendOnly = "append-only"
	codeMissing    = "missing"
	codeExists     = "exists"
	codeCorrupt    = "corrupt"
	codeBadRequest = "bad-request"
	codeBusy       = "busy"
)

// Handler is the server's HTTP handler; it starts the idle closer.
func (s *Server) Handler() http.Handler {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.IdleClose <= 0 {
		s.IdleClose = 30 * time.Second
	}
	if s.GCQuiet <= 0 {
		s.GCQuiet = time.Minute
	}
	// A client may have stored blobs just before a restart: the quiet
	// time runs from the start.
	s.lastWrite.Store(time.Now().UnixNano())
	s.stop = make(chan struct{})
	go s.closeIdle()
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/info", s.read(s.info))
	m.HandleFunc("GET /v1/points", s.read(s.points))
	m.HandleFunc("POST /v1/pages", s.read(s.pages))
	m.HandleFunc("POST /v1/read", s.read(s.readBlobs))
	m.HandleFunc("POST /v1/wholepacks", s.read(s.wholePacks))
	m.HandleFunc("GET /v1/pack/{id}", s.read(s.readPack))
	m.HandleFunc("POST /v1/pack/{id}", s.write(s.adoptPack))
	m.HandleFunc("POST /v1/have", s.write(s.have))
	m.HandleFunc("POST /v1/store", s.write(s.store))
	m.HandleFunc("POST /v1/flush", s.write(s.flush))
	m.HandleFunc("POST /v1/adopt", s.write(s.adopt))
	m.HandleFunc("POST /v1/lock", s.write(s.lock))
	m.HandleFunc("POST /v1/forget", s.write(s.forget))
	m.HandleFunc("POST /v1/prune/plan", s.read(s.prune(true)))
	m.HandleFunc("POST /v1/prune", s.write(s.prune(false)))
	m.HandleFunc("POST /v1/gc/plan", s.read(s.gc(true)))
	m.HandleFunc("POST /v1/gc", s.alone(s.exclusive(s.gc(false))))
	m.HandleFunc("POST /v1/unlock", s.unlock)
	m.HandleFunc("POST /v1/plain", s.read(s.plain))
	m.HandleFunc("POST /v1/import", s.write(s.importPoint))
	return m
}

// Close closes the repository (after the HTTP server has stopped).
func (s *Server) Close() error {
	s.stopOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repo == nil {
		return nil
	}
	err := s.repo.Close()
	s.repo = nil
	return err
}

func (s *Server) closeIdle() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.users == 0 && time.Since(s.lastUse) > s.IdleClose {
			s.dropRepo()
		}
		s.mu.Unlock()
	}
}

// dropRepo closes the server's repository, if open; s.mu is held and
// nobody uses it.
func (s *Server) dropRepo() {
	if s.repo == nil {
		return
	}
	if err := s.repo.Close(); err != nil {
		s.Log.Warn("close the repository", "err", err)
	}
	s.repo = nil
}

// acquire returns the open repository (writable if asked), opening it
// when needed; release gives it back.
func (s *Server) acquire(ctx context.Context, writable bool) (*engine.Repository, func(), error) {
	for {
		s.mu.Lock()
		if s.repo != nil && (s.writable || !writable) {
			s.users++
			r := s.repo
			s.mu.Unlock()
			return r, s.release, nil
		}
		if s.repo != nil && s.users > 0 {
			// A reader is in use and a writer is wanted.
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.dropRepo() // an idle reader, when a writer is wanted
		r, err := s.Open(ctx, writable)
		if err != nil {
			s.mu.Unlock()
			return nil, nil, err
		}
		s.repo, s.writable, s.users = r, writable, 1
		s.mu.Unlock()
		return r, s.release, nil
	}
}

func (s *Server) release() {
	s.mu.Lock()
	s.users--
	s.lastUse = time.Now()
	s.mu.Unlock()
}

type handler func(w http.ResponseWriter, req *http.Request, r *engine.Repository) error

func (s *Server) read(h handler) http.HandlerFunc { return s.shared(s.serve(h, false)) }
func (s *Server) write(h handler) http.HandlerFunc {
	f := s.serve(h, true)
	return s.shared(func(w http.ResponseWriter, req *http.Request) {
		// Noted while the gate is held: a gc that takes it next sees it.
		defer func() { s.lastWrite.Store(time.Now().UnixNano()) }()
		f(w, req)
	})
}

// shared serves f beside other requests, but not beside a gc.
func (s *Server) shared(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		s.gate.RLock()
		defer s.gate.RUnlock()
		f(w, req)
	}
}

func (s *Server) serve(h handler, writable bool) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		r, release, err := s.acquire(req.Context(), writable)
		if err != nil {
			s.openFailed(w, req, err)
			return
		}
		defer release()
		if err := h(w, req, r); err != nil {
			s.fail(w, req, err)
		}
	}
}

// openFailed answers a request whose repository did not open.
func (s *Server) openFailed(w http.ResponseWriter, req *http.Request, err error) {
	s.Log.Error("open the repository", "client", clientName(req), "err", err)
	writeError(w, http.StatusServiceUnavailable, "", fmt.Errorf("open the repository: %w", err))
}

// fail answers a handler's error with its status and code.
func (s *Server) fail(w http.ResponseWriter, req *http.Request, err error) {
	status, code := http.StatusInternalServerError, ""
	var miss *engine.MissingBlobsError
	switch {
	case errors.As(err, &miss):
		status, code = http.StatusConflict, codeMissing
	case errors.Is(err, errAppendOnly):
		status, code = http.StatusForbidden, codeAppendOnly
	case errors.Is(err, ErrBusy):
		status, code = http.StatusConflict, codeBusy
	case errors.Is(err, engine.ErrExists):
		status, code = http.StatusConflict, codeExists
	case errors.Is(err, engine.ErrCorrupt):
		status, code = http.StatusUnprocessableEntity, codeCorrupt
	case errors.Is(err, errBadRequest), errors.Is(err, engine.ErrNotFound), errors.Is(err, engine.ErrInvalid):
		status, code = http.StatusBadRequest, codeBadRequest
	}
	s.Log.Warn("request failed", "client", clientName(req), "path", req.URL.Path, "err", err)
	var body any
	if miss != nil {
		body = miss.IDs
	}
	writeErrorBody(w, status, code, err, body)
}

var (
	errAppendOnly = errors.New("the server is append-only: it accepts new restore points but removes nothing (run prune and gc on the DR host itself)")
	errBadRequest = errors.New("bad request")
)

// clientName is the common name of the client's certificate, for the log.
func clientName(req *http.Request) string {
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		return req.TLS.PeerCertificates[0].Subject.CommonName
	}
	return req.RemoteAddr
}

type errorReply struct {
	Error   string      `json:"error"`
	Code    string      `json:"code,omitempty"`
	Missing []engine.ID `json:"missing,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code string, err error) {
	writeErrorBody(w, status, code, err, nil)
}

func writeErrorBody(w http.ResponseWriter, status int, code string, err error, missing any) {
	rep := errorReply{Error: err.Error(), Code: code}
	if ids, ok := missing.([]engine.ID); ok {
		rep.Missing = ids
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(rep)
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// readBody reads a request body of at most limit bytes.
func readBody(req *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: body larger than %d bytes", errBadRequest, limit)
	}
	return b, nil
}

func readIDs(req *http.Request) ([]engine.ID, error) {
	b, err := readBody(req, maxIDs*engine.IDSize)
	if err != nil {
		return nil, err
	}
	ids, err := decodeIDs(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return ids, nil
}

func readJSON(req *http.Request, v any) error {
	b, err := readBody(req, 64<<20)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return nil
}

func (s *Server) info(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	if !r.Writable() {
		if _, err := r.Refresh(req.Context()); err != nil {
			return err
		}
	}
	l := &Local{R: r, AppendOnly: s.AppendOnly}
	i, err := l.Info(req.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, i)
}

func (s *Server) points(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	if !r.Writable() {
		if _, err := r.Refresh(req.Context()); err != nil {
			return err
		}
	}
	ps, err := (&Local{R: r}).Points(req.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, ps)
}

func (s *Server) pages(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	ids, err := readIDs(req)
	if err != nil {
		return err
	}
	lists, err := (&Local{R: r}).PageIDs(req.Context(), ids)
	if err != nil {
		return err
	}
	_, err = w.Write(encodePages(lists))
	return err
}

func (s *Server) readBlobs(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	ids, err := readIDs(req)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	fw := newFrameWriter(w)
	var mu sync.Mutex
	err = (&Local{R: r}).ReadBlobs(req.Context(), ids, func(b *engine.StoredBlob) error {
		mu.Lock()
		defer mu.Unlock()
		return fw.blob(b)
	})
	if err != nil {
		// The status is sent already: the error goes in the stream.
		s.Log.Warn("read blobs", "client", clientName(req), "err", err)
		return ignore(fw.fail(err))
	}
	return ignore(fw.end())
}

func (s *Server) wholePacks(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	ids, err := readIDs(req)
	if err != nil {
		return err
	}
	packs, _, err := r.WholePacks(req.Context(), ids)
	if err != nil {
		return err
	}
	_, err = w.Write(encodeWholePacks(packs))
	return err
}

func packParam(req *http.Request) (engine.PackID, error) {
	var id engine.PackID
	b, err := hex.DecodeString(req.PathValue("id"))
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: pack ID %q", errBadRequest, req.PathValue("id"))
	}
	copy(id[:], b)
	return id, nil
}

func (s *Server) readPack(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	id, err := packParam(req)
	if err != nil {
		return err
	}
	data, err := r.ReadPack(req.Context(), id, getPackBuf())
	if err != nil {
		return err
	}
	defer putPackBuf(data)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, err = w.Write(data)
	return ignore(err)
}

func (s *Server) adoptPack(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	id, err := packParam(req)
	if err != nil {
		return err
	}
	if req.ContentLength < 0 || req.ContentLength > engine.MaxPackFile {
		return fmt.Errorf("%w: pack of %d bytes", errBadRequest, req.ContentLength)
	}
	data := engine.PackBuffer(getPackBuf(), req.ContentLength)
	defer putPackBuf(data)
	if _, err := io.ReadFull(req.Body, data); err != nil {
		return fmt.Errorf("receive pack %s: %w", id, err)
	}
	n, err := r.AdoptPack(req.Context(), id, data)
	if err != nil {
		return err
	}
	return writeJSON(w, adoptPackReply{Blobs: n})
}

type adoptPackReply struct {
	Blobs int `json:"blobs"` // blobs not held before
}

// ignore drops an error after the reply has started: the client sees the
// stream end without its end mark.
func ignore(error) error { return nil }

func (s *Server) have(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	ids, err := readIDs(req)
	if err != nil {
		return err
	}
	have, err := r.HaveBlobs(req.Context(), ids, req.URL.Query().Get("check") == "1")
	if err != nil {
		return err
	}
	out := make([]byte, len(have))
	for i, h := range have {
		if h {
			out[i] = 1
		}
	}
	_, err = w.Write(out)
	return err
}

func (s *Server) store(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	ch := make(chan *engine.StoredBlob, 8)
	var (
		n        int
		storeErr error
		done     = make(chan struct{})
	)
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	go func() {
		defer close(done)
		n, storeErr = storeAll(ctx, r, req.URL.Query().Get("replace") == "1", ch)
	}()
	fr := newFrameReader(req.Body)
	var readErr error
	for {
		b, err := fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		select {
		case ch <- b:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ch)
	<-done
	if storeErr != nil {
		return storeErr
	}
	if readErr != nil {
		return fmt.Errorf("%w: %w", errBadRequest, readErr)
	}
	return writeJSON(w, struct {
		Stored int `json:"stored"`
	}{n})
}

func (s *Server) flush(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	if err := r.FlushBlobs(req.Context()); err != nil {
		return err
	}
	return writeJSON(w, struct{}{})
}

func (s *Server) adopt(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	var p Point
	if err := readJSON(req, &p); err != nil {
		return err
	}
	if p.RestorePoint == nil {
		return fmt.Errorf("%w: no restore point", errBadRequest)
	}
	if err := (&Local{R: r}).Adopt(req.Context(), p); err != nil {
		return err
	}
	s.Log.Info("restore point received", "client", clientName(req), "point", p.Name())
	return writeJSON(w, struct{}{})
}

type lockRequest struct {
	Name  string    `json:"name"`
	Until time.Time `json:"until"`
}

func (s *Server) lock(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	var l lockRequest
	if err := readJSON(req, &l); err != nil {
		return err
	}
	if err := (&Local{R: r}).Lock(req.Context(), l.Name, l.Until); err != nil {
		return err
	}
	s.Log.Info("lock extended", "client", clientName(req), "point", l.Name, "until", engine.FormatTime(l.Until))
	return writeJSON(w, struct{}{})
}

type forgetRequest struct {
	Names []string `json:"names"`
}

type forgetReply struct {
	Removed []string `json:"removed"`
}

func (s *Server) forget(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	var f forgetRequest
	if err := readJSON(req, &f); err != nil {
		return err
	}
	if s.AppendOnly {
		s.Log.Warn("forget refused: append-only", "client", clientName(req), "points", f.Names)
		return errAppendOnly
	}
	var rps []*engine.RestorePoint
	rep := forgetReply{Removed: []string{}}
	seen := map[string]bool{}
	for _, n := range f.Names {
		rp, err := r.Resolve(req.Context(), n)
		if err != nil {
			return err
		}
		if !seen[rp.ID] {
			seen[rp.ID] = true
			rps = append(rps, rp)
			rep.Removed = append(rep.Removed, rp.Name())
		}
	}
	if err := r.Forget(req.Context(), rps); err != nil {
		return err
	}
	s.Log.Info("restore points forgotten", "client", clientName(req), "points", rep.Removed)
	return writeJSON(w, rep)
}

type pruneRequest struct {
	VMs    []string         `json:"vms"`
	Policy retention.Policy `json:"policy"`
}

type pruneReply struct {
	Plan *engine.PrunePlan `json:"plan"`
	// Reclaimable is what gc would reclaim once the plan is carried out
	// (dry run only).
	Reclaimable int64 `json:"reclaimable"`
}

// prune plans a prune and carries it out, or with dry (POST
// /v1/prune/plan) says what gc would then reclaim.
func (s *Server) prune(dry bool) handler {
	return func(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
		var p pruneRequest
		if err := readJSON(req, &p); err != nil {
			return err
		}
		plan, err := r.PlanPrune(req.Context(), engine.PruneOptions{VMs: p.VMs, Policy: p.Policy})
		if err != nil {
			return err
		}
		rep := pruneReply{Plan: plan}
		switch {
		case dry:
			if rep.Reclaimable, err = r.ReclaimableAfter(req.Context(), plan.Remove); err != nil {
				return err
			}
		case s.AppendOnly:
			s.Log.Warn("prune refused: append-only", "client", clientName(req), "policy", p.Policy.String())
			return errAppendOnly
		case len(plan.Remove) > 0:
			if err := r.Forget(req.Context(), plan.Remove); err != nil {
				return err
			}
			var names []string
			for _, rp := range plan.Remove {
				names = append(names, rp.Name())
			}
			s.Log.Info("restore points pruned", "client", clientName(req), "policy", p.Policy.String(), "points", names)
		}
		return writeJSON(w, rep)
	}
}
