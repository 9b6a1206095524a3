package main

import (
	"context"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// TestFailoverKill runs the tool as CI does: ten kills of each failover
// mode (test, instant test, planned, unplanned), half resumed and half
// undone, and ten failback trials (a
// permanent failover and a failback killed in each, both resumed). No timing is asserted: under load
// the kills land elsewhere, and every check must hold wherever they land.
func TestFailoverKill(t *testing.T) {
	testenv.Short(t, "builds ahvfs and kills failovers between two simulated sites")
	res, err := run(context.Background(), options{Kills: 10, Modes: []string{"test", "instant", "planned", "unplanned", "failback"}, SizeMiB: 4,
		Common: crashproc.Common{Dir: t.TempDir()}}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"test", "instant", "planned", "unplanned"} {
		if res.trials[m] != 10 || res.resumed[m] != 5 || res.undone[m] < 5 {
			t.Errorf("%s: %d trials, %d resumed, %d undone; want 10, 5, at least 5", m, res.trials[m], res.resumed[m], res.undone[m])
		}
	}
	if res.trials["failback"] != 10 || res.killed["failback"] == 0 {
		t.Errorf("failback: %d trials, %d kills; want 10, some", res.trials["failback"], res.killed["failback"])
	}
	if len(res.failures) != 0 {
		t.Fatalf("%d failures", len(res.failures))
	}
}
