package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/engine/retention"
)

// TestHolds: a hold, added through a repository opened only to read, keeps
// its point from forget (which then removes nothing, not even the other
// points it names) and from prune (kept as "held"); once removed, the
// point goes; a forgotten point cannot be held; a damaged hold file holds
// every point.
func TestHolds(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	img := enginetest.DataDisk(t, 1<<20, 7)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var rps []*engine.RestorePoint
	for i := range 3 {
		rp, err := enginetest.ImportFiles(ctx, w, "db01", t0.Add(time.Duration(i)*time.Hour), img)
		if err != nil {
			t.Fatal(err)
		}
		rps = append(rps, rp)
	}
	held, free := rps[0], rps[1]
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	h, err := r.AddHold(ctx, held, engine.Hold{Reason: "instant restore of VM ir1 hydrates from it", Site: "https://pc:9440", Object: "ahvfs-nfs-x"})
	if err != nil {
		t.Fatal(err)
	}
	if h.RP != held.ID || h.Point != held.Name() || h.Set.IsZero() || len(h.ID) != 32 {
		t.Fatalf("hold %+v", h)
	}
	holds, err := w.Holds(ctx)
	if err != nil || len(holds) != 1 || holds[0] != h {
		t.Fatalf("holds %+v %v, want [%+v]", holds, err, h)
	}

	err = w.Forget(ctx, []*engine.RestorePoint{free, held})
	if !errors.Is(err, engine.ErrHeld) || !strings.Contains(err.Error(), held.Name()) || !strings.Contains(err.Error(), "ir1") {
		t.Fatalf("forget of a held point: %v, want ErrHeld naming %s and the hold's reason", err, held.Name())
	}
	if got, _ := w.ListRestorePoints(ctx, "db01"); len(got) != 3 {
		t.Fatalf("a refused forget removed something: %d restore points left", len(got))
	}
	if left := repoFiles(t, dir, "records/forget"); len(left) != 0 {
		t.Fatalf("a refused forget left tombstones: %v", left)
	}
	plan, err := w.PlanPrune(ctx, engine.PruneOptions{Policy: retention.Policy{Last: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Remove) != 1 || plan.Remove[0].ID != free.ID || !slices.Contains(plan.Reasons[held.ID], "held") {
		t.Fatalf("prune plan removes %v, keeps %v for %v; want only %s removed and %s kept as held", plan.Remove, plan.Reasons[held.ID], held.Name(), free.Name(), held.Name())
	}
	if err := w.Forget(ctx, plan.Remove); err != nil {
		t.Fatalf("forget of an unheld point beside a held one: %v", err)
	}

	if err := r.RemoveHold(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveHold(ctx, h.ID); err != nil {
		t.Fatalf("removing a removed hold: %v", err)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{held}); err != nil {
		t.Fatalf("forget once the hold is removed: %v", err)
	}
	if _, err := r.AddHold(ctx, held, engine.Hold{Reason: "late"}); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("hold of a forgotten point: %v, want ErrNotFound", err)
	}
	if left := repoFiles(t, dir, "records/hold"); len(left) != 0 {
		t.Fatalf("a refused hold left its file: %v", left)
	}

	// A damaged hold holds everything: it cannot say what it holds.
	if err := os.WriteFile(filepath.Join(dir, "records", "hold", strings.Repeat("ab", 16)+".rec"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{rps[2]}); !errors.Is(err, engine.ErrHeld) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("forget beside a damaged hold: %v, want ErrHeld saying the hold is damaged", err)
	}
}

// TestHoldRacesForget starts a hold and a forget of the same point at
// once, many times: never do both succeed, a held point always reads back,
// and no tombstone is left behind.
func TestHoldRacesForget(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	img := enginetest.DataDisk(t, 64<<10, 3)
	want := readFile(t, img)
	outcomes := map[string]int{}
	for i := range 40 {
		rp, err := enginetest.ImportFiles(ctx, w, "vm", time.Unix(1e9+int64(i), 0), img)
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg         sync.WaitGroup
			hold       engine.Hold
			herr, ferr error
		)
		wg.Add(2)
		go func() { defer wg.Done(); hold, herr = r.AddHold(ctx, rp, engine.Hold{Reason: "race"}) }()
		go func() { defer wg.Done(); ferr = w.Forget(ctx, []*engine.RestorePoint{rp}) }()
		wg.Wait()
		if herr != nil && !errors.Is(herr, engine.ErrNotFound) {
			t.Fatalf("round %d: hold: %v", i, herr)
		}
		if ferr != nil && !errors.Is(ferr, engine.ErrHeld) {
			t.Fatalf("round %d: forget: %v", i, ferr)
		}
		switch {
		case herr == nil && ferr == nil:
			t.Fatalf("round %d: the point was both held and forgotten", i)
		case herr == nil:
			if got := readAll(t, w, rp, 0); string(got) != string(want) {
				t.Fatalf("round %d: the held point reads back wrong", i)
			}
			if err := r.RemoveHold(ctx, hold.ID); err != nil {
				t.Fatal(err)
			}
		case ferr == nil:
			if _, err := w.Resolve(ctx, rp.Name()); !errors.Is(err, engine.ErrNotFound) {
				t.Fatalf("round %d: forgotten, yet it resolves: %v", i, err)
			}
		}
		outcomes[fmt.Sprintf("hold %v, forget %v", herr == nil, ferr == nil)]++
		if left := repoFiles(t, dir, "records/forget"); len(left) != 0 {
			t.Fatalf("round %d: tombstones left: %v", i, left)
		}
		if left := repoFiles(t, dir, "records/hold"); len(left) != 0 {
			t.Fatalf("round %d: holds left: %v", i, left)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestForgetOfHeldPointInterrupted: a forget killed after its tombstones
// but before it looked for holds is not finished by the next writer while
// the point is held: the point stays, readable, its tombstone too (new
// holds back out on it); once the hold goes, the next writer finishes it.
func TestForgetOfHeldPointInterrupted(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	img := enginetest.DataDisk(t, 256<<10, 5)
	rp, err := enginetest.ImportFiles(ctx, w, "vm", time.Unix(1e9, 0), img)
	if err != nil {
		t.Fatal(err)
	}
	hold, err := w.AddHold(ctx, rp, engine.Hold{Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	restore := engine.SetFaultHook(func(step string) error {
		if step == engine.FaultForgetMarked {
			return errInjected
		}
		return nil
	})
	err = w.Forget(ctx, []*engine.RestorePoint{rp})
	restore()
	if !errors.Is(err, errInjected) {
		t.Fatalf("forget: %v, want the injected error", err)
	}
	if left := repoFiles(t, dir, "records/forget"); len(left) != 1 {
		t.Fatalf("tombstones %v, want the interrupted forget's one", left)
	}
	w.Close()
	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if got := readAll(t, w, rp, 0); string(got) != string(readFile(t, img)) {
		t.Fatal("the held point does not read back after the interrupted forget")
	}
	if left := repoFiles(t, dir, "records/forget"); len(left) != 1 {
		t.Fatalf("tombstones %v after the next writer opened, want the held point's one", left)
	}
	if _, err := w.AddHold(ctx, rp, engine.Hold{Reason: "another"}); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("a new hold of a point being forgotten: %v, want ErrNotFound", err)
	}
	if err := w.RemoveHold(ctx, hold.ID); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	defer w.Close()
	if _, err := w.Resolve(ctx, rp.Name()); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("once the hold is gone, the interrupted forget is not finished: %v", err)
	}
	if left := repoFiles(t, dir, "records/forget"); len(left) != 0 {
		t.Fatalf("tombstones left: %v", left)
	}
}
