package engine_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
)

// repoFiles lists the files under dir/sub, relative to dir, sorted.
func repoFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// packID is the pack ID (16 bytes) of a pack or sidecar path.
func packID(t *testing.T, path string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".pack"), ".par"))
	if err != nil || len(b) != 16 {
		t.Fatalf("not a pack: %s", path)
	}
	return b
}

// pagePacks is the set of packs that hold rp's manifest pages: they are
// sealed last, when rp commits.
func pagePacks(t *testing.T, dir string, rp *engine.RestorePoint) map[string]bool {
	t.Helper()
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	defer r.Close()
	out := map[string]bool{}
	for _, d := range rp.Disks {
		for _, pid := range d.Pages {
			if pid.IsZero() {
				continue
			}
			p, err := engine.PackOf(r, pid)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = true
		}
	}
	return out
}

// forgetPacks deletes the `k` record of each pack and the `c` entry of
// every blob the index places in it, directly in the closed repository's
// index: what an index that lost its newest records looks like.
func forgetPacks(t *testing.T, dir string, packs []string) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ids := map[string]bool{}
	b := db.NewBatch()
	for _, p := range packs {
		id := packID(t, p)
		ids[string(id)] = true
		if _, c, err := db.Get(append([]byte{'k'}, id...)); err != nil {
			t.Fatalf("pack %s has no k record before the test: %v", p, err)
		} else {
			c.Close()
		}
		b.Delete(append([]byte{'k'}, id...), nil)
	}
	it, _ := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'c'}, UpperBound: []byte{'d'}})
	n := 0
	for it.First(); it.Valid(); it.Next() {
		// A location is version(1) pack ID(16) ... (docs/FORMAT.md).
		if v := it.Value(); len(v) > 17 && ids[string(v[1:17])] {
			b.Delete(append([]byte(nil), it.Key()...), nil)
			n++
		}
	}
	it.Close()
	if n == 0 {
		t.Fatal("no chunk locations in the packs to forget")
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestLostIndexTailReindexed is the repro: the index loses the pack
// records and chunk locations of the last packs of a committed restore
// point. The next writer must index those packs again, not delete them, and
// the restore point must read back exactly.
func TestLostIndexTailReindexed(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	rp, want := importOne(t, dir)
	before := repoFiles(t, dir, "packs")
	lost := []string{dataPack(t, dir, rp)}
	for p := range pagePacks(t, dir, rp) {
		lost = append(lost, p)
	}
	forgetPacks(t, dir, lost)

	var log enginetest.LogBuffer
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Logger: log.Logger()})
	if after := repoFiles(t, dir, "packs"); !slices.Equal(after, before) {
		t.Fatalf("pack files changed when the writer opened:\nbefore %v\nafter  %v", before, after)
	}
	for _, p := range lost {
		msg := "re-indexed pack " + hex.EncodeToString(packID(t, p)) + " left unindexed"
		if !strings.Contains(log.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, log.String())
		}
	}
	if q := repoFiles(t, dir, "quarantine"); len(q) > 0 {
		t.Fatalf("intact packs quarantined: %v", q)
	}
	rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Packs != len(packFiles(t, dir)) {
		t.Fatalf("verify after re-indexing (%d pack files): %+v", len(packFiles(t, dir)), rep)
	}
	if got := readAll(t, r, rp, 0); !bytes.Equal(got, want) {
		t.Fatal("restore point reads back wrong bytes after re-indexing")
	}
	r.Close()
	// Readers see the re-indexed packs too (the writer published them).
	rd := enginetest.Open(t, dir, engine.OpenOptions{})
	if got := readAll(t, rd, rp, 0); !bytes.Equal(got, want) {
		t.Fatal("a reader reads back wrong bytes after re-indexing")
	}
}

