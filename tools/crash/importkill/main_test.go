package main

import (
	"context"
	"testing"

	"github.com/ahvfs/ahvfs/engine/backend/s3test"
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

// TestImportKillS3: the same on an S3 repository on versitygw: a killed
// import leaves no half-visible restore point in the bucket, and the
// lock objects killed processes leave (stale at once on this host) stop
// nobody.
func TestImportKillS3(t *testing.T) {
	testenv.Short(t, "builds ahvfs and kills imports")
	srv := s3test.StartVersitygw(t, s3test.Options{})
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	res, err := run(context.Background(), options{Kills: 4, SizeMiB: 4, ReadDataEvery: 2, Dir: t.TempDir(), S3: srv.Endpoint}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if res.trials != 4 || len(res.failures) != 0 || res.restorePoints < 3 {
		t.Fatalf("%d trials, %d failures, %d restore points; want 4, none, at least 3", res.trials, len(res.failures), res.restorePoints)
	}
}
