package simtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
)

// Remote names a simulator by what cmd/prismsim prints: its URL, the CA
// certificate file and the admin password file.
type Remote struct {
	URL          string
	CAFile       string
	PasswordFile string
	User         string // default "admin"
}

// RemoteOf is the Remote of a simulator in this process.
func RemoteOf(s *prismsim.Sim) Remote {
	return Remote{URL: s.URL(), CAFile: s.CAFile(), PasswordFile: s.PasswordFile(), User: s.User()}
}

// Inventory reads the objects of the simulator at r through its admin API
// (GET /sim/inventory), after waiting up to wait for its running tasks to
// end (tasks still running then are listed in Objects.RunningTasks).
func Inventory(ctx context.Context, r Remote, wait time.Duration) (prismsim.Objects, error) {
	var o prismsim.Objects
	c, err := httpClient(r.CAFile)
	if err != nil {
		return o, fmt.Errorf("inventory of %s: %w", r.URL, err)
	}
	defer c.CloseIdleConnections()
	c.Timeout = wait + time.Minute
	pw, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return o, fmt.Errorf("inventory of %s: %w", r.URL, err)
	}
	u := strings.TrimSuffix(r.URL, "/") + "/sim/inventory?wait=" + url.QueryEscape(wait.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return o, fmt.Errorf("inventory of %s: %w", r.URL, err)
	}
	user := r.User
	if user == "" {
		user = "admin"
	}
	req.SetBasicAuth(user, strings.TrimSpace(string(pw)))
	res, err := c.Do(req)
	if err != nil {
		return o, fmt.Errorf("inventory of %s: %w", r.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return o, fmt.Errorf("inventory of %s: %w", r.URL, err)
	}
	if res.StatusCode != http.StatusOK {
		return o, fmt.Errorf("inventory of %s: %s: %s", r.URL, res.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return o, fmt.Errorf("inventory of %s: decode: %w", r.URL, err)
	}
	return o, nil
}

// RequireUnchanged fails t, listing every difference, unless after holds
// the same objects as before (see prismsim.Diff).
func RequireUnchanged(t testing.TB, before, after prismsim.Objects) {
	t.Helper()
	if d := prismsim.Diff(before, after); len(d) > 0 {
		t.Fatalf("the simulated cluster changed:\n%s", d)
	}
}
