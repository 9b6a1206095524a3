package dr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Maintenance through the server: gc and unlock of the served repository
// for a client that has no shell on the DR host. An append-only server
// refuses both (but for a gc dry run), as it refuses forget and prune.
//
//	POST /v1/gc/plan {GCRequest}    GCReport of a dry run (a reader)
//	POST /v1/gc      {GCRequest}    GCReport; 403 when append-only
//	POST /v1/unlock                 UnlockReport; 403 when append-only
//
// A gc runs alone: with other requests in flight it is refused (ErrBusy),
// and it holds off new ones until it ends, since a store running beside it
// could seal a pack gc has not seen. And it runs only once no client has written for
// Server.GCQuiet (ErrBusy before): the blobs a sync stores are referenced
// by nothing until it adopts their restore point, so a gc between its
// requests would remove them. A sync that pauses longer than that and
// loses blobs finds them missing when it adopts the point, and sends them
// again.

// ErrBusy: a client wrote to the server's repository too recently for a
// gc (a sync may be in progress).
var ErrBusy = errors.New("busy")

// GCRequest is what a client asks of a remote gc (engine.GCOptions).
type GCRequest struct {
	MaxUnused     float64       `json:"max_unused"`
	ReaderWait    time.Duration `json:"reader_wait"`
	QuarantineAge time.Duration `json:"quarantine_age"`
}

// UnlockReport is what an unlock through the server did: the stale locks
// it removed and the live ones it left.
type UnlockReport struct {
	Removed []string `json:"removed"`
	Live    []string `json:"live"`
}

func (s *Server) gc(dry bool) handler {
	return func(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
		var g GCRequest
		if err := readJSON(req, &g); err != nil {
			return err
		}
		if s.AppendOnly && !dry {
			s.Log.Warn("gc refused: append-only", "client", clientName(req))
			return errAppendOnly
		}
		if ago := time.Since(time.Unix(0, s.lastWrite.Load())); !dry && ago < s.GCQuiet {
			return fmt.Errorf("%w: a client wrote to the repository %s ago, perhaps a sync not done yet: gc runs once none has written for %s; try again then",
				ErrBusy, ago.Round(time.Second), s.GCQuiet)
		}
		rep, err := r.GC(req.Context(), engine.GCOptions{MaxUnused: g.MaxUnused, DryRun: dry, ReaderWait: g.ReaderWait, QuarantineAge: g.QuarantineAge})
		if err != nil {
			return err
		}
		if !dry {
			s.Log.Info("gc", "client", clientName(req), "packs_deleted", rep.PacksDeleted, "packs_rewritten", rep.PacksRewritten, "reclaimed", rep.ReclaimedBytes)
		}
		return writeJSON(w, rep)
	}
}

// alone serves f with no other request in flight: when one is, it
// answers ErrBusy at once rather than wait (which would hold off every new
// request meanwhile).
func (s *Server) alone(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if !s.gate.TryLock() {
			s.fail(w, req, fmt.Errorf("%w: other requests are being served (a sync?); try again later", ErrBusy))
			return
		}
		defer s.gate.Unlock()
		f(w, req)
	}
}

// exclusive serves h, under alone, with the repository opened for it by
// OpenGC: a shared repository's gc needs its exclusive lock. The server's
// own instance, which nobody uses meanwhile, is closed first.
func (s *Server) exclusive(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.dropRepo()
		s.mu.Unlock()
		open := s.OpenGC
		if open == nil {
			open = func(ctx context.Context) (*engine.Repository, error) { return s.Open(ctx, true) }
		}
		r, err := open(req.Context())
		if err != nil {
			s.openFailed(w, req, err)
			return
		}
		defer r.Close()
		if err := h(w, req, r); err != nil {
			s.fail(w, req, err)
		}
	}
}

func (s *Server) unlock(w http.ResponseWriter, req *http.Request) {
	if s.AppendOnly {
		s.Log.Warn("unlock refused: append-only", "client", clientName(req))
		s.fail(w, req, errAppendOnly)
		return
	}
	rep := UnlockReport{Removed: []string{}, Live: []string{}}
	if s.Unlock != nil {
		removed, live, err := s.Unlock(req.Context())
		if err != nil {
			s.fail(w, req, err)
			return
		}
		rep.Removed, rep.Live = append(rep.Removed, removed...), append(rep.Live, live...)
	}
	if len(rep.Removed) > 0 {
		s.Log.Warn("stale repository locks removed", "client", clientName(req), "locks", rep.Removed)
	}
	if err := writeJSON(w, rep); err != nil {
		s.Log.Warn("reply", "client", clientName(req), "err", err)
	}
}

// GC runs gc on the server's repository (a dry run with dryRun);
// ErrAppendOnly when the server is append-only.
func (r *Remote) GC(ctx context.Context, g GCRequest, dryRun bool) (*engine.GCReport, error) {
	path := "/v1/gc"
	if dryRun {
		path += "/plan"
	}
	var rep engine.GCReport
	if err := r.postJSON(ctx, path, g, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Unlock has the server remove its repository's stale locks;
// ErrAppendOnly when the server is append-only.
func (r *Remote) Unlock(ctx context.Context) (*UnlockReport, error) {
	var rep UnlockReport
	if err := r.postJSON(ctx, "/v1/unlock", struct{}{}, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
