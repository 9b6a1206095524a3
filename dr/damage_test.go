package dr

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// flip inverts the byte at off of file.
func flip(t *testing.T, file string, off int64) { enginetest.XorAt(t, file, off, []byte{0xff}) }

// importOne imports a 24 MiB data disk as web01's point at t0.
func importOne(t *testing.T, r *engine.Repository, t0 time.Time) *engine.RestorePoint {
	t.Helper()
	rp, err := enginetest.Import(context.Background(), r, engine.RestorePointSpec{VM: "web01", Time: t0, Level: engine.LevelFull},
		enginetest.DataDisk(t, 24<<20, 5))
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// A whole pack moves as a file; one whose bytes the source holds damaged
// is refused by the target and goes blob by blob, the damaged blob rebuilt
// from the source's parity; damage beyond parity is reported and leaves
// nothing half-visible on the target.
func TestSyncDamagedSource(t *testing.T) {
	ctx := context.Background()
	srcDir, dstDir := pair(t, false)
	src := openW(t, srcDir, nil)
	rp := importOne(t, src, time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC))
	src.Close()
	packs := enginetest.PackFiles(t, srcDir)
	flip(t, packs[0], 100) // in the first blob: one data shard

	src = enginetest.Open(t, srcDir, engine.OpenOptions{})
	dst := openW(t, dstDir, nil)
	rep, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RestorePoints != 1 || rep.PacksSent == 0 || rep.PacksSent >= int64(len(packs)) {
		t.Fatalf("sync: %+v; want the intact packs whole (%d packs), the damaged one blob by blob", rep, len(packs))
	}
	t.Logf("%d packs: %d moved whole, %d chunks and %d pages in all", len(packs), rep.PacksSent, rep.ChunksSent, rep.PagesSent)
	sameContent(t, src, dst, rp.Name())
	verifyData(t, dst)

	// Beyond parity: parity+1 data shards of the first pack's first stripe
	// damaged.
	src2Dir, dst2Dir := pair(t, false)
	src2 := openW(t, src2Dir, nil)
	rp2 := importOne(t, src2, time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC))
	src2.Close()
	cfg := src2.Config()
	pack := enginetest.PackFiles(t, src2Dir)[0]
	for s := range cfg.Parity.Parity + 1 {
		flip(t, pack, int64(s*cfg.Parity.ShardSize)+7)
	}
	src2 = enginetest.Open(t, src2Dir, engine.OpenOptions{})
	dst2 := openW(t, dst2Dir, nil)
	_, err = Sync(ctx, &Local{R: src2}, &Local{R: dst2}, Options{})
	if !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("sync from a source damaged beyond parity: %v", err)
	}
	if _, err := dst2.Resolve(ctx, rp2.Name()); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the target shows a point it could not get whole: %v", err)
	}
	verifyData(t, dst2)
}

// A blob the target holds damaged is found by --resync-corrupt and sent
// again; the target then reads the point back exactly.
func TestSyncResyncCorrupt(t *testing.T) {
	ctx := context.Background()
	srcDir, dstDir := pair(t, false)
	src := openW(t, srcDir, nil)
	rp := importOne(t, src, time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC))
	dst := openW(t, dstDir, nil)
	if _, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{}); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	flip(t, enginetest.PackFiles(t, dstDir)[0], 100)
	dst = openW(t, dstDir, nil)

	rep, err := Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{})
	if err != nil || rep.Resent != 0 || len(rep.AlreadyThere) != 1 {
		t.Fatalf("a sync without --resync-corrupt: %+v, %v", rep, err)
	}
	rep, err = Sync(ctx, &Local{R: src}, &Local{R: dst}, Options{ResyncCorrupt: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Resent != 1 {
		t.Fatalf("--resync-corrupt resent %d blobs, want the damaged one: %+v", rep.Resent, rep)
	}
	sameContent(t, src, dst, rp.Name())
	rv, err := dst.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || len(rv.Affected) > 0 {
		t.Fatalf("verify --read-data after the resync: %+v, %v", rv, err)
	}
	t.Logf("verify after the resync: %+v", rv)
}
