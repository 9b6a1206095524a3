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
		copyDir(t, filepath.Join("testdata", "killed-index"), db)
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

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
