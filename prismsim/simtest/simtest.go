// Package simtest starts a Prism simulator for tests of other packages and
// reads the objects of one running elsewhere (Inventory), so that a test can
// assert that a job left the simulated cluster as it found it.
package simtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/prismsim"
)

// Options for Start. The embedded prismsim.Options are passed through
// (StateDir defaults to t.TempDir(), TaskDelay to 5ms).
type Options struct {
	prismsim.Options
	// ISCSI starts the two tgtd daemons on free loopback ports
	// (127.0.0.1 for the Data Services IP, 127.0.0.2 for the CVM). It
	// requires root and tgtd/tgtadm (the test skips, or fails under
	// AHVFS_REQUIRE_ALL=1, without them).
	ISCSI bool
}

// Start starts a simulator and registers Close with t.Cleanup.
func Start(t testing.TB, o Options) *prismsim.Sim {
	t.Helper()
	po := o.Options
	if po.StateDir == "" {
		po.StateDir = t.TempDir()
	}
	if po.TaskDelay == 0 {
		po.TaskDelay = 5 * time.Millisecond
	}
	if po.Logf == nil {
		po.Logf = t.Logf
	}
	if o.ISCSI {
		testenv.Root(t)
		testenv.Commands(t, "tgtd", "tgtadm")
		if po.ISCSIPortal == "" {
			po.ISCSIPortal = "127.0.0.1:0"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := prismsim.New(ctx, po)
	if err != nil {
		t.Fatalf("start prism simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close prism simulator: %v", err)
		}
	})
	return s
}

// HTTPClient returns an http.Client that trusts the simulator's CA.
func HTTPClient(t testing.TB, s *prismsim.Sim) *http.Client {
	t.Helper()
	c, err := simkit.HTTPClient(s.CAFile(), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
