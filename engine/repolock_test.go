package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/s3test"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// putLock stores a lock object as another process would.
func putLock(t *testing.T, be backend.Backend, name, host string, pid int) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"v": 1, "kind": strings.Split(name, "-")[0], "host": host, "pid": pid,
		"created": time.Now().UTC(), "refreshed": time.Now().UTC()})
	if err := backend.PutBytes(context.Background(), be, "locks/"+name, body); err != nil {
		t.Fatal(err)
	}
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestSharedLocks: gc's exclusive lock keeps writers out and the other
// way round, with messages naming the holder; a dead process's lock and
// one not refreshed in time are stale and ignored, and RemoveRepoLocks
// removes exactly those.
func TestSharedLocks(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartFake(t)
	hostA, hostB := sharedRepo(t, srv)

	gc := hostA.open(t, engine.OpenOptions{Writable: true, Exclusive: true})
	_, err := engine.Open(ctx, hostB.cache, engine.OpenOptions{Backend: hostB.be, Remote: true, Writable: true})
	if !errors.Is(err, engine.ErrLocked) || !strings.Contains(err.Error(), "gc is running") || !strings.Contains(err.Error(), "exclusive lock of pid") {
		t.Fatalf("writer's open while gc runs: %v; want ErrLocked saying gc runs, and whose lock it is", err)
	}
	_, err = engine.Open(ctx, hostB.cache, engine.OpenOptions{Backend: hostB.be, Remote: true})
	if !errors.Is(err, engine.ErrLocked) {
		t.Fatalf("reader's open while gc runs: %v; want ErrLocked", err)
	}
	// --lock-wait: a writer waits for gc to finish.
	done := make(chan error, 1)
	go func() {
		w, err := engine.Open(ctx, hostB.cache, engine.OpenOptions{Backend: hostB.be, Remote: true, Writable: true, LockWait: time.Minute})
		if err == nil {
			w.Close()
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	gc.Close()
	if err := <-done; err != nil {
		t.Fatalf("a writer waiting for gc: %v", err)
	}

	// A dead process of this host, and another host's lock not refreshed
	// for longer than the staleness: both ignored by gc.
	// Stale after 5 s: the store's times have a resolution of a second,
	// and the fresh lock must stay fresh however slow the machine is
	// between storing it and gc's open.
	restore := engine.SetLockTimes(time.Minute, 5*time.Second)
	defer restore()
	putLock(t, hostB.be, "shared-dead", hostname(t), deadPID(t))
	putLock(t, hostB.be, "shared-otherhost", "other-host.example", 4242)
	if _, err := engine.Open(ctx, hostA.cache, engine.OpenOptions{Backend: hostA.be, Remote: true, Writable: true, Exclusive: true}); !errors.Is(err, engine.ErrLocked) || !strings.Contains(err.Error(), "other-host.example") {
		t.Fatalf("gc with another host's fresh lock: %v; want ErrLocked naming other-host.example", err)
	}
	time.Sleep(6500 * time.Millisecond)
	locks, err := engine.RepoLocks(ctx, hostA.be)
	if err != nil || len(locks) != 2 || !locks[0].Stale || !locks[1].Stale {
		t.Fatalf("locks: %+v %v; want two stale ones", locks, err)
	}
	gc = hostA.open(t, engine.OpenOptions{Writable: true, Exclusive: true})
	gc.Close()
	putLock(t, hostB.be, "shared-live", "other-host.example", 4243)
	removed, err := engine.RemoveRepoLocks(ctx, hostA.be, false)
	if err != nil || len(removed) != 2 {
		t.Fatalf("RemoveRepoLocks: %+v %v; want the two stale locks", removed, err)
	}
	left, err := engine.RepoLocks(ctx, hostA.be)
	if err != nil || len(left) != 1 || left[0].Name != "locks/shared-live" || left[0].Stale {
		t.Fatalf("locks left: %+v %v; want only the live one", left, err)
	}
}

// TestLostLockStopsCommit: a writer whose lock object was removed (by
// 'ahvfs unlock --all' on another host) notices at its next refresh and
// refuses to commit, so a gc that took over cannot lose its data.
func TestLostLockStopsCommit(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartFake(t)
	hostA, _ := sharedRepo(t, srv)
	restore := engine.SetLockTimes(100*time.Millisecond, time.Hour)
	defer restore()
	w := hostA.open(t, engine.OpenOptions{Writable: true})
	defer w.Close()
	if _, err := engine.RemoveRepoLocks(ctx, hostA.be, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // several refreshes
	_, err := enginetest.ImportFiles(ctx, w, "vm", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), writeTemp(t, randomBytes(t, 1<<20, 1)))
	if !errors.Is(err, engine.ErrLocked) || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("commit after the lock was removed: %v; want ErrLocked saying so", err)
	}
	rps, _ := backend.ListAll(ctx, hostA.be, "records/rp/")
	if len(rps) != 0 {
		t.Fatalf("record files after a refused commit: %v", rps)
	}
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
