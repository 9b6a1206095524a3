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

// packFiles lists the repository's pack files, largest first.
func packFiles(t *testing.T, dir string) []string { return enginetest.PackFiles(t, dir) }

func flip(t *testing.T, path string, offsets ...int64) {
	for _, off := range offsets {
		enginetest.XorAt(t, path, off, bytes.Repeat([]byte{0x5a}, 16))
	}
}

func TestBitRotRepair(t *testing.T) {
	ctx := context.Background()
	img := enginetest.Ext4Image(t, 64<<20, 1)
	want, _ := os.ReadFile(img)
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	rp, err := enginetest.ImportFiles(ctx, r, "db01", time.Unix(1e9, 0), img)
	if err != nil {
		t.Fatal(err)
	}
	pack := packFiles(t, dir)[0]
	// Two damaged places in different shards of one stripe: within 10+2.
	flip(t, pack, 1000, 200<<10)

	rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Damaged) != 1 || rep.Damaged[0].BadShards != 2 {
		t.Fatalf("verify --read-data after bit rot: %+v", rep)
	}
	if len(rep.Affected) != 1 || rep.Affected[0].Name != rp.Name() || rep.Affected[0].DamagedChunks == 0 {
		t.Fatalf("affected restore points: %+v", rep.Affected)
	}
	// A plain verify does not read data and so does not see it.
	if rep, _ := r.Verify(ctx, engine.VerifyOptions{}); !rep.OK() {
		t.Fatalf("structural verify should pass: %+v", rep)
	}

	rep, err = r.Verify(ctx, engine.VerifyOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 1 || !rep.Damaged[0].Repaired {
		t.Fatalf("repair: %+v", rep)
	}
	if rep, _ := r.Verify(ctx, engine.VerifyOptions{ReadData: true}); !rep.OK() {
		t.Fatalf("verify after repair: %+v", rep)
	}
	if got := readAll(t, r, rp, 0); !bytes.Equal(got, want) {
		t.Fatal("disk differs after repair")
	}
}

func TestDamageBeyondParity(t *testing.T) {
	ctx := context.Background()
	img := enginetest.Ext4Image(t, 64<<20, 1)
	want, _ := os.ReadFile(img)
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	rp, err := enginetest.ImportFiles(ctx, r, "db01", time.Unix(1e9, 0), img)
	if err != nil {
		t.Fatal(err)
	}
	pack := packFiles(t, dir)[0]
	// Three shards of the first stripe (64 KiB shards in tests): one more than parity.
	flip(t, pack, 10, 70<<10, 140<<10)
	rep, err := r.Verify(ctx, engine.VerifyOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Damaged) != 1 || rep.Damaged[0].Repaired || rep.Damaged[0].DamagedBlobs == 0 {
		t.Fatalf("damage beyond parity must be reported, not repaired: %+v", rep)
	}
	if len(rep.Affected) != 1 {
		t.Fatalf("affected: %+v", rep.Affected)
	}
	// Everything outside the damaged blobs stays readable and correct.
	d, err := r.OpenDisk(ctx, rp, 0)
	if err != nil {
		t.Fatal(err)
	}
	cs := int64(r.ChunkSize())
	var good, bad int
	buf := make([]byte, cs)
	for off := int64(0); off < d.Size(); off += cs {
		n, err := d.ReadAt(buf, off)
		if err != nil {
			if !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), rp.Name()) {
				t.Fatalf("read at %d: want ErrCorrupt naming the restore point, got %v", off, err)
			}
			bad++
			continue
		}
		if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Fatalf("chunk at %d reads back wrong bytes", off)
		}
		good++
	}
	if bad == 0 || good == 0 {
		t.Fatalf("good %d, bad %d chunks: want both", good, bad)
	}
}

func TestDamagedParityAndFooterRepaired(t *testing.T) {
	ctx := context.Background()
	img := enginetest.Ext4Image(t, 64<<20, 1)
	dir := enginetest.Init(t, engine.InitOptions{})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(ctx, r, "db01", time.Unix(1e9, 0), img); err != nil {
		t.Fatal(err)
	}
	pack := packFiles(t, dir)[0]
	st, _ := os.Stat(pack)
	flip(t, pack, st.Size()-40) // the trailer
	flip(t, strings.TrimSuffix(pack, ".pack")+".par", 100<<10)
	rep, err := r.Verify(ctx, engine.VerifyOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || !rep.Damaged[0].Repaired {
		t.Fatalf("repair of footer and parity: %+v", rep)
	}
	if rep, _ := r.Verify(ctx, engine.VerifyOptions{ReadData: true}); !rep.OK() {
		t.Fatalf("verify after repair: %+v", rep)
	}
}

// TestVerifyShare: verify --read-data in parts reads each pack in exactly
// one part, and the damage of a pack shows in the part that reads it.
func TestVerifyShare(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{PackSize: 4 << 20})
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	for i := range 4 {
		img := enginetest.DataDisk(t, 8<<20, uint64(i+1))
		if _, err := enginetest.ImportFiles(ctx, r, "db01", time.Unix(1e9+int64(i), 0), img); err != nil {
			t.Fatal(err)
		}
	}
	packs := packFiles(t, dir)
	if len(packs) < 2 {
		t.Fatalf("%d packs: the test needs several", len(packs))
	}
	const parts = 3
	read, damaged := 0, 0
	flip(t, packs[0], 100)
	for part := range parts {
		rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true, Part: part, Parts: parts})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Packs != len(packs) {
			t.Fatalf("part %d checked %d packs, want all %d (structure)", part, rep.Packs, len(packs))
		}
		read += rep.DataPacks
		if len(rep.Damaged) > 0 {
			damaged++
		}
	}
	if read != len(packs) || damaged != 1 {
		t.Fatalf("the parts read %d packs in full (want %d) and %d found the damage (want 1)", read, len(packs), damaged)
	}
	if _, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true, Part: 3, Parts: parts}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("part 3 of 3: %v", err)
	}
}
