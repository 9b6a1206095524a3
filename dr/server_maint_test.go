package dr

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// TestRemoteGC: an append-only server runs a gc dry run and refuses a gc
// and an unlock; a server that is not append-only reclaims what a forget
// left once no client has written for a while (nor since it started), also
// while a sync pushes new points into it, and the target then verifies and
// holds every point byte-exact.
func TestRemoteGC(t *testing.T) {
	ctx := context.Background()
	srcDir, dstDir := pair(t, false)
	src := openW(t, srcDir, nil)
	disk := enginetest.DataDisk(t, 16<<20, 6)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var names []string
	importPoint := func(i int) {
		t.Helper()
		overwrite(t, disk, 0, 8<<20, byte(i+1)) // half of each point is its own
		rp, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "app", Time: t0.Add(time.Duration(i) * time.Hour)}, disk)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, rp.Name())
	}
	for i := range 3 {
		importPoint(i)
	}
	dst := openW(t, dstDir, nil)
	if _, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{}); err != nil {
		t.Fatal(err)
	}
	gone, err := dst.Resolve(ctx, names[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Forget(ctx, []*engine.RestorePoint{gone}); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if _, err := src.Resolve(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	keep := names[1:]

	ao := startServer(t, dstDir, nil, true)
	plan, err := dial(t, ao.url, ao.client).GC(ctx, GCRequest{}, true)
	if err != nil || !plan.DryRun || plan.ReclaimedBytes <= 0 {
		t.Fatalf("gc dry run on an append-only server: %+v %v", plan, err)
	}
	if _, err := dial(t, ao.url, ao.client).GC(ctx, GCRequest{}, false); !errors.Is(err, ErrAppendOnly) {
		t.Fatalf("gc on an append-only server: %v", err)
	}
	if _, err := dial(t, ao.url, ao.client).Unlock(ctx); !errors.Is(err, ErrAppendOnly) {
		t.Fatalf("unlock on an append-only server: %v", err)
	}
	ao.close()

	const quiet = 2 * time.Second
	srv := startServer(t, dstDir, nil, false, func(s *Server) { s.GCQuiet = quiet })
	remote := dial(t, srv.url, srv.client)
	rep := gcWhenQuiet(t, remote, GCRequest{MaxUnused: 1e-9, ReaderWait: -1})
	if rep.DryRun || rep.ReclaimedBytes <= 0 || rep.PacksDeleted+rep.PacksRewritten == 0 {
		t.Fatalf("gc through the server: %+v", rep)
	}
	if u, err := remote.Unlock(ctx); err != nil || len(u.Removed) != 0 {
		t.Fatalf("unlock of a repository with no lock hook: %+v %v", u, err)
	}
	srv.close()

	// Right after a client wrote, a gc is held off (a dry run is not).
	held := startServer(t, dstDir, nil, false, func(s *Server) { s.GCQuiet = time.Hour })
	hr := dial(t, held.url, held.client)
	if err := hr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := hr.GC(ctx, GCRequest{ReaderWait: -1}, false); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "try again") {
		t.Fatalf("gc right after a write: %v, want ErrBusy", err)
	}
	if _, err := hr.GC(ctx, GCRequest{}, true); err != nil {
		t.Fatalf("gc dry run right after a write: %v", err)
	}
	held.close()
	srv = startServer(t, dstDir, nil, false, func(s *Server) { s.GCQuiet = quiet })
	remote = dial(t, srv.url, srv.client)

	// New points pushed while gcs are asked for, again and again: a gc
	// runs alone, and not until no client has written for a while, so the
	// sync's blobs stay until it adopts their points.
	for i := 3; i < 6; i++ {
		importPoint(i)
	}
	keep = append(keep, names[3:]...)
	done := make(chan error, 1)
	go func() {
		_, err := Sync(ctx, &Local{R: src}, remote, Options{})
		done <- err
	}()
	ran, busy := 0, 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sync beside gcs: %v", err)
			}
			running = false
		default:
			_, err := remote.GC(ctx, GCRequest{MaxUnused: 1e-9, ReaderWait: -1}, false)
			switch {
			case errors.Is(err, ErrBusy):
				busy++
			case err != nil:
				t.Fatalf("gc beside a sync: %v", err)
			default:
				ran++
			}
		}
	}
	gcWhenQuiet(t, remote, GCRequest{ReaderWait: -1}) // once the clients are quiet, gc runs
	srv.close()
	dst = openW(t, dstDir, nil)
	defer dst.Close()
	verifyData(t, dst)
	sameContent(t, src, dst, keep...)
	if ps, err := dst.ListRestorePoints(ctx, ""); err != nil || len(ps) != len(keep) {
		t.Fatalf("target holds %d points (%v), want %d", len(ps), err, len(keep))
	}
	t.Logf("gcs asked for beside the sync: %d ran, %d held off", ran, busy)
}

// gcWhenQuiet asks r for a gc until it is no longer busy (a minute at
// most: the servers here are quiet after two seconds).
func gcWhenQuiet(t *testing.T, r *Remote, g GCRequest) *engine.GCReport {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		rep, err := r.GC(context.Background(), g, false)
		if err == nil {
			return rep
		}
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("gc: %v", err)
		}
	}
}
