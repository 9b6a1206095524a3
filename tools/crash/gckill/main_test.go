package main

import (
	"context"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// TestGCKill runs the tool with a few kills over small images, so that CI
// exercises what `go run ./tools/crash/gckill` (60 kills) does. No timing
// is asserted: under load the kills land elsewhere, and every check must
// hold wherever they land.
func TestGCKill(t *testing.T) {
	testenv.Short(t, "builds ahvfs and kills prunes and gcs")
	res, err := run(context.Background(), options{Kills: 6, SizeMiB: 2, Common: crashproc.Common{Dir: t.TempDir()}}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if res.trials != 6 || len(res.failures) != 0 || res.readBack == 0 {
		t.Fatalf("%d trials, %d failures, %d bytes read back; want 6, none, some", res.trials, len(res.failures), res.readBack)
	}
}
