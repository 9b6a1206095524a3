package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/cockroachdb/pebble/v2"
)

func importOne(t *testing.T, dir string) (*engine.RestorePoint, []byte) {
	t.Helper()
	img := enginetest.Ext4Image(t, 64<<20, 1)
	want, _ := os.ReadFile(img)
	r, err := engine.Open(context.Background(), dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rp, err := enginetest.ImportFiles(context.Background(), r, "vm", time.Unix(1e9, 0), img)
	if err != nil {
		t.Fatal(err)
	}
	return rp, want
}

func TestNewerFormatRefused(t *testing.T) {
	dir := enginetest.Init(t, engine.InitOptions{})
	cfg := filepath.Join(dir, "config.json")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte(`"format": 2`), []byte(`"format": 99`), 1), 0o600)
	_, err := engine.Open(context.Background(), dir, engine.OpenOptions{})
	if !errors.Is(err, engine.ErrNewerFormat) || !strings.Contains(err.Error(), "upgrade ahvfs") {
		t.Fatalf("open of a newer format: %v", err)
	}
}

func TestWrongPassword(t *testing.T) {
	dir := enginetest.Init(t, engine.InitOptions{Password: []byte("right")})
	for _, pw := range [][]byte{nil, []byte("wrong")} {
		if _, err := engine.Open(context.Background(), dir, engine.OpenOptions{Password: pw}); !errors.Is(err, engine.ErrWrongPassword) {
			t.Fatalf("password %q: %v", pw, err)
		}
	}
	r := enginetest.Open(t, dir, engine.OpenOptions{Password: []byte("right")})
	if r.Config().Encryption == nil {
		t.Fatal("not encrypted")
	}
}

func TestTruncatedAndGarbagePacks(t *testing.T) {
	ctx := context.Background()
	for _, damage := range []string{"truncate", "garbage", "delete"} {
		t.Run(damage, func(t *testing.T) {
			dir := enginetest.Init(t, engine.InitOptions{ParityShards: 0, ParityData: 1})
			rp, want := importOne(t, dir)
			pack := dataPack(t, dir, rp)
			switch damage {
			case "truncate":
				os.Truncate(pack, 1000)
			case "garbage":
				st, _ := os.Stat(pack)
				os.WriteFile(pack, bytes.Repeat([]byte("garbage!"), int(st.Size()/8)), 0o600)
			case "delete":
				os.Remove(pack)
			}
			r := enginetest.Open(t, dir, engine.OpenOptions{})
			rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
			if err != nil {
				t.Fatalf("verify must report, not fail: %v", err)
			}
			if rep.OK() || len(rep.Affected) != 1 {
				t.Fatalf("verify: %+v", rep)
			}
			d, _ := r.OpenDisk(ctx, rp, 0)
			buf := make([]byte, r.ChunkSize())
			var bad, good int
			for off := int64(0); off < d.Size(); off += int64(len(buf)) {
				n, err := d.ReadAt(buf, off)
				if err != nil {
					bad++
					continue
				}
				if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
					t.Fatalf("wrong bytes at %d", off)
				}
				good++
			}
			if bad == 0 || good == 0 {
				t.Fatalf("bad %d good %d", bad, good)
			}
		})
	}
}

// dataPack is the largest pack that does not hold rp's manifest pages, so
// that damaging it leaves the rest of the disk readable. Which pack gets
// the pages depends on the order in which parallel workers stored chunks.
func dataPack(t *testing.T, dir string, rp *engine.RestorePoint) string {
	t.Helper()
	pages := pagePacks(t, dir, rp)
	for _, p := range packFiles(t, dir) {
		if !pages[p] {
			return p
		}
	}
	t.Fatal("every pack holds manifest pages")
	return ""
}

func TestGarbageIndexValue(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	rp, _ := importOne(t, dir)
	// Overwrite one chunk location and the restore point record with garbage.
	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	it, _ := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'c'}, UpperBound: []byte{'d'}})
	it.First()
	key := append([]byte(nil), it.Key()...)
	it.Close()
	db.Set(key, []byte("\x01garbage"), pebble.Sync)
	db.Close()
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true}) // publishes the damaged index to readers
	rep, err := r.Verify(ctx, engine.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatalf("verify missed a garbage index entry: %+v", rep)
	}
	d, _ := r.OpenDisk(ctx, rp, 0)
	_, err = d.ReadAt(make([]byte, d.Size()), 0)
	if !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("read over a garbage index entry: %v", err)
	}
	r.Close()

	db, _ = pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	it, _ = db.NewIter(&pebble.IterOptions{LowerBound: []byte{'r'}, UpperBound: []byte{'s'}})
	it.First()
	key = append([]byte(nil), it.Key()...)
	it.Close()
	db.Set(key, []byte(`{"v":1,"vm":`), pebble.Sync)
	db.Close()
	r2 := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	if _, err := r2.ListRestorePoints(ctx, ""); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("list over a garbage record: %v", err)
	}
}

