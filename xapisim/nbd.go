package xapisim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/nbd/nbdserver"
)

// nbdState is the NBD server: TLS required (the HTTPS certificate), one
// export per VDI with data, named as xapi names them:
// "/<vdi-uuid>?session_id=<session ref>".
type nbdState struct {
	srv  *nbdserver.Server
	addr string
	port int
}

func (s *Sim) startNBD() error {
	ln, err := net.Listen("tcp", s.opts.NBDListen)
	if err != nil {
		return fmt.Errorf("xapisim: NBD listen %s: %w", s.opts.NBDListen, err)
	}
	s.nbd.addr = ln.Addr().String()
	s.nbd.port = ln.Addr().(*net.TCPAddr).Port
	s.nbd.srv = nbdserver.Serve(s.ctx, ln, nbdserver.Options{
		TLS:        s.tlsConf,
		RequireTLS: true,
		Lookup:     s.nbdLookup,
		Logger:     slog.New(slogHandler{s}),
	})
	return nil
}

func (s *Sim) stopNBD() error {
	if s.nbd.srv == nil {
		return nil
	}
	return s.nbd.srv.Close()
}

// nbdLookup checks an export name's session and VDI.
func (s *Sim) nbdLookup(_ context.Context, name string) (nbdserver.Export, error) {
	if xe := s.faults.take("nbd"); xe != nil {
		return nbdserver.Export{}, fmt.Errorf("%w: %s", nbdserver.ErrPolicy, xe)
	}
	path, query, _ := strings.Cut(name, "?")
	id := strings.TrimPrefix(path, "/")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nbdserver.Export{}, fmt.Errorf("%w: bad export name", nbdserver.ErrUnknownExport)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[q.Get("session_id")] == nil {
		return nbdserver.Export{}, fmt.Errorf("%w: invalid session", nbdserver.ErrPolicy)
	}
	d := s.m.vdiByUUID(id)
	if d == nil || d.File == "" {
		return nbdserver.Export{}, fmt.Errorf("%w: no VDI %s with data", nbdserver.ErrUnknownExport, id)
	}
	return nbdserver.Export{Name: name, Size: d.VirtualSize, Description: d.NameLabel,
		Data: &fileReader{s: s, path: s.abs(d.File), size: d.VirtualSize}}, nil
}

// fileReader reads a VDI's file through the shared handle; bytes past the
// file's end read as zeros.
type fileReader struct {
	s    *Sim
	path string
	size int64
}

func (r *fileReader) ReadAt(p []byte, off int64) (int, error) {
	f, err := r.s.files.get(r.path)
	if err != nil {
		return 0, err
	}
	if err := simkit.ReadFull(f, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func vdiNBDInfo(c *call) (any, error) {
	d, err := c.vdi(0)
	if err != nil {
		return nil, err
	}
	if d.File == "" {
		return []any{}, nil // xapi lists no host that can serve a VDI without data
	}
	return []map[string]any{{
		"address":    "127.0.0.1",
		"port":       int64(c.s.nbd.port),
		"cert":       string(c.s.certPEM),
		"subject":    c.s.opts.HostName,
		"exportname": "/" + d.UUID + "?session_id=" + c.sess.Ref,
	}}, nil
}

// slogHandler sends the NBD server's log to Options.Logf.
type slogHandler struct{ s *Sim }

func (h slogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h slogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("nbd: " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.s.logf("%s", b.String())
	return nil
}
func (h slogHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h slogHandler) WithGroup(string) slog.Handler      { return h }
