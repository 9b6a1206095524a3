package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestConcurrentCommitsPublished: restore points committed at the same
// time by concurrent jobs (as a backup of several VMs does) are all
// visible to a reader opened afterwards. Publishing used to race for one
// checkpoint generation, leaving the loser's restore point unpublished.
func TestConcurrentCommitsPublished(t *testing.T) {
	ctx := context.Background()
	img := enginetest.DataDisk(t, 1<<20, 3)
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	t0 := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	const vms, rounds = 4, 5
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make([]error, vms)
		for v := range vms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[v] = enginetest.ImportFiles(ctx, w, fmt.Sprintf("vm%d", v), t0.Add(time.Duration(round)*time.Minute), img)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		r := enginetest.Open(t, dir, engine.OpenOptions{})
		rps, err := r.ListRestorePoints(ctx, "")
		r.Close()
		if err != nil || len(rps) != vms*(round+1) {
			t.Fatalf("round %d: a reader sees %d restore points (%v), want %d", round, len(rps), err, vms*(round+1))
		}
	}
}
