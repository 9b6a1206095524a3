package xapisim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// Options configures a simulator. Zero values mean the documented default.
type Options struct {
	// Listen is the HTTPS listen address of the API and the HTTP
	// transfers (default "127.0.0.1:0": a free port).
	Listen string
	// NBDListen is the listen address of the NBD server (default
	// "127.0.0.1:0"; xapi uses port 10809). VDI.get_nbd_info reports its
	// port with the address 127.0.0.1.
	NBDListen string
	// StateDir holds ca.crt, the server certificate, root.password,
	// state.json and every disk file (required). An existing state.json
	// is loaded, so a restart keeps VMs, snapshots and VDIs.
	StateDir string
	// Password of user "root" (default: the one in StateDir/root.password,
	// else a random one). It is always written to StateDir/root.password.
	Password string
	// HostName is the host's DNS name: a SAN of the server certificate
	// and the subject VDI.get_nbd_info returns (default "xapisim.local").
	HostName string
	// TaskDelay is how long an Async call's task stays pending before it
	// runs (default 10ms; negative: none).
	TaskDelay time.Duration
	// Logf receives diagnostic lines (default: discarded).
	Logf func(format string, args ...any)
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.StateDir == "" {
		errs = append(errs, errors.New("StateDir is required"))
	}
	for name, a := range map[string]string{"Listen": o.Listen, "NBDListen": o.NBDListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, a, err))
		}
	}
	if strings.ContainsAny(o.HostName, " /:") {
		errs = append(errs, fmt.Errorf("HostName %q is not a host name", o.HostName))
	}
	return errors.Join(errs...)
}

func (o *Options) setDefaults() {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.NBDListen == "" {
		o.NBDListen = "127.0.0.1:0"
	}
	if o.HostName == "" {
		o.HostName = "xapisim.local"
	}
	if o.TaskDelay == 0 {
		o.TaskDelay = 10 * time.Millisecond
	} else if o.TaskDelay < 0 {
		o.TaskDelay = 0
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Sim is a running XenAPI simulator. Its methods are safe for concurrent
// use.
type Sim struct {
	opts     Options
	dir      string
	password string

	mu       sync.Mutex // guards m, sessions, tasks
	m        *model
	sessions map[string]*session
	tasks    map[string]*task
	taskSeq  int64

	https   *simkit.HTTPS
	url     string
	host    string // the listener's IP
	caFile  string
	tlsConf *tls.Config
	certPEM []byte // the server certificate (VDI.get_nbd_info "cert")

	nbd nbdState

	faults faultState
	gates  gateState
	files  fileCache
	// diskMu orders Sim.Write (writers) against snapshot copies
	// (readers), so a snapshot holds all of a Write or none of it.
	diskMu sync.RWMutex

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // async tasks
	running atomic.Int64   // async tasks not yet ended (Inventory wait)

	closeOnce sync.Once
	closeErr  error
}

// New starts a simulator: state, TLS, the HTTPS listener and the NBD
// server. Close stops them.
func New(ctx context.Context, o Options) (*Sim, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("xapisim: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("xapisim: %w", err)
	}
	o.setDefaults()
	dir, err := simkit.InitStateDir(o.StateDir, "vms", "vdis", "cbt")
	if err != nil {
		return nil, fmt.Errorf("xapisim: %w", err)
	}
	s := &Sim{opts: o, dir: dir, sessions: map[string]*session{}, tasks: map[string]*task{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.faults.init()
	s.gates.init()
	s.files.init()
	if s.password, err = simkit.Password(s.PasswordFile(), o.Password, "Xs-"); err != nil {
		return nil, fmt.Errorf("xapisim: %w", err)
	}
	if m, err := loadModel(dir); err == nil {
		s.m = m
	} else if errors.Is(err, os.ErrNotExist) {
		s.m = newModel()
	} else {
		return nil, fmt.Errorf("xapisim: %w", err)
	}

	l, err := simkit.ListenHTTPS(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("xapisim: %w", err)
	}
	s.host, s.url = l.Host, l.URL
	if err := s.initTLS(); err != nil {
		l.Close()
		return nil, err
	}
	s.https = l
	if err := s.startNBD(); err != nil {
		l.Close()
		return nil, err
	}
	l.Serve(s.handler(), s.tlsConf, o.Logf)
	s.mu.Lock()
	s.updateSRSizeLocked()
	s.save()
	s.mu.Unlock()
	return s, nil
}

// URL is the base URL of the API, e.g. https://127.0.0.1:443.
func (s *Sim) URL() string { return s.url }

// Addr is the host:port of the HTTPS listener.
func (s *Sim) Addr() string { return strings.TrimPrefix(s.url, "https://") }

// CAFile is the PEM file of the CA that signed the server certificate.
func (s *Sim) CAFile() string { return s.caFile }

// CertPEM is the server certificate (what VDI.get_nbd_info returns as
// "cert"): a client may trust it alone.
func (s *Sim) CertPEM() []byte { return append([]byte(nil), s.certPEM...) }

// HostName is the host's DNS name in the certificate and get_nbd_info.
func (s *Sim) HostName() string { return s.opts.HostName }

// PasswordFile holds the password of user "root".
func (s *Sim) PasswordFile() string { return filepath.Join(s.dir, "root.password") }

// User is the login name ("root").
func (s *Sim) User() string { return "root" }

// Password is root's password.
func (s *Sim) Password() string { return s.password }

// StateDir is the absolute state directory.
func (s *Sim) StateDir() string { return s.dir }

// NBDAddr is the host:port of the NBD server.
func (s *Sim) NBDAddr() string { return s.nbd.addr }

// Close stops the HTTPS and NBD servers, waits for running tasks, and
// saves the state. It is safe to call more than once.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.gates.releaseAll()
		s.https.Close()
		s.closeErr = s.stopNBD()
		s.wg.Wait()
		s.files.closeAll()
		s.mu.Lock()
		s.save()
		s.mu.Unlock()
	})
	return s.closeErr
}

func (s *Sim) logf(format string, args ...any) { s.opts.Logf(format, args...) }

func (s *Sim) abs(rel string) string { return filepath.Join(s.dir, rel) }

// newRef returns a fresh opaque reference.
func newRef() string { return "OpaqueRef:" + simkit.NewUUID() }