// newestWAL returns the path and log number of the index's newest WAL.
func newestWAL(t *testing.T, dir string) (string, uint64) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "index", "*.log"))
	var path string
	var num uint64
	for _, l := range logs {
		n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(l), ".log"), 10, 64)
		if err == nil && n >= num {
			path, num = l, n
		}
	}
	if path == "" {
		t.Fatal("the index has no WAL")
	}
	return path, num
}

// newWALReader calls record.NewReader, whose log number parameter has a
// type internal to Pebble: inference names it.
func newWALReader[N ~uint64](newReader func(io.Reader, N) *record.Reader, r io.Reader, num uint64) *record.Reader {
	return newReader(r, N(num))
}

// walRecord is one record of a WAL: its byte range and payload.
type walRecord struct {
	start, end int64
	payload    []byte
}

// walRecords reads every record of a Pebble WAL up to the first it cannot.
func walRecords(t *testing.T, path string, num uint64) []walRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rr := newWALReader(record.NewReader, f, num)
	var out []walRecord
	for {
		s := rr.Offset()
		rec, err := rr.Next()
		if err != nil {
			break
		}
		b, err := io.ReadAll(rec)
		if err != nil {
			break
		}
		out = append(out, walRecord{s, rr.Offset(), b})
	}
	if len(out) == 0 {
		t.Fatalf("no records in %s", path)
	}
	return out
}

// lastWALRecord returns the byte range [start, end) and the payload of the
// last record of a WAL.
func lastWALRecord(t *testing.T, path string, num uint64) (int64, int64, []byte) {
	t.Helper()
	recs := walRecords(t, path, num)
	last := recs[len(recs)-1]
	return last.start, last.end, last.payload
}

