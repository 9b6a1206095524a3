package engine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// One writer at a time; readers any time, also while the writer writes;
// a reader sees new restore points after Refresh.
func TestWriterLockAndConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	img := enginetest.Ext4Image(t, 64<<20, 1)
	want, _ := os.ReadFile(img)
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	_, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if !errors.Is(err, engine.ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second writer: %v", err)
	}
	rp1, err := enginetest.ImportFiles(ctx, w, "a", time.Unix(1e9, 0), img)
	if err != nil {
		t.Fatal(err)
	}
	r1 := enginetest.Open(t, dir, engine.OpenOptions{})
	r2 := enginetest.Open(t, dir, engine.OpenOptions{})

	// While the writer imports, both readers keep reading rp1.
	done := make(chan error, 1)
	go func() {
		_, err := enginetest.ImportFiles(ctx, w, "b", time.Unix(2e9, 0), img)
		done <- err
	}()
	for _, r := range []*engine.Repository{r1, r2} {
		if got := readAll(t, r, rp1, 0); !bytes.Equal(got, want) {
			t.Fatal("reader during a write read wrong bytes")
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := r1.Resolve(ctx, "b@latest"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("a reader sees the state it opened until Refresh: %v", err)
	}
	changed, err := r1.Refresh(ctx)
	if err != nil || !changed {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	rp2, err := r1.Resolve(ctx, "b@latest")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r1, rp2, 0); !bytes.Equal(got, want) {
		t.Fatal("refreshed reader read wrong bytes")
	}
	// The writer's lock dies with it.
	w.Close()
	w2, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatalf("writer after close: %v", err)
	}
	w2.Close()
	// Old checkpoints no reader holds are pruned; held ones stay readable.
	if got := readAll(t, r2, rp1, 0); !bytes.Equal(got, want) {
		t.Fatal("a reader on an old checkpoint lost its data")
	}
}
