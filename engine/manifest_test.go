package engine

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestCheckpointAfterKilledRotation: testdata/killed-index is a Pebble
// directory as left by a writer killed right after it rotated its manifest
// (captured from a kill loop). Opened as it is, Pebble checkpoints an empty
// manifest that does not open; after startManifest the checkpoint opens.
// This is what failed imports killed by TestImportSurvivesSIGKILL.
func TestCheckpointAfterKilledRotation(t *testing.T) {
	for _, fix := range []bool{false, true} {
		dir := t.TempDir()
		db := filepath.Join(dir, "index")
		if err := os.CopyFS(db, os.DirFS(filepath.Join("testdata", "killed-index"))); err != nil {
			t.Fatal(err)
		}
		d, err := pebble.Open(db, pebbleOptions(slog.New(slog.DiscardHandler), false, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		if fix {
			if err := startManifest(d); err != nil {
				t.Fatal(err)
			}
		}
		cp := filepath.Join(dir, "cp")
		if err := d.Checkpoint(cp, pebble.WithFlushedWAL()); err != nil {
			t.Fatal(err)
		}
		c, err := pebble.Open(cp, pebbleOptions(slog.New(slog.DiscardHandler), true, 1<<20))
		switch {
		case fix && err != nil:
			t.Errorf("after startManifest the checkpoint does not open: %v", err)
		case !fix && (err == nil || !strings.Contains(err.Error(), "malformed manifest")):
			t.Errorf("the fixture no longer reproduces the empty manifest (open: %v); Pebble may have fixed it", err)
		}
		if c != nil {
			c.Close()
		}
		if fix {
			if err := checkpointVerified(d, filepath.Join(dir, "cp2")); err != nil {
				t.Errorf("checkpointVerified: %v", err)
			}
		}
		d.Close()
	}
}