// TestWALBitFlipKeepsPacks flips a bit in the last record of the index's
// write-ahead log, a pack's index batch: Pebble stops replaying there and the
// pack loses its records. The next writer must keep every pack file and
// index the lost pack again, so its chunks are found and read back.
func TestWALBitFlipKeepsPacks(t *testing.T) {
	ctx := context.Background()
	dir := enginetest.Init(t, engine.InitOptions{})
	rp, want := importOne(t, dir)

	// Store 12 MiB of new data in a restore point that is never committed:
	// closing the repository seals the last pack, so its index batch is the
	// last record in the WAL.
	data := make([]byte, 12<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	w, err := r.NewRestorePoint(ctx, engine.RestorePointSpec{VM: "other", Time: time.Unix(2e9, 0), Level: engine.LevelImport})
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.AddDisk(engine.DiskSpec{Index: 0, Size: int64(len(data)), Bus: "scsi"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	before := repoFiles(t, dir, "packs")

	wal, num := newestWAL(t, dir)
	start, end, rec := lastWALRecord(t, wal, num)
	var lostPack string
	for _, p := range packFiles(t, dir) {
		if bytes.Contains(rec, append([]byte{'k'}, packID(t, p)...)) {
			lostPack = hex.EncodeToString(packID(t, p))
		}
	}
	if lostPack == "" {
		t.Fatalf("the last WAL record (%d bytes at %d) is not a pack's index batch", len(rec), start)
	}
	flipBit(t, wal, (start+end)/2)

	var log enginetest.LogBuffer
	r = enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Logger: log.Logger()})
	if after := repoFiles(t, dir, "packs"); !slices.Equal(after, before) {
		t.Fatalf("pack files changed when the writer opened:\nbefore %v\nafter  %v", before, after)
	}
	if msg := "re-indexed pack " + lostPack + " left unindexed"; !strings.Contains(log.String(), msg) {
		t.Fatalf("the bit flip did not lose pack %s, or it was not re-indexed: log:\n%s", lostPack, log.String())
	}
	rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Packs != len(packFiles(t, dir)) {
		t.Fatalf("verify after re-indexing: %+v", rep)
	}
	if got := readAll(t, r, rp, 0); !bytes.Equal(got, want) {
		t.Fatal("the committed restore point reads back wrong bytes")
	}
	// The same data again finds every chunk in the index (the lost pack's
	// through its new locations): only its manifest page is new, and it
	// reads back exactly.
	again, err := enginetest.Import(ctx, r, engine.RestorePointSpec{VM: "other", Time: time.Unix(2e9, 0), Level: engine.LevelImport}, writeTemp(t, data))
	if err != nil {
		t.Fatal(err)
	}
	if n := again.Stats.NewChunks; n != 1 {
		t.Fatalf("re-import stored %d new blobs, want 1 (its page): the re-indexed chunks were not found", n)
	}
	if got := readAll(t, r, again, 0); !bytes.Equal(got, data) {
		t.Fatal("chunks of the re-indexed pack read back wrong bytes")
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// flipBit flips the lowest bit of the byte at off.
func flipBit(t *testing.T, path string, off int64) { enginetest.XorAt(t, path, off, []byte{1}) }

// TestUnreadableOrphanQuarantined damages packs that have no index record:
// one whose sidecar can rebuild it is repaired and indexed; one whose seal
// was interrupted between renaming its sidecar and itself is finished from
// tmp/ and indexed; one beyond repair and a sidecar without its pack are
// moved to quarantine/, never deleted; the writer opens and verify lists
// what it set aside.
func TestUnreadableOrphanQuarantined(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		damage     func(t *testing.T, pack string)
		quarantine bool
	}{
		{"truncated trailer, rebuilt from parity", func(t *testing.T, pack string) {
			st, _ := os.Stat(pack)
			os.Truncate(pack, st.Size()-10)
		}, false},
		{"seal interrupted between its renames", func(t *testing.T, pack string) {
			tmp := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(pack))), "tmp", filepath.Base(pack))
			if err := os.Rename(pack, tmp); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncated to half", func(t *testing.T, pack string) {
			st, _ := os.Stat(pack)
			os.Truncate(pack, st.Size()/2)
		}, true},
		{"sidecar without its pack", func(t *testing.T, pack string) {
			os.Remove(pack)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := enginetest.Init(t, engine.InitOptions{})
			rp, want := importOne(t, dir)
			pack := dataPack(t, dir, rp)
			par := strings.TrimSuffix(pack, ".pack") + ".par"
			forgetPacks(t, dir, []string{pack})
			tc.damage(t, pack)
			packBytes, _ := os.ReadFile(pack)
			parBytes, _ := os.ReadFile(par)

			var log enginetest.LogBuffer
			r := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Logger: log.Logger()})
			q := filepath.Join(dir, "quarantine")
			rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.quarantine {
				if files := repoFiles(t, dir, "quarantine"); len(files) > 0 {
					t.Fatalf("quarantined: %v", files)
				}
				if !rep.OK() {
					t.Fatalf("verify after the repair: %+v", rep)
				}
				if _, err := os.Stat(pack); err != nil {
					t.Fatalf("the pack is not back in packs/: %v", err)
				}
				if got := readAll(t, r, rp, 0); !bytes.Equal(got, want) {
					t.Fatal("restore point reads back wrong bytes")
				}
				return
			}
			if _, err := os.Stat(pack); err == nil {
				t.Fatal("the damaged pack is still in packs/")
			}
			if _, err := os.Stat(par); err == nil {
				t.Fatal("its sidecar is still in packs/")
			}
			if packBytes != nil {
				if got, err := os.ReadFile(filepath.Join(q, filepath.Base(pack))); err != nil || !bytes.Equal(got, packBytes) {
					t.Fatalf("the pack is not in quarantine/ as it was: %v", err)
				}
			}
			if got, err := os.ReadFile(filepath.Join(q, filepath.Base(par))); err != nil || !bytes.Equal(got, parBytes) {
				t.Fatalf("the sidecar is not in quarantine/ as it was: %v", err)
			}
			if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "ahvfs verify") {
				t.Fatalf("no warning naming verify:\n%s", log.String())
			}
			if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "quarantine/"+filepath.Base(par)) {
				t.Fatalf("verify does not list the quarantined files: %+v", rep)
			}
		})
	}
}
