package main

import (
	"context"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestImportKill runs the tool with a few kills over small images, so
// that CI exercises what `go run ./tools/crash/importkill` (200 kills)
// does. Only the unencrypted repository: every command on an encrypted
// one spends about a CPU-second in argon2id. No timing is asserted: under
// load the kills land elsewhere in the imports, and every check must hold
// wherever they land.
func TestImportKill(t *testing.T) {
	testenv.Short(t, "builds ahvfs and kills imports")
	res, err := run(context.Background(), options{Kills: 6, SizeMiB: 4, ReadDataEvery: 2, Dir: t.TempDir()}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if res.trials != 6 || len(res.failures) != 0 {
		t.Fatalf("%d trials, %d failures; want 6 and none", res.trials, len(res.failures))
	}
	// The setup's four restore points and the final import's, at least.
	if res.restorePoints < 5 {
		t.Fatalf("%d restore points at the end, want at least 5", res.restorePoints)
	}
}
