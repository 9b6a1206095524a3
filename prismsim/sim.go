package prismsim

import (
	"context"
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
	// Listen is the HTTPS listen address (default "127.0.0.1:0": a free port).
	Listen string
	// StateDir holds ca.crt, admin.password, state.json and every disk file
	// (required). An existing state.json is loaded, so a restart keeps VMs,
	// snapshots, images and volume groups.
	StateDir string
	// Password for user "admin" (default: the one in StateDir/admin.password,
	// else a random one). It is always written to StateDir/admin.password.
	Password string
	// ISCSIPortal is the Data Services IP portal (host:port) where a tgtd
	// redirects logins to the CVM portal. Empty disables iSCSI: volume groups
	// still work at the API level but nothing is exported. Port 0 picks a free
	// port.
	ISCSIPortal string
	// CVMPortal is the portal that serves the LUNs (default "127.0.0.2:0").
	// It must be another loopback address than the initiator's, because tgtd
	// does not redirect to the initiator's own address.
	CVMPortal string
	// CHAPUser and CHAPSecret, when both set, require CHAP on every target
	// (in addition to any per-client secret given on attach).
	CHAPUser, CHAPSecret string
	// TaskDelay is how long a task stays QUEUED and then RUNNING (default
	// 20ms each; negative means no delay).
	TaskDelay time.Duration
	// RegionBlockSize is the granularity of v3 changed regions and the
	// default of v4 (default 64 KiB).
	RegionBlockSize int64
	// MaxRegionsPerPage caps the regions of one changed-regions answer; the
	// rest is reached through next_offset / nextOffset (default 1000).
	MaxRegionsPerPage int
	// SessionTTL is the lifetime of a session cookie (default 15m).
	SessionTTL time.Duration
	// V4Revisions are the v4 path revisions served (default v4.0 and v4.1,
	// as on pc.7.3). The discover-cluster JWT is always scoped to v4.0.
	V4Revisions []string
	// NoV3Snapshots makes the v3 vm_snapshots and data/changed_regions
	// endpoints answer 404, as on a Prism Central or an older Prism Element
	// (default false: served). Clients then take snapshots through the v2.0
	// snapshots API and, having no changed regions, back up in full.
	NoV3Snapshots bool
	// HydrationRate is how fast, in bytes per second, a VM disk backed by
	// an external repository is copied in the background (default 256
	// MiB/s; negative: unpaced).
	HydrationRate int64
	// HydrationSettle is how long a disk whose every block is local still
	// names its external source, showing 0 bytes left, before it drops it
	// (a cluster finishing up; default 0).
	HydrationSettle time.Duration
	// Faults to inject from the start (default none).
	Faults Faults
	// Logf receives diagnostic lines (default: discarded).
	Logf func(format string, args ...any)
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.StateDir == "" {
		errs = append(errs, errors.New("StateDir is required"))
	}
	if o.RegionBlockSize < 0 || (o.RegionBlockSize > 0 && o.RegionBlockSize%512 != 0) {
		errs = append(errs, fmt.Errorf("RegionBlockSize %d is not a positive multiple of 512", o.RegionBlockSize))
	}
	if o.MaxRegionsPerPage < 0 {
		errs = append(errs, fmt.Errorf("MaxRegionsPerPage %d is negative", o.MaxRegionsPerPage))
	}
	if (o.CHAPUser == "") != (o.CHAPSecret == "") {
		errs = append(errs, errors.New("CHAPUser and CHAPSecret go together"))
	}
	for _, a := range []string{o.ISCSIPortal, o.CVMPortal} {
		if a == "" {
			continue
		}
		if h, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("portal %q: %w", a, err))
		} else if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			errs = append(errs, fmt.Errorf("portal %q: must be a 127.0.0.0/8 address", a))
		}
	}
	if err := o.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *Options) setDefaults() {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.CVMPortal == "" {
		o.CVMPortal = "127.0.0.2:0"
	}
	if o.TaskDelay == 0 {
		o.TaskDelay = 20 * time.Millisecond
	} else if o.TaskDelay < 0 {
		o.TaskDelay = 0
	}
	if o.RegionBlockSize == 0 {
		o.RegionBlockSize = 64 << 10
	}
	if o.MaxRegionsPerPage == 0 {
		o.MaxRegionsPerPage = 1000
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 15 * time.Minute
	}
	if len(o.V4Revisions) == 0 {
		o.V4Revisions = []string{"v4.0", "v4.1"}
	}
	if o.HydrationRate == 0 {
		o.HydrationRate = 256 << 20
	} else if o.HydrationRate < 0 {
		o.HydrationRate = 0
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Sim is a running Prism simulator. Its methods are safe for concurrent use.
type Sim struct {
	opts     Options
	dir      string
	password string

	mu        sync.Mutex // guards m and hydrators
	m         *model
	hydrators map[string]*hydrator // disk uuid → live hydration

	https  *simkit.HTTPS
	url    string
	host   string // the listener's IP, returned by discover-cluster
	caFile string

	tgt    *tgtManager // nil when iSCSI is disabled
	faults faultState
	auth   authState
	idem   idemCache

	hydrationPaused atomic.Bool              // PauseHydration
	gate            atomic.Pointer[taskGate] // GateTasks
	transferMu      sync.Mutex               // one transfer-files-to-guest writes disk images at a time

	busy     atomic.Int64 // API requests being served (WaitIdle)
	lastBusy atomic.Int64 // unix ns when one last started or ended

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New starts a simulator: TLS listener, state, and (if configured) the two
// tgtd daemons. Close stops everything it started.
func New(ctx context.Context, o Options) (*Sim, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("prismsim: %w", err)
	}
	o.setDefaults()
	dir, err := simkit.InitStateDir(o.StateDir, "vms", "snapshots", "images", "vgs")
	if err != nil {
		return nil, fmt.Errorf("prismsim: %w", err)
	}
	s := &Sim{opts: o, dir: dir}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.faults.set(o.Faults)
	s.auth.init()
	s.idem.init()

	if err := s.initGuestCredentials(); err != nil {
		return nil, err
	}
	if s.password, err = simkit.Password(s.PasswordFile(), o.Password, "Nx-"); err != nil {
		return nil, fmt.Errorf("prismsim: %w", err)
	}
	if m, err := loadModel(dir); err == nil {
		s.m = m
		s.recoverTasks()
		s.failOrphanHydrations()
	} else if errors.Is(err, os.ErrNotExist) {
		s.m = newModel()
	} else {
		return nil, fmt.Errorf("prismsim: %w", err)
	}

	l, err := simkit.ListenHTTPS(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("prismsim: %w", err)
	}
	s.host, s.url = l.Host, l.URL
	tlsConf, err := s.makeTLS()
	if err != nil {
		l.Close()
		return nil, err
	}
	s.https = l

	if o.ISCSIPortal != "" {
		t, err := startTgt(ctx, tgtConfig{
			dir:        filepath.Join(dir, "tgtd"),
			dsip:       o.ISCSIPortal,
			cvm:        o.CVMPortal,
			chapUser:   o.CHAPUser,
			chapSecret: o.CHAPSecret,
			logf:       o.Logf,
		})
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("prismsim: %w", err)
		}
		s.tgt = t
		// Re-export volume groups that have attached clients (restart).
		s.mu.Lock()
		for _, g := range s.m.sortedVGs() {
			if err := s.exportVGLocked(g); err != nil {
				s.logf("re-export %s: %v", g.Name, err)
			}
		}
		s.mu.Unlock()
	}

	l.Serve(s.handler(), tlsConf, o.Logf)
	s.mu.Lock()
	s.save()
	s.mu.Unlock()
	return s, nil
}

// URL is the base URL, e.g. https://127.0.0.1:9440 (PC and PE at once).
func (s *Sim) URL() string { return s.url }

// Addr is the host:port of the HTTPS listener.
func (s *Sim) Addr() string { return strings.TrimPrefix(s.url, "https://") }

// CAFile is the PEM file of the CA that signed the server certificate.
func (s *Sim) CAFile() string { return s.caFile }

// PasswordFile holds the password of user "admin".
func (s *Sim) PasswordFile() string { return filepath.Join(s.dir, "admin.password") }

// User is the login name ("admin").
func (s *Sim) User() string { return "admin" }

// Password is the admin password.
func (s *Sim) Password() string { return s.password }

// StateDir is the absolute state directory.
func (s *Sim) StateDir() string { return s.dir }

// ISCSIPortal is the Data Services IP portal address (host:port), or "" when
// iSCSI is disabled. The v3/v2/v4 cluster answers carry its IP only; real
// clusters use port 3260.
func (s *Sim) ISCSIPortal() string {
	if s.tgt == nil {
		return ""
	}
	return s.tgt.dsipAddr
}

// CVMPortal is the portal that actually serves the LUNs after the redirect.
func (s *Sim) CVMPortal() string {
	if s.tgt == nil {
		return ""
	}
	return s.tgt.cvmAddr
}

// DataServicesIP is the address reported as the clusters' Data Services IP.
func (s *Sim) DataServicesIP() string {
	if s.tgt != nil {
		h, _, _ := net.SplitHostPort(s.tgt.dsipAddr)
		return h
	}
	if s.opts.ISCSIPortal != "" {
		h, _, _ := net.SplitHostPort(s.opts.ISCSIPortal)
		return h
	}
	return s.host
}

// Close stops the HTTP server, waits for running tasks, kills both tgtd
// daemons (SIGKILL: tgtd ignores SIGTERM) and saves the state. It is safe to
// call more than once.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		s.https.Close()
		s.cancel()
		s.mu.Lock()
		s.closeHydratorsLocked()
		s.mu.Unlock()
		s.wg.Wait()
		if s.tgt != nil {
			s.closeErr = s.tgt.close()
		}
		s.mu.Lock()
		s.save()
		s.mu.Unlock()
	})
	return s.closeErr
}

func (s *Sim) logf(format string, args ...any) { s.opts.Logf(format, args...) }

func (s *Sim) abs(rel string) string { return filepath.Join(s.dir, rel) }
