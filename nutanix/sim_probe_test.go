package nutanix_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

func TestSimAutoPicksV4(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	c := simClient(t, s, nutanix.APIAuto)
	rep := c.Report()
	if rep.Selected != nutanix.APIV4 || !strings.Contains(rep.Reason, "v4") || rep.V4["vmm"] == "" || rep.V4["dataprotection"] == "" {
		t.Fatalf("report %+v", rep)
	}
}

func TestSimAutoFallsBackToV3(t *testing.T) {
	s := startSim(t, prismsim.Options{V4Revisions: []string{"v4.9"}}) // no revision the client knows
	c := simClient(t, s, nutanix.APIAuto)
	rep := c.Report()
	if rep.Selected != nutanix.APIV3 || !rep.V2 || !rep.V3CBT || !strings.Contains(rep.Reason, "v4 not usable") {
		t.Fatalf("report %+v", rep)
	}
	// forcing v4 says why not
	c2 := newClient(t, simOptions(s, nutanix.APIV4))
	if _, err := c2.Probe(ctxT(t)); err == nil || !strings.Contains(err.Error(), "v4") {
		t.Fatalf("forced v4: %v", err)
	}
}

func TestSimFaults(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) {
			defer checkNoGoroutineLeak(t)()
			s := startSim(t, prismsim.Options{})
			ctx := ctxT(t)
			vm, err := s.AddVM(ctx, "f", []string{diskImage(t, 1<<20, 5)}, prismsim.VMOptions{Move: true})
			if err != nil {
				t.Fatal(err)
			}
			o := simOptions(s, api)
			o.MaxAttempts = 9
			c, err := nutanix.New(o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Probe(ctx); err != nil {
				t.Fatal(err)
			}

			// retries succeed: a third of all requests answered 429
			s.SetFaults(prismsim.Faults{Rate429: 0.3})
			for i := 0; i < 5 || (s.InjectedErrors(429) < 3 && i < 200); i++ {
				if _, err := c.ListVMs(ctx); err != nil {
					t.Fatalf("with 30%% 429s: %v", err)
				}
			}
			snap, err := c.CreateSnapshot(ctx, vm.UUID, "under-429", false)
			if err != nil {
				t.Fatalf("snapshot with 30%% 429s: %v", err)
			}
			if s.InjectedErrors(429) == 0 {
				t.Fatal("no 429 was injected")
			}

			// session expiry mid-run: re-auth
			s.SetFaults(prismsim.Faults{})
			s.ExpireSessions()
			if _, err := c.GetVM(ctx, vm.UUID); err != nil {
				t.Fatalf("after session expiry: %v", err)
			}

			// persistent failure: a clear error with the status and Prism's message
			s.SetFaults(prismsim.Faults{Rate500: 1})
			_, err = c.GetVM(ctx, vm.UUID)
			var ae *nutanix.APIError
			if !errors.As(err, &ae) || ae.Status != 500 || !strings.Contains(err.Error(), "Internal server error (injected)") {
				t.Fatalf("persistent 500: %v", err)
			}
			s.SetFaults(prismsim.Faults{Rate429: 1})
			_, err = c.GetVM(ctx, vm.UUID)
			if !errors.As(err, &ae) || ae.Status != 429 || ae.Attempts != 9 || !strings.Contains(err.Error(), "gave up after 9 attempts") {
				t.Fatalf("persistent 429: %v", err)
			}

			// timeouts: retried, then a clear error
			s.SetFaults(prismsim.Faults{Latency: 300 * time.Millisecond})
			o2 := simOptions(s, api)
			o2.Timeout, o2.MaxAttempts = 50*time.Millisecond, 3
			c2, err := nutanix.New(o2)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c2.ListVMs(ctx)
			if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
				t.Fatalf("timeouts: %v", err)
			}
			c2.Close()

			s.SetFaults(prismsim.Faults{})
			if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
				t.Fatal(err)
			}
			c.Close()
			s.Close()
		})
	}
}

// TestSimProbeRidesOutTransient500s: every distinct probe request is
// answered 500 once, then served. The client still selects v4 with every
// namespace it finds without faults (auto), and with --api v3 still finds
// v2.0, vm_snapshots and changed regions (CBT): the transport retries
// each probe instead of the probe choosing less.
func TestSimProbeRidesOutTransient500s(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	for _, api := range []nutanix.APIVersion{nutanix.APIAuto, nutanix.APIV3} {
		t.Run(string(api), func(t *testing.T) {
			want, err := newClient(t, simOptions(s, api)).Probe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetFaults(prismsim.Faults{FailFirst: 1}); err != nil {
				t.Fatal(err)
			}
			defer s.SetFaults(prismsim.Faults{})
			before := s.InjectedErrors(500)
			c := newClient(t, simOptions(s, api))
			got, err := c.Probe(ctx)
			if err != nil {
				t.Fatalf("probe with a 500 on every request once: %v", err)
			}
			if n := s.InjectedErrors(500) - before; n < 4 {
				t.Fatalf("only %d 500s injected", n)
			}
			if got.Selected != want.Selected || !reflect.DeepEqual(got.V4, want.V4) || got.V3 != want.V3 || got.V2 != want.V2 ||
				got.V3Snapshots != want.V3Snapshots || got.V3CBT != want.V3CBT {
				t.Fatalf("with transient 500s: %+v\nwithout: %+v", got, want)
			}
			switch api {
			case nutanix.APIAuto:
				if got.Selected != nutanix.APIV4 || got.V4["vmm"] == "" || got.V4["dataprotection"] == "" || got.V4["volumes"] == "" ||
					got.V4["clustermgmt"] == "" || got.V4["networking"] == "" {
					t.Fatalf("auto: %+v", got)
				}
			case nutanix.APIV3:
				if got.Selected != nutanix.APIV3 || !got.V2 || !got.V3Snapshots || !got.V3CBT {
					t.Fatalf("v3: %+v", got)
				}
			}
		})
	}
}

// TestSimProbeFailsRatherThanChooseLess: a probe request still failing
// after MaxAttempts fails the probe with the 500; auto does not fall back
// to v3 and v3 does not go on without CBT.
func TestSimProbeFailsRatherThanChooseLess(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	for _, tc := range []struct {
		api  nutanix.APIVersion
		path string // the namespace that keeps failing
	}{
		{nutanix.APIAuto, "/api/vmm/"},
		{nutanix.APIAuto, "/api/volumes/"},
		{nutanix.APIV4, "/api/nutanix/v3/vm_snapshots/list"},
		{nutanix.APIV3, "/api/nutanix/v3/vm_snapshots/list"},
		{nutanix.APIV3, "/api/nutanix/v3/data/changed_regions"},
		{nutanix.APIV3, "/v2.0/cluster"},
	} {
		t.Run(string(tc.api)+tc.path, func(t *testing.T) {
			o := simOptions(s, tc.api)
			o.MaxAttempts = 2
			if err := s.SetFaults(prismsim.Faults{FailFirst: 2, Paths: []string{tc.path}}); err != nil {
				t.Fatal(err)
			}
			defer s.SetFaults(prismsim.Faults{})
			c := newClient(t, o)
			rep, err := c.Probe(ctx)
			var ae *nutanix.APIError
			if !errors.As(err, &ae) || ae.Status != 500 || ae.Attempts != 2 || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("probe = %+v, %v; want the 500 of %s after 2 attempts", rep, err, tc.path)
			}
			if c.API() != "" || rep.Selected != "" {
				t.Fatalf("selected %q / %q after a failed probe", c.API(), rep.Selected)
			}
		})
	}
}
