package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// TestXenPool: a policy on an XCP-ng pool (a [[cluster]] with xapi) runs
// beside a Prism cluster's policy in one daemon: its VMs are backed up
// through XAPI, a full at start and an incremental at the next run, its
// retention and its sync run after each backup, and the pool keeps one
// reference snapshot per VM. The console restores the pool's VM onto
// the pool (byte-exact), and refuses what a pool has not (an instant
// restore, a container).
func TestXenPool(t *testing.T) {
	e := newEnv(t, "web01")
	x := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01", Files: []string{enginetest.Ext4Image(t, 8<<20, 3)}}}})
	users := filepath.Join(t.TempDir(), "users.json")
	token := consoleUsers(t, users)
	cfg := e.consoleConfig(users, "", fmt.Sprintf(`
[[cluster]]
name = "pool"
xapi = "xapi://%s"
password_file = %q
ca_cert = %q
strategy = "cbt"
[[policy]]
name = "gold"
cluster = "prod"
vms = ["web*"]
every = "1h"
[[policy]]
name = "xen"
cluster = "pool"
vms = ["xen*"]
every = "1h"
keep_last = 1
sync_to = "dr"
`, x.Addr(), x.PasswordFile(), x.CAFile()))
	e.start(cfg)
	admin := &consoleClient{t: t, base: "http://" + serveHTTP(t, e, cfg.HTTP), c: &http.Client{Timeout: 30 * time.Second}, bearer: token}
	for run, level := range []backup.Level{backup.LevelFull, backup.LevelIncremental} {
		if run > 0 {
			if err := x.Write("xen01", 0, 1<<20, []byte("changed between the runs")); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Hour)
		}
		got := e.expect("backup/gold", "backup/xen", "prune/xen", "sync/xen")
		b := got["backup/xen"]
		if !slices.Equal(vmNames(b), []string{"xen01"}) || b.VMs[0].Level != string(level) {
			t.Fatalf("run %d: the pool's backup %+v, want xen01 %s", run, b.VMs, level)
		}
		if g := got["backup/gold"]; !slices.Equal(vmNames(g), []string{"web01"}) {
			t.Fatalf("run %d: the Prism policy backed up %v", run, vmNames(g))
		}
		if n, dr := points(t, e.repo), points(t, e.target); n["xen01"] != 1 || dr["xen01"] != run+1 {
			t.Fatalf("run %d: xen01 has %d points (keep_last 1), %d at DR", run, n["xen01"], dr["xen01"])
		}
		e.quiet()
	}
	restoreOnPool(t, e, x, admin)
	inv, err := xapisimtest.Inventory(context.Background(), xapisimtest.RemoteOf(x))
	if err != nil {
		t.Fatal(err)
	}
	snaps := 0
	for _, v := range inv.VMs {
		if v.IsSnapshot {
			snaps++
		}
	}
	if snaps != 1 {
		t.Fatalf("the pool keeps %d snapshots, want the reference alone", snaps)
	}
}

// restoreOnPool: the console restores xen01's newest point onto the pool
// under a new name; the disk is the live one (unchanged since that
// backup). What a pool has not (an instant restore, a container), and an
// SR on a Prism, are refused.
func restoreOnPool(t *testing.T, e *env, x *xapisim.Sim, admin *consoleClient) {
	t.Helper()
	r := readRepo(t, e.repo)
	rps, err := r.ListRestorePoints(context.Background(), "xen01")
	r.Close()
	if err != nil || len(rps) == 0 {
		t.Fatalf("xen01's points: %v %v", rps, err)
	}
	at := strings.TrimPrefix(rps[len(rps)-1].Name(), "xen01@")
	path := "/api/v1/vms/xen01/points/" + at + "/restore"
	for bad, why := range map[string]map[string]any{"no instant restore there": {"cluster": "pool", "instant": true},
		"container is for AHV clusters": {"cluster": "pool", "container": "default"}, "is a Prism: give container": {"cluster": "prod", "sr": "Local storage"}} {
		if code, body := admin.call("POST", path, why); code != http.StatusBadRequest || !strings.Contains(body, bad) {
			t.Fatalf("restore %v: %d %s, want 400 saying %q", why, code, body, bad)
		}
	}
	if code, body := admin.call("POST", path, map[string]any{"cluster": "pool", "name": "xen01-back"}); code != http.StatusAccepted {
		t.Fatalf("restore onto the pool: %d %s", code, body)
	}
	e.expect("restore/")
	got, err := os.ReadFile(diskOf(t, x, "xen01-back"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(diskOf(t, x, "xen01"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("xen01-back's disk is not xen01's (%v)", err)
	}
}

// diskOf is the file of the first disk of the pool's VM name.
func diskOf(t *testing.T, x *xapisim.Sim, name string) string {
	t.Helper()
	p, err := x.DiskFile(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
