package dr

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

var testPassword = []byte("correct horse battery staple")

// pair makes a source repository holding points and an empty target that
// shares its parameters (and keys, when encrypted).
func pair(t *testing.T, encrypted bool) (src, dst string) {
	t.Helper()
	o := engine.InitOptions{}
	if encrypted {
		o.Password = testPassword
	}
	src = enginetest.Init(t, o)
	r := enginetest.Open(t, src, engine.OpenOptions{Writable: true, Password: o.Password})
	o.CopyFrom = r
	if encrypted {
		o.Password = []byte("another password for the DR copy")
	}
	dst = enginetest.Init(t, o)
	r.Close()
	return src, dst
}

func openW(t *testing.T, dir string, pw []byte) *engine.Repository {
	return enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Password: pw})
}

// sameContent reads every disk of every point of a from both repositories
// and compares them byte for byte, with the points' records.
func sameContent(t *testing.T, a, b *engine.Repository, names ...string) {
	t.Helper()
	sameData(t, a, b, true, names...)
}

// sameData compares the points' disks byte for byte and their records
// (their IDs too with sameID: a re-encoded point has another).
func sameData(t *testing.T, a, b *engine.Repository, sameID bool, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		pa, err := a.Resolve(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := b.Resolve(ctx, name)
		if err != nil {
			t.Fatalf("target: %v", err)
		}
		if (sameID && pa.ID != pb.ID) || pa.Level != pb.Level || pa.Consistency != pb.Consistency || !bytes.Equal(pa.Config, pb.Config) ||
			!pa.LockedUntil.Equal(pb.LockedUntil) || len(pa.Disks) != len(pb.Disks) {
			t.Fatalf("%s: records differ:\n%+v\n%+v", name, pa, pb)
		}
		for i := range pa.Disks {
			ra, err := a.OpenDisk(ctx, pa, pa.Disks[i].Index)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.OpenDisk(ctx, pb, pb.Disks[i].Index)
			if err != nil {
				t.Fatal(err)
			}
			da, _ := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
			db, _ := io.ReadAll(io.NewSectionReader(rb, 0, rb.Size()))
			ra.Close()
			rb.Close()
			if !bytes.Equal(da, db) {
				t.Fatalf("%s disk-%d differs on the target", name, pa.Disks[i].Index)
			}
		}
	}
}

func verifyData(t *testing.T, r *engine.Repository) {
	t.Helper()
	rep, err := r.Verify(context.Background(), engine.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verify --read-data on the target: %+v", rep)
	}
}

// overwrite changes n bytes of file at off.
func overwrite(t *testing.T, file string, off int64, n int, seed byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, byte(off >> 20)}).Read(b)
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestSyncLocalEncrypted(t *testing.T) {
	ctx := context.Background()
	srcDir, dstDir := pair(t, true)
	src := openW(t, srcDir, testPassword)
	disk := enginetest.DataDisk(t, 32<<20, 1)
	t0 := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	rp1, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "web01", Time: t0, Level: engine.LevelFull,
		Consistency: "app", Config: []byte(`{"version":1,"name":"web01"}`), LockUntil: time.Now().Add(48 * time.Hour)}, disk)
	if err != nil {
		t.Fatal(err)
	}
	dst := openW(t, dstDir, []byte("another password for the DR copy"))
	rep, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RestorePoints != 1 || rep.ChunksSent == 0 || rep.PagesSent == 0 {
		t.Fatalf("first sync: %+v", rep)
	}
	sameContent(t, src, dst, rp1.Name())

	// An incremental: the second sync sends about what it stored.
	overwrite(t, disk, 5<<20, 3<<20, 9)
	rp2, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "web01", Time: t0.Add(time.Hour), Level: engine.LevelIncremental}, disk)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RestorePoints != 1 || len(rep.AlreadyThere) != 1 {
		t.Fatalf("second sync: %+v", rep)
	}
	if limit := rp2.Stats.NewStoredBytes * 12 / 10; rep.BytesSent > limit || rep.BytesSent == 0 {
		t.Fatalf("second sync sent %d bytes; the incremental stored %d (limit 1.2x: %d)", rep.BytesSent, rp2.Stats.NewStoredBytes, limit)
	}
	t.Logf("incremental stored %d bytes, sync sent %d", rp2.Stats.NewStoredBytes, rep.BytesSent)
	sameContent(t, src, dst, rp1.Name(), rp2.Name())
	verifyData(t, dst)

	// Nothing left: a third sync sends nothing.
	rep, err = Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil || rep.RestorePoints != 0 || rep.BytesSent != 0 || len(rep.AlreadyThere) != 2 {
		t.Fatalf("third sync: %+v, %v", rep, err)
	}

	// An adopt whose reply was lost (a server killed after its commit) is
	// asked again: it succeeds and changes nothing. Another point of the
	// same VM and time is refused.
	if err := dst.AdoptRestorePoint(ctx, rp2); err != nil {
		t.Fatalf("adopt of a point held already: %v", err)
	}
	other := *rp2
	other.ID = rp1.ID
	if err := dst.AdoptRestorePoint(ctx, &other); !errors.Is(err, engine.ErrExists) {
		t.Fatalf("adopt of another point at %s: %v", rp2.Name(), err)
	}
	if pts, _ := dst.ListRestorePoints(ctx, "web01"); len(pts) != 2 {
		t.Fatalf("the target lists %d points after the adopts, want 2", len(pts))
	}
}