// TestDiskFull fills a small tmpfs: the import fails with a clear error, the
// repository keeps what it had, and it accepts new data once there is room.
func TestDiskFull(t *testing.T) {
	testenv.Root(t)
	ctx := context.Background()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.RequireOrSkip(t, false, "mount tmpfs: "+string(out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "repo")
	if _, err := engine.Init(ctx, dir, engine.InitOptions{PackSize: 4 << 20, ShardSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(t.TempDir(), "small.raw")
	img := enginetest.Ext4Image(t, 64<<20, 1)
	b, _ := os.ReadFile(img)
	os.WriteFile(small, b[:8<<20], 0o644)
	r, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := enginetest.ImportFiles(ctx, r, "small", time.Unix(1e9, 0), small)
	if err != nil {
		t.Fatalf("small import: %v", err)
	}
	big := enginetest.Ext4Image(t, 160<<20, 3)
	_, err = enginetest.ImportFiles(ctx, r, "big", time.Unix(2e9, 0), big)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("import into a full disk: %v", err)
	}
	r.Close()
	// Make room (as an admin would), then the repository is intact and usable.
	exec.Command("mount", "-o", "remount,size=400m", mnt).Run()
	r, err = engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatalf("reopen after ENOSPC: %v", err)
	}
	defer r.Close()
	rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after ENOSPC: %v %+v", err, rep)
	}
	if got := readAll(t, r, first, 0); !bytes.Equal(got, b[:8<<20]) {
		t.Fatal("restore point from before ENOSPC differs")
	}
	if _, err := enginetest.ImportFiles(ctx, r, "big", time.Unix(2e9, 0), big); err != nil {
		t.Fatalf("import after making room: %v", err)
	}
}

// TestReadChecksCRCThenHash damages a stored (uncompressed, so still
// decodable) chunk of a pack without its parity sidecar: reads catch it with the CRC-32C the index records, and
// with the BLAKE3 ID for a location written before index version 2. A
// version-1 index is upgraded when a writer opens it.
func TestReadChecksCRCThenHash(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{Compression: engine.CompressNone})
	rp, _ := importOne(t, dir)

	// The first data chunk's location (version 2, with a CRC).
	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	it, _ := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'c'}, UpperBound: []byte{'d'}})
	var key, val []byte
	for it.First(); it.Valid(); it.Next() {
		if v := it.Value(); len(v) == 38 && v[0] == 2 && v[33]&0x10 == 0 {
			key, val = append([]byte(nil), it.Key()...), append([]byte(nil), v...)
			break
		}
	}
	it.Close()
	if key == nil {
		db.Close()
		t.Fatal("no version-2 data chunk location in the index")
	}
	db.Close()
	var id engine.ID
	copy(id[:], key[1:])
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	pack, err := engine.PackOf(r, id)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(binary.LittleEndian.Uint64(val[17:])) + 100
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x5a
	f.WriteAt(b, off)
	f.Close()
	// Without its sidecar, parity cannot rebuild the chunk in memory.
	os.Remove(strings.TrimSuffix(pack, ".pack") + ".par")

	readErr := func() error {
		t.Helper()
		r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true}) // publishes the index to readers
		defer r.Close()
		d, err := r.OpenDisk(ctx, rp, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, err = d.ReadAt(make([]byte, d.Size()), 0)
		return err
	}
	if err := readErr(); !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), "CRC-32C") {
		t.Fatalf("read of a damaged chunk: %v, want ErrCorrupt from the CRC", err)
	}

	// The same location as version 1 wrote it, in a version-1 index.
	db, err = pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := append([]byte{1}, val[1:34]...)
	db.Set(key, v1, pebble.Sync)
	db.Set([]byte{'f'}, []byte{1}, pebble.Sync)
	db.Close()
	if err := readErr(); !errors.Is(err, engine.ErrCorrupt) || !strings.Contains(err.Error(), "content hashes to") {
		t.Fatalf("read of a damaged chunk with a version-1 location: %v, want ErrCorrupt from the hash", err)
	}
	db, err = pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, closer, err := db.Get([]byte{'f'}); err != nil || !bytes.Equal(v, []byte{3}) {
		t.Fatalf("index format after a writer opened a version-1 index: %v %v, want 3", v, err)
	} else {
		closer.Close()
	}
}
