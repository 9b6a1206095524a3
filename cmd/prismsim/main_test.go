package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startRun runs prismsim with args (plus a free port, a state directory
// and no iSCSI) until the output holds ready; stop cancels it (as
// SIGINT/SIGTERM do) and fails t unless run returns nil.
func startRun(t *testing.T, ready string, args ...string) (out *syncBuf, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuf{}
	var errb syncBuf
	done := make(chan error, 1)
	args = append([]string{"--listen", "127.0.0.1:0", "--state", filepath.Join(t.TempDir(), "st"), "--iscsi-portal", "off"}, args...)
	go func() { done <- run(ctx, args, out, &errb) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), ready) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("prismsim %s: returned %v: %q %q", strings.Join(args, " "), err, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no %q in the output: %q %q", ready, out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunPrintsAndStops: run prints URL, CA and password file, adds --vm
// VMs, and returns when its context is cancelled (SIGINT/SIGTERM).
func TestRunPrintsAndStops(t *testing.T) {
	img := filepath.Join(t.TempDir(), "a.raw")
	if err := os.WriteFile(img, bytes.Repeat([]byte{1}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stop := startRun(t, "VM web", "--vm", "web:"+img, "--ngt", "vss")
	for _, want := range []string{"URL:           https://127.0.0.1:", "CA cert:", "Password file:", "/st/vms/web/disk-0.raw"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "v3 snapshots:") {
		t.Errorf("output mentions v3 snapshots without --no-v3-snapshots:\n%s", out.String())
	}
	stop()
}

// TestRunNoV3Snapshots: with --no-v3-snapshots the Prism client's v3
// backend finds no vm_snapshots/changed_regions (it will snapshot through
// v2.0); without it, it does.
func TestRunNoV3Snapshots(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantCBT bool
	}{
		{nil, true},
		{[]string{"--no-v3-snapshots"}, false},
	} {
		t.Run(strings.Join(append([]string{"flags"}, tc.args...), " "), func(t *testing.T) {
			out, stop := startRun(t, "State dir:", append([]string{"--vms", "0"}, tc.args...)...)
			defer stop()
			field := func(name string) string {
				m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S+)$`).FindStringSubmatch(out.String())
				if m == nil {
					t.Fatalf("no %s in the output:\n%s", name, out.String())
				}
				return m[1]
			}
			c, err := nutanix.New(nutanix.Options{Endpoint: field("URL"), CACertFile: field("CA cert"),
				PasswordFile: field("Password file"), API: nutanix.APIV3, RateLimit: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rep, err := c.Probe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.V3CBT != tc.wantCBT || !rep.V2 {
				t.Errorf("probe: v3 CBT %v (want %v), v2 %v", rep.V3CBT, tc.wantCBT, rep.V2)
			}
			if got := strings.Contains(out.String(), "v3 snapshots:  not served"); got == tc.wantCBT {
				t.Errorf("output says v3 snapshots not served: %v, want %v:\n%s", got, !tc.wantCBT, out.String())
			}
		})
	}
}
