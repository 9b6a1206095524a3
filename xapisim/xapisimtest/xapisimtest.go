// Package xapisimtest starts an XCP-ng simulator (package xapisim) for the
// tests of other packages, and reads the objects of one running as a
// separate process (Inventory), so that a test can assert that a job left
// the simulated pool as it found it.
package xapisimtest

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/xapisim"
)

// Options for Start. The embedded xapisim.Options are passed through
// (StateDir defaults to t.TempDir(), TaskDelay to 2ms, Logf to t.Logf).
type Options struct {
	xapisim.Options
	// VMs are added once the simulator runs.
	VMs []xapisim.VMSpec
}

// Start starts a simulator, adds o.VMs and registers Close with
// t.Cleanup.
func Start(t testing.TB, o Options) *xapisim.Sim {
	t.Helper()
	xo := o.Options
	if xo.StateDir == "" {
		xo.StateDir = t.TempDir()
	}
	if xo.TaskDelay == 0 {
		xo.TaskDelay = 2 * time.Millisecond
	}
	if xo.Logf == nil {
		xo.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := xapisim.New(ctx, xo)
	if err != nil {
		t.Fatalf("start XenAPI simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close XenAPI simulator: %v", err)
		}
	})
	for _, v := range o.VMs {
		if _, err := s.AddVM(ctx, v); err != nil {
			t.Fatalf("add VM %s: %v", v.Name, err)
		}
	}
	return s
}

// Remote names a simulator by what cmd/xapisim prints: its URL, the CA
// certificate file and root's password file.
type Remote struct {
	URL          string
	CAFile       string
	PasswordFile string
	User         string // default "root"
}

// RemoteOf is the Remote of a simulator in this process.
func RemoteOf(s *xapisim.Sim) Remote {
	return Remote{URL: s.URL(), CAFile: s.CAFile(), PasswordFile: s.PasswordFile(), User: s.User()}
}

// Password reads the password file.
func (r Remote) Password() (string, error) {
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", err
	}
	return string(trimSpace(b)), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// HTTPClient returns an http.Client that trusts the simulator's CA.
func HTTPClient(t testing.TB, s *xapisim.Sim) *http.Client {
	t.Helper()
	c, err := simkit.HTTPClient(s.CAFile(), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// RequireUnchanged fails t, listing every difference, unless after holds
// the same VMs, snapshots and VDIs as before (see xapisim.Diff).
func RequireUnchanged(t testing.TB, before, after xapisim.Objects) {
	t.Helper()
	if d := xapisim.Diff(before, after); len(d) > 0 {
		t.Fatalf("the simulated pool changed:\n%v", d)
	}
}
