package engine

import (
	"context"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCheckWholePack: the shard sums AdoptPack derives from its blobs'
// CRCs are the pack's (a pack passes), and a wrong sum of a shard holding
// only blobs, a wrong sum of a table shard or a damaged blob is ErrCorrupt.
func TestCheckWholePack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Small shards: every blob (up to 64 KiB) spans several.
	if _, err := Init(ctx, dir, InitOptions{ChunkSize: 64 << 10, ShardSize: 4 << 10}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, dir, OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.NewRestorePoint(ctx, RestorePointSpec{VM: "vm", Time: time.Unix(1e9, 0), Level: LevelImport})
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.AddDisk(DiskSpec{Size: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2<<20)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rnd.IntN(20)) // compressible in part: blobs of odd sizes
	}
	if err := d.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	if len(files) == 0 {
		t.Fatal("no pack files")
	}
	pack, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.checkWholePack(ctx, pack)
	if err != nil {
		t.Fatalf("an intact pack: %v", err)
	}
	ss := uint64(f.ShardSize)
	spanning := 0
	for _, e := range f.Entries {
		if got := crc32.Checksum(pack[e.Offset:e.Offset+uint64(e.Stored)], crcTable); e.CRC != got {
			t.Fatalf("blob %s: CRC %08x, want %08x", e.ID.Short(), e.CRC, got)
		}
		if e.Offset/ss != (e.Offset+uint64(e.Stored)-1)/ss {
			spanning++
		}
	}
	firstTable := int(f.TableOff / ss)
	if spanning == 0 || firstTable < 2 {
		t.Fatalf("%d blobs span shards, %d shards hold only blobs: the test shows nothing", spanning, firstTable)
	}
	resealed := func(change func(sums []uint32)) []byte {
		sums := slices.Clone(f.ShardSums)
		change(sums)
		return packWithSums(pack[:f.DataLen], f.TableOff, int(ss), int(f.K), int(f.M), sums)
	}
	for _, c := range []struct {
		name, want string
		pack       []byte
	}{
		{"the pack as it is, resealed", "", resealed(func([]uint32) {})},
		{"a wrong sum of a blob shard", "1 shards fail their sums", resealed(func(s []uint32) { s[firstTable/2] ^= 1 })},
		{"a wrong sum of a table shard", "holds part of the blob table", resealed(func(s []uint32) { s[len(s)-1] ^= 1 })},
		{"a damaged blob", "blob " + f.Entries[1].ID.Short(), func() []byte {
			b := slices.Clone(pack)
			b[f.Entries[1].Offset+3] ^= 0x40
			return b
		}()},
	} {
		_, err := r.checkWholePack(ctx, c.pack)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want ErrCorrupt with %q", c.name, err, c.want)
		}
	}
}
