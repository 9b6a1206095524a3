package main

import (
	"context"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// TestSyncKill runs the tool with a few kills of small syncs, so that CI
// exercises what `go run ./tools/crash/synckill` (40 kills) does. No
// timing is asserted: under load the kills land elsewhere, and every
// check must hold wherever they land.
func TestSyncKill(t *testing.T) {
	testenv.Short(t, "builds ahvfs and kills syncs and servers")
	res, err := run(context.Background(), options{Kills: 8, SizeMiB: 8, Common: crashproc.Common{Dir: t.TempDir()}}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if res.trials != 8 || len(res.failures) != 0 || res.readBack == 0 {
		t.Fatalf("%d trials, %d failures, %d bytes read back; want 8, none, some", res.trials, len(res.failures), res.readBack)
	}
}
