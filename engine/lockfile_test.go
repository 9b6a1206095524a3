package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A writer waits for a reader's catch-up of the shared cache (it takes
// seconds) instead of failing; a reader's catch-up that has a checkpoint
// to read does not wait, and another writer is still refused at once.
func TestLockWaitsForCatchUp(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	holder, err := lockRepo(ctx, dir, 0, false, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockRepo(ctx, dir, 0, false, true, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("an impatient catch-up waited: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		holder.Close()
	}()
	w, err := lockRepo(ctx, dir, 0, false, false, true)
	if err != nil {
		t.Fatalf("a writer did not wait for a catch-up: %v", err)
	}
	if _, err := lockRepo(ctx, dir, 0, false, false, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("a second writer was not refused: %v", err)
	}
	w.Close()
}
