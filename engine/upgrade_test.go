package engine_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// fixtureImage regenerates a disk image of testdata/format1 (see its
// README.md): 4 KiB blocks, a quarter of them zero, the rest from PCG(seed, 7).
func fixtureImage(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, size)
	for i := 0; i < size; i += 4096 {
		if r.IntN(4) == 0 {
			continue
		}
		for j := i; j < i+4096 && j < size; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
	}
	return b
}

// fixtureWant is what testdata/format1 holds.
func fixtureWant() map[string][][]byte {
	a := fixtureImage(1, 1376256)
	changed := append([]byte(nil), a...)
	copy(changed[0:70000], fixtureImage(9, 70000))
	copy(changed[600000:700000], fixtureImage(10, 100000))
	// The incremental wrote every third 64 KiB chunk from the changed
	// image and took the others unchanged from the full.
	a2 := append([]byte(nil), a...)
	for off := 0; off < len(a2); off += 3 << 16 {
		copy(a2[off:min(off+1<<16, len(a2))], changed[off:])
	}
	return map[string][][]byte{
		"web01@2026-11-30T01:00:00Z":   {a},
		"web01@2026-11-30T02:00:00Z":   {a2},
		"db/02@x@2026-11-30T03:00:00Z": {fixtureImage(3, 1<<20), fixtureImage(4, 300000)},
	}
}

// TestFormat1Upgrade opens repositories written by ahvfs before record
// files (format 1, index version 2; plain and encrypted): a reader reads
// them as they are; the first writer writes a record file per restore
// point, seals the catalog of the encrypted one, and records format 2;
// everything reads back byte-exact, the encrypted one holds no plaintext
// name, UUID or configuration word any more, and after deleting index/ and
// snapshots/ RepairIndex brings every restore point back.
func TestFormat1Upgrade(t *testing.T) {
	ctx := context.Background()
	want := fixtureWant()
	for _, variant := range []string{"plain", "encrypted"} {
		t.Run(variant, func(t *testing.T) {
			var pw []byte
			if variant == "encrypted" {
				pw = []byte("fixture-password")
			}
			dir := filepath.Join(t.TempDir(), "repo")
			if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "format1", variant))); err != nil {
				t.Fatal(err)
			}
			r := enginetest.Open(t, dir, engine.OpenOptions{Password: pw})
			rps := checkRestorePoints(t, r, want)
			r.Close()
			if variant == "plain" {
				if len(rps[2].Config) == 0 || rps[2].Parent != rps[1].ID || rps[2].Level != engine.LevelIncremental || rps[0].Meta["source"] != "fixture" {
					t.Fatalf("format-1 records read wrong: %+v", rps)
				}
			}

			w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true, Password: pw})
			after := checkRestorePoints(t, w, want)
			w.Close()
			sameRestorePoints(t, after, rps)
			var cfg struct {
				Format int `json:"format"`
			}
			if err := json.Unmarshal(readFile(t, filepath.Join(dir, "config.json")), &cfg); err != nil || cfg.Format != engine.FormatVersion {
				t.Fatalf("config.json after the upgrade: format %d %v", cfg.Format, err)
			}
			recs, _ := filepath.Glob(filepath.Join(dir, "records", "rp", "*.rec"))
			if len(recs) != len(want) {
				t.Fatalf("%d record files after the upgrade, want %d", len(recs), len(want))
			}
			if pw != nil {
				assertNoPlaintext(t, dir, "web01", "db/02", "disk-uuid", "vm-uuid", "secretword", "fixture")
			}
			for _, sub := range []string{"index", "snapshots"} {
				os.RemoveAll(filepath.Join(dir, sub))
			}
			rep, err := engine.RepairIndex(ctx, dir, engine.OpenOptions{Password: pw}, engine.RepairOptions{ReadData: true})
			if err != nil || rep.RestorePoints != len(want) || len(rep.Problems) > 0 {
				t.Fatalf("repair index: %+v %v", rep, err)
			}
			r = enginetest.Open(t, dir, engine.OpenOptions{Password: pw})
			checkRestorePoints(t, r, want)
			v, err := r.Verify(ctx, engine.VerifyOptions{ReadData: true})
			if err != nil || !v.OK() {
				t.Fatalf("verify: %+v %v", v, err)
			}
			r.Close()
		})
	}
}

// TestFormat1WithoutIndexRefusesRepair: a format-1 repository keeps its
// restore-point records only in its index; with the index gone, repair
// says so instead of building an index without them.
func TestFormat1WithoutIndexRefusesRepair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "format1", "plain"))); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "index"))
	_, err := engine.RepairIndex(context.Background(), dir, engine.OpenOptions{}, engine.RepairOptions{})
	if err == nil || !strings.Contains(err.Error(), "only there") {
		t.Fatalf("repair of a format-1 repository without its index: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
}
