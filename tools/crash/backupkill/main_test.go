package main

import (
	"context"
	"os"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestBackupKill runs the tool with a few kills per API, so that CI
// exercises what `go run ./tools/crash/backupkill` (20 kills each) does.
func TestBackupKill(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "tgtd", "tgtadm")
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), options{Kills: 2, APIs: []string{"v4", "v3", "v2"}}, out)
	b, _ := os.ReadFile(out.Name())
	t.Logf("\n%s", b)
	if err != nil {
		t.Fatal(err)
	}
}