// Between repositories with other keys and another chunk size, points
// are re-encoded: the target stores them its own way, with the same names,
// levels, consistency, configuration and locks; a rerun finds them there.
// The same through a server, pushed and pulled; --resync-corrupt is
// refused.
func TestSyncReencodes(t *testing.T) {
	ctx := context.Background()
	src := openW(t, enginetest.Init(t, engine.InitOptions{Password: testPassword}), testPassword)
	otherPW := []byte("the DR site's own password")
	dstDir := enginetest.Init(t, engine.InitOptions{Password: otherPW, ChunkSize: 256 << 10})
	dst := openW(t, dstDir, otherPW)
	disk := enginetest.DataDisk(t, 16<<20, 8)
	t0 := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
	rp1, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "web01", Time: t0, Level: engine.LevelFull, Consistency: "app",
		Config: []byte(`{"name":"web01"}`), LockUntil: time.Now().Add(24 * time.Hour)}, disk)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, disk, 3<<20, 2<<20, 4)
	rp2, err := enginetest.Import(ctx, src, engine.RestorePointSpec{VM: "web01", Time: t0.Add(time.Hour), Level: engine.LevelIncremental}, disk)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RestorePoints != 2 || rep.ChunksSent == 0 || rep.PacksSent != 0 {
		t.Fatalf("re-encoding sync: %+v", rep)
	}
	sameData(t, src, dst, false, rp1.Name(), rp2.Name())
	verifyData(t, dst)

	rep, err = Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil || rep.RestorePoints != 0 || len(rep.AlreadyThere) != 2 || len(rep.Conflicts) != 0 {
		t.Fatalf("a second re-encoding sync: %+v, %v", rep, err)
	}
	if _, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{ResyncCorrupt: true}); err == nil {
		t.Fatal("--resync-corrupt between repositories with other keys was accepted")
	}

	// Through a server, both ways: pushed into a server whose repository
	// has other keys and chunks (append-only: re-encoding only adds
	// points), then pulled from it into a third repository with other
	// keys and chunks again.
	srvDir := enginetest.Init(t, engine.InitOptions{ChunkSize: 128 << 10})
	srv := startServer(t, srvDir, nil, true)
	remote := dial(t, srv.url, srv.client)
	rep, err = Sync(ctx, &Local{R: src}, remote, Options{})
	if err != nil || rep.RestorePoints != 2 || rep.BytesSent == 0 {
		t.Fatalf("re-encoding push to a server: %+v, %v", rep, err)
	}
	rep, err = Sync(ctx, &Local{R: src}, remote, Options{})
	if err != nil || rep.RestorePoints != 0 || len(rep.AlreadyThere) != 2 {
		t.Fatalf("a second re-encoding push: %+v, %v", rep, err)
	}
	thirdPW := []byte("a third password")
	third := openW(t, enginetest.Init(t, engine.InitOptions{Password: thirdPW, ChunkSize: 512 << 10}), thirdPW)
	rep, err = Sync(ctx, remote, &Local{R: third}, Options{})
	if err != nil || rep.RestorePoints != 2 {
		t.Fatalf("re-encoding pull from a server: %+v, %v", rep, err)
	}
	sameData(t, src, third, false, rp1.Name(), rp2.Name())
	verifyData(t, third)

	// An import cut short leaves nothing on the server.
	ps, err := (&Local{R: src}).Points(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := headerOf(ps[0])
	h.Spec.Time = h.Spec.Time.Add(-time.Hour)
	_, err = remote.Import(ctx, h, func(ctx context.Context, w plainWriter) error {
		if err := w.WriteAt(ctx, 0, make([]byte, 128<<10), 0); err != nil {
			return err
		}
		return errors.New("the source failed")
	})
	if err == nil || !strings.Contains(err.Error(), "the source failed") {
		t.Fatalf("a failing import: %v", err)
	}
	if ps, err := remote.Points(ctx); err != nil || len(ps) != 2 {
		t.Fatalf("the server lists %d points after a failed import (%v), want 2", len(ps), err)
	}
	srv.close()
	got := openW(t, srvDir, nil)
	sameData(t, src, got, false, rp1.Name(), rp2.Name())
	verifyData(t, got)
}
