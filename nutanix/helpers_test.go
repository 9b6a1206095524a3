package nutanix_test

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
)

// writeFile writes content into a file under t.TempDir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// caFile writes the httptest server's certificate as a PEM CA bundle.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	return writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
}

// fastOptions are options for tests: tiny backoffs and poll intervals.
func fastOptions(t *testing.T, srv *httptest.Server, password string) nutanix.Options {
	t.Helper()
	return nutanix.Options{
		Endpoint:         srv.URL,
		User:             "admin",
		PasswordFile:     writeFile(t, "pw", password+"\n"),
		CACertFile:       caFile(t, srv),
		RetryBaseDelay:   time.Millisecond,
		RetryMaxDelay:    20 * time.Millisecond,
		TaskPollInterval: time.Millisecond,
		TaskTimeout:      10 * time.Second,
		Timeout:          5 * time.Second,
		RateLimit:        -1,
	}
}

func newClient(t *testing.T, o nutanix.Options) *nutanix.Client {
	t.Helper()
	c, err := nutanix.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkNoGoroutineLeak fails if the goroutine count does not come back to
// (about) what it was when the returned function was made.
func checkNoGoroutineLeak(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before+1 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
