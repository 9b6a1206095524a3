package daemon_test

import (
	"context"
	"fmt"
	"slices"
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
// reference snapshot per VM.
func TestXenPool(t *testing.T) {
	e := newEnv(t, "web01")
	x := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{{Name: "xen01", Files: []string{enginetest.Ext4Image(t, 8<<20, 3)}}}})
	cfg := e.config(fmt.Sprintf(`
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
