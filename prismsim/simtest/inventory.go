package simtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
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
	user := r.User
	if user == "" {
		user = "admin"
	}
	password := func() (string, error) {
		pw, err := os.ReadFile(r.PasswordFile)
		return strings.TrimSpace(string(pw)), err
	}
	var o prismsim.Objects
	err := simkit.GetInventory(ctx, simkit.InventoryRequest{URL: r.URL, CAFile: r.CAFile, User: user,
		Password: password, Wait: wait}, &o)
	return o, err
}

// RequireUnchanged fails t, listing every difference, unless after holds
// the same objects as before (see prismsim.Diff).
func RequireUnchanged(t testing.TB, before, after prismsim.Objects) {
	t.Helper()
	if d := prismsim.Diff(before, after); len(d) > 0 {
		t.Fatalf("the simulated cluster changed:\n%s", d)
	}
}
