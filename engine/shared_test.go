package engine_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/s3test"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// sharedHost is one backup host of a shared repository: its own cache
// directory, and the bucket every host shares.
type sharedHost struct {
	cache string
	be    backend.Backend
}

func (h sharedHost) open(t *testing.T, o engine.OpenOptions) *engine.Repository {
	t.Helper()
	o.Backend, o.Remote = h.be, true
	r, err := engine.Open(context.Background(), h.cache, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sharedRepo initialises a repository in a fresh bucket of srv and returns
// two hosts of it.
func sharedRepo(t *testing.T, srv *s3test.Server) (a, b sharedHost) {
	t.Helper()
	be := srv.NewBackend(t, "repo", false)
	o := gcOpts
	o.Backend, o.Remote = be, true
	cacheA := t.TempDir()
	if _, err := engine.Init(context.Background(), cacheA, o); err != nil {
		t.Fatal(err)
	}
	return sharedHost{cacheA, be}, sharedHost{t.TempDir(), be}
}

// TestSharedRepositoryTwoHosts: host A backs up; host B, with an empty
// cache, sees the point and dedups against A's chunks; both write at the
// same time; A forgets a point and runs gc while B is closed; B then reads
// every remaining point byte-exact; a deleted cache is rebuilt.
func TestSharedRepositoryTwoHosts(t *testing.T) {
	t.Run("gofakes3", func(t *testing.T) { testSharedTwoHosts(t, s3test.StartFake(t)) })
	t.Run("versitygw", func(t *testing.T) { testSharedTwoHosts(t, s3test.StartVersitygw(t, s3test.Options{})) })
}

func testSharedTwoHosts(t *testing.T, srv *s3test.Server) {
	ctx := context.Background()
	hostA, hostB := sharedRepo(t, srv)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a := randomBytes(t, 3<<20, 11)
	wa := hostA.open(t, engine.OpenOptions{Writable: true})
	rpA, err := enginetest.ImportFiles(ctx, wa, "vm-a", t0, writeTemp(t, a))
	if err != nil {
		t.Fatal(err)
	}
	wa.Close()

	// B starts with no cache: it builds one and dedups against A.
	wb := hostB.open(t, engine.OpenOptions{Writable: true})
	rpB1, err := enginetest.ImportFiles(ctx, wb, "vm-b", t0, writeTemp(t, a))
	if err != nil {
		t.Fatal(err)
	}
	if n := rpB1.Disks[0].Stats.NewChunks; n > 1 {
		t.Fatalf("host B stored %d new chunks of a disk host A stored: want none but its manifest page", n)
	}
	wb.Close()

	// Two writers at once, into the same bucket.
	b := randomBytes(t, 6<<20, 12)
	c := randomBytes(t, 2<<20, 13)
	var wg sync.WaitGroup
	var rpB2, rpA2 *engine.RestorePoint
	var errA, errB error
	wa = hostA.open(t, engine.OpenOptions{Writable: true})
	wb = hostB.open(t, engine.OpenOptions{Writable: true})
	wg.Go(func() { rpA2, errA = enginetest.ImportFiles(ctx, wa, "vm-a", t0.Add(time.Hour), writeTemp(t, b)) })
	wg.Go(func() { rpB2, errB = enginetest.ImportFiles(ctx, wb, "vm-b", t0.Add(time.Hour), writeTemp(t, c)) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("concurrent writers: %v, %v", errA, errB)
	}
	// gc cannot start while they are open.
	_, err = engine.Open(ctx, hostA.cache+"-gc", engine.OpenOptions{Backend: hostA.be, Remote: true, Writable: true, Exclusive: true})
	if !errors.Is(err, engine.ErrLocked) || !strings.Contains(err.Error(), "shared lock") {
		t.Fatalf("gc's open while two writers have the repository open: %v, want ErrLocked naming their locks", err)
	}
	wa.Close()
	wb.Close()

	// Each host sees the other's points after it opens.
	want := map[string][][]byte{rpA.Name(): {a}, rpB1.Name(): {a}, rpA2.Name(): {b}, rpB2.Name(): {c}}
	ra := hostA.open(t, engine.OpenOptions{})
	checkRestorePoints(t, ra, want)
	ra.Close()

	// B reads the points, so its cache locates their chunks. A stores a
	// point sharing two chunks in three with rpA2, forgets rpA2 and
	// collects garbage: every pack of rpA2 is mixed, so gc moves chunks
	// B's cache still locates in the packs it removes.
	rb := hostB.open(t, engine.OpenOptions{})
	checkRestorePoints(t, rb, want)
	rb.Close()
	y := everyThirdChunk(b, 14)
	wa = hostA.open(t, engine.OpenOptions{Writable: true, Exclusive: true})
	rpY, err := enginetest.ImportFiles(ctx, wa, "vm-a", t0.Add(2*time.Hour), writeTemp(t, y))
	if err != nil {
		t.Fatal(err)
	}
	want[rpY.Name()] = [][]byte{y}
	if err := wa.Forget(ctx, []*engine.RestorePoint{rpA2}); err != nil {
		t.Fatal(err)
	}
	gc, err := wa.GC(ctx, engine.GCOptions{MaxUnused: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	if gc.PacksRewritten == 0 {
		t.Fatalf("gc %+v: want packs rewritten", gc)
	}
	wa.Close()
	delete(want, rpA2.Name())
	rb = hostB.open(t, engine.OpenOptions{})
	checkRestorePoints(t, rb, want)
	v, err := rb.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !v.OK() {
		t.Fatalf("verify on host B after host A's gc: %+v %v", v, err)
	}
	rb.Close()

	// The cache can go at any time.
	if err := os.RemoveAll(hostB.cache); err != nil {
		t.Fatal(err)
	}
	rb = hostB.open(t, engine.OpenOptions{})
	checkRestorePoints(t, rb, want)
	rb.Close()
}

// TestSharedReaderSeesNewPointsOnRefresh: a reader open on one host sees a
// point another host committed once it refreshes.
func TestSharedReaderSeesNewPointsOnRefresh(t *testing.T) {
	ctx := context.Background()
	srv := s3test.StartFake(t)
	hostA, hostB := sharedRepo(t, srv)
	rb := hostB.open(t, engine.OpenOptions{})
	defer rb.Close()
	wa := hostA.open(t, engine.OpenOptions{Writable: true})
	rp, err := enginetest.ImportFiles(ctx, wa, "vm", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), writeTemp(t, randomBytes(t, 1<<20, 1)))
	if err != nil {
		t.Fatal(err)
	}
	wa.Close()
	restore := engine.SetRemoteRefreshEvery(0)
	defer restore()
	changed, err := rb.Refresh(ctx)
	if err != nil || !changed {
		t.Fatalf("refresh: %v, %v; want a change", changed, err)
	}
	rps, err := rb.ListRestorePoints(ctx, "")
	if err != nil || !slices.ContainsFunc(rps, func(p *engine.RestorePoint) bool { return p.ID == rp.ID }) {
		t.Fatalf("after refresh: %v, %v; want host A's point", rps, err)
	}
}
