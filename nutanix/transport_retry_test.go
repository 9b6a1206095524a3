package nutanix_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// probedFake is a fake Prism answering every request well until the
// client has probed it (v3, with v2.0), then status for good.
func probedFake(t *testing.T, o func(*nutanix.Options), status int) (*fakePrism, *nutanix.Client) {
	t.Helper()
	f := &fakePrism{password: "pw"}
	srv := startFake(t, f)
	opts := fastOptions(t, srv, "pw")
	opts.API = nutanix.APIV3
	if o != nil {
		o(&opts)
	}
	c := newClient(t, opts)
	if _, err := c.Probe(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.always, f.requests = status, 0
	f.mu.Unlock()
	return f, c
}

func (f *fakePrism) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// TestRetryPolicyPersistent500 is the one retry policy seen from the
// server: a request answered 500 every time is sent exactly MaxAttempts
// times when it is safe to repeat, once when it is not, and the error is
// an *APIError saying how many attempts were made.
func TestRetryPolicyPersistent500(t *testing.T) {
	const maxAttempts = 4
	cases := []struct {
		name     string
		call     func(context.Context, *nutanix.Client) error
		attempts int
		says     string
	}{
		{"GET", func(ctx context.Context, c *nutanix.Client) error { _, err := c.GetVM(ctx, "u1"); return err },
			maxAttempts, "gave up after 4 attempts"},
		{"POST list (a read)", func(ctx context.Context, c *nutanix.Client) error { _, err := c.ListVMs(ctx); return err },
			maxAttempts, "gave up after 4 attempts"},
		{"DELETE", func(ctx context.Context, c *nutanix.Client) error { return c.DeleteImage(ctx, "u1") },
			maxAttempts, "gave up after 4 attempts"},
		{"POST with a client uuid (v3 create)", func(ctx context.Context, c *nutanix.Client) error {
			_, err := c.CreateVM(ctx, nutanix.VMSpec{Name: "x", MemoryBytes: 1 << 30})
			return err
		}, maxAttempts, "gave up after 4 attempts"},
		{"POST without a key (v2.0 volume group create)", func(ctx context.Context, c *nutanix.Client) error {
			_, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: "x", DiskSizes: []int64{1 << 20}})
			return err
		}, 1, "sent once: a POST without an idempotency key is not repeated"},
		{"PUT of a stream (image upload)", func(ctx context.Context, c *nutanix.Client) error {
			return c.UploadImage(ctx, "u1", strings.NewReader("data"), 4)
		}, 1, "sent once: its body is a stream"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, c := probedFake(t, func(o *nutanix.Options) { o.MaxAttempts = maxAttempts }, 500)
			err := tc.call(ctxT(t), c)
			if n := f.requestCount(); n != tc.attempts {
				t.Errorf("sent %d times, want %d", n, tc.attempts)
			}
			var ae *nutanix.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if ae.Status != 500 || ae.Attempts != tc.attempts || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("err = %v (status %d, attempts %d), want 500 after %d attempts saying %q", err, ae.Status, ae.Attempts, tc.attempts, tc.says)
			}
		})
	}
}

// TestRetryPolicy429RepeatsEverything: the server did not act on a
// request it answered 429, so even one that is not repeatable is sent
// again.
func TestRetryPolicy429RepeatsEverything(t *testing.T) {
	f, c := probedFake(t, func(o *nutanix.Options) { o.MaxAttempts = 3 }, 429)
	_, err := c.CreateBlankVolumeGroup(ctxT(t), nutanix.VolumeGroupSpec{Name: "x", DiskSizes: []int64{1 << 20}})
	var ae *nutanix.APIError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Attempts != 3 || f.requestCount() != 3 {
		t.Fatalf("err = %v after %d requests, want 429 after 3", err, f.requestCount())
	}
}

// TestRetryPolicyBudget: no attempt starts after RetryBudget, whatever
// MaxAttempts allows; the error says so.
func TestRetryPolicyBudget(t *testing.T) {
	f, c := probedFake(t, func(o *nutanix.Options) {
		o.MaxAttempts, o.RetryBudget = 50, 30*time.Millisecond
		o.RetryBaseDelay, o.RetryMaxDelay = 20*time.Millisecond, 20*time.Millisecond
	}, 503)
	_, err := c.GetVM(ctxT(t), "u1")
	var ae *nutanix.APIError
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Fatalf("err = %v", err)
	}
	// every delay is at least 10ms: 50 attempts cannot fit in 30ms
	if ae.Attempts >= 50 || ae.Attempts != f.requestCount() || !strings.Contains(ae.RetryStop, "retry budget of 30ms") {
		t.Fatalf("attempts %d, requests %d, stop %q: %v", ae.Attempts, f.requestCount(), ae.RetryStop, err)
	}
}

// TestRetryPolicyDeadline: a retry that would start after the context's
// deadline is not waited for; the last answer comes back at once.
func TestRetryPolicyDeadline(t *testing.T) {
	f, c := probedFake(t, func(o *nutanix.Options) { o.RetryMaxDelay = time.Minute }, 503)
	f.mu.Lock()
	f.retryAfter = "30"
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.GetVM(ctx, "u1")
	var ae *nutanix.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Attempts != 1 || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waited %v for a retry the deadline forbids", d)
	}
}
