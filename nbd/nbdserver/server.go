package nbdserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Export is one read-only export.
type Export struct {
	// Name is the export's canonical name, sent as NBD_INFO_NAME to a
	// client that asks for it (nothing when empty).
	Name string
	// Size is the export's size in bytes; not negative.
	Size int64
	// Data holds the bytes. It must be safe for concurrent ReadAt calls;
	// it is never asked to read outside [0, Size). A ReadAt that fills
	// the buffer succeeds whatever error it returns with it (io.EOF at
	// the end); one that does not is an I/O error.
	Data io.ReaderAt
	// Description is sent as NBD_INFO_DESCRIPTION to a client that asks
	// for it (nothing when empty). At most 4096 bytes are sent.
	Description string
}

// Options configure a Server. The zero value of every field but Lookup
// means its documented default; Validate reports every problem at once.
type Options struct {
	// TLS is the server's TLS configuration (Certificates or
	// GetCertificate set), offered through NBD_OPT_STARTTLS. Default nil:
	// no TLS (NBD_OPT_STARTTLS is refused with NBD_REP_ERR_POLICY).
	TLS *tls.Config
	// RequireTLS makes TLS mandatory (proto.md's FORCEDTLS mode): before
	// TLS is up, every option but NBD_OPT_STARTTLS and NBD_OPT_ABORT gets
	// NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME closes the
	// connection. It needs TLS. Default off: TLS is the client's choice.
	RequireTLS bool
	// Lookup returns the export a client asks for by name, the name
	// exactly as the client sent it. An error matching ErrUnknownExport
	// is answered NBD_REP_ERR_UNKNOWN, one matching ErrPolicy
	// NBD_REP_ERR_POLICY, both with the error's text as the message; any
	// other error is answered NBD_REP_ERR_UNKNOWN without its text and
	// counts as unexpected (Server.Err). NBD_OPT_EXPORT_NAME cannot carry
	// an error: the connection is closed instead. ctx ends with the
	// connection. Lookup may be called concurrently (once per
	// NBD_OPT_INFO, NBD_OPT_GO or NBD_OPT_EXPORT_NAME of every
	// connection). Required.
	Lookup func(ctx context.Context, name string) (Export, error)
	// List returns the export names NBD_OPT_LIST announces. Default nil:
	// NBD_OPT_LIST is refused (NBD_REP_ERR_POLICY).
	List func(ctx context.Context) []string
	// Logger receives connection events at debug level and failures at
	// info (a client's) or warn (the server's) level. Default: discard.
	Logger *slog.Logger
	// HandshakeTimeout bounds a connection's negotiation, TLS included,
	// from accept to the start of transmission. Default 1 minute.
	HandshakeTimeout time.Duration
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	if o.Lookup == nil {
		errs = append(errs, errors.New("Lookup is required"))
	}
	if o.RequireTLS && o.TLS == nil {
		errs = append(errs, errors.New("RequireTLS needs TLS"))
	}
	if o.TLS != nil && len(o.TLS.Certificates) == 0 && o.TLS.GetCertificate == nil && o.TLS.GetConfigForClient == nil {
		errs = append(errs, errors.New("TLS has no certificate (Certificates, GetCertificate or GetConfigForClient)"))
	}
	if o.HandshakeTimeout < 0 {
		errs = append(errs, errors.New("HandshakeTimeout is negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("nbdserver options: %w", errors.Join(errs...))
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = time.Minute
	}
	return o
}

// Sentinel errors for Options.Lookup to return (wrapped or not).
var (
	// ErrUnknownExport: no export of that name (NBD_REP_ERR_UNKNOWN).
	ErrUnknownExport = errors.New("nbdserver: unknown export")
	// ErrPolicy: the export exists but this client may not have it
	// (NBD_REP_ERR_POLICY).
	ErrPolicy = errors.New("nbdserver: export refused by policy")
)

// Server serves read-only exports over NBD on one listener. Create it
// with Serve.
type Server struct {
	o      Options
	ln     net.Listener
	ctx    context.Context // ends on Close or when Serve's context ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	err    error // first unexpected error
}

// Serve accepts connections on ln and serves each in its own goroutine
// until Close is called or ctx ends; the Server owns ln and closes it.
// Invalid options (see Validate) close ln at once and are reported by
// Err and Close.
func Serve(ctx context.Context, ln net.Listener, o Options) *Server {
	s := &Server{o: o.withDefaults(), ln: ln, conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(ctx)
	if err := o.Validate(); err != nil {
		s.err = err
		s.shutdown()
		return s
	}
	// Serve's context ending stops the server as Close does, but only
	// Close waits for the goroutines.
	context.AfterFunc(s.ctx, s.shutdown)
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Close stops accepting, closes every connection (reads of an export
// already under way finish first), waits for the server's goroutines and
// returns Err. It may be called more than once.
func (s *Server) Close() error {
	s.cancel()
	s.shutdown()
	s.wg.Wait()
	return s.Err()
}

// Err returns the first unexpected error met while serving: invalid
// Options, a failed accept, a failed read of an export (which the client
// got as NBD_EIO), an invalid Export or an error from Lookup other than
// ErrUnknownExport and ErrPolicy. Clients that break the protocol, fail
// the TLS handshake or hang up are not errors of the server; they are
// logged. Err is nil on a clean run.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Addr returns the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) noteErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.o.Logger.Warn("nbd server error", "error", err)
}

// shutdown closes the listener and every connection, without waiting.
func (s *Server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				s.o.Logger.Info("nbd server: listener closed under the server", "error", err)
				return
			}
			// Out of descriptors and the like: retry, slower and slower.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.o.Logger.Warn("nbd server: accept failed; retrying", "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}
