package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestIndexPanicRecovered reproduces issue 13's panic: Pebble's default
// DataCorruption handler calls Logger.Fatalf, which panics, when a read
// meets a damaged table block. The reading methods must recover it into
// an *IndexDamageError that names the table, and leave r.mu free.
func TestIndexPanicRecovered(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := Init(ctx, dir, InitOptions{ChunkSize: 64 << 10, PageEntries: 16, PackSize: 1 << 20, ShardSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	w, err := Open(ctx, dir, OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	rpw, err := w.NewRestorePoint(ctx, RestorePointSpec{VM: "web01", Time: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	dw, err := rpw.AddDisk(DiskSpec{Index: 0, Size: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := dw.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	rp, err := rpw.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The next writer flushes the records into a table of its checkpoint.
	if w, err = Open(ctx, dir, OpenOptions{Writable: true}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	r, err := Open(ctx, dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ckpt := r.indexDir()
	ssts, _ := filepath.Glob(filepath.Join(ckpt, "*.sst"))
	var table string
	var size int64
	for _, p := range ssts {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			table, size = p, st.Size()
		}
	}
	if table == "" {
		t.Fatal("no table in the checkpoint")
	}
	// Damage the table's first data block, and open the checkpoint again
	// the way the engine did before: with Pebble's DataCorruption handler.
	b, _ := os.ReadFile(table)
	b[20] ^= 0x10
	if err := os.WriteFile(table, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o := pebbleOptions(r.log, true, 1<<20)
	o.EventListener.DataCorruption = nil
	o.EventListener.EnsureDefaults(o.Logger)
	db, err := pebble.Open(ckpt, o)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.db.Close()
	r.db = db
	r.mu.Unlock()

	for _, tc := range []struct {
		op string
		fn func() error
	}{
		{"ListVMs", func() error { _, err := r.ListVMs(ctx); return err }},
		{"ListRestorePoints", func() error { _, err := r.ListRestorePoints(ctx, ""); return err }},
		{"Resolve", func() error { _, err := r.Resolve(ctx, "web01"); return err }},
		{"RestorePointByID", func() error { _, err := r.RestorePointByID(ctx, rp.ID); return err }},
		{"ListState", func() error { _, err := r.ListState(ctx, ""); return err }},
		{"Stats", func() error { _, err := r.Stats(ctx); return err }},
		{"ReadAt", func() error {
			d, err := r.OpenDisk(ctx, rp, 0)
			if err != nil {
				return err
			}
			defer d.Close()
			_, err = d.ReadAt(make([]byte, 4096), 0)
			return err
		}},
		{"Verify", func() error {
			rep, err := r.Verify(ctx, VerifyOptions{})
			if err != nil {
				return err
			}
			return errors.New(strings.Join(rep.Problems, "\n")) // the problem must say it
		}},
	} {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%s panicked: %v", tc.op, p)
				}
			}()
			err = tc.fn()
		}()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		t.Logf("%s: %s", tc.op, msg)
		if !strings.Contains(msg, "index checkpoint "+table+" is damaged: Pebble panicked: ") || !strings.Contains(msg, "; run 'ahvfs repair index'") {
			t.Errorf("%s: %q, want it to say Pebble panicked on %s and to run 'ahvfs repair index'", tc.op, msg, table)
		}
		if tc.op != "Verify" && tc.op != "ReadAt" && (!errors.Is(err, ErrIndexDamaged) || !errors.Is(err, ErrCorrupt)) {
			t.Errorf("%s: %v is not ErrIndexDamaged and ErrCorrupt", tc.op, err)
		}
		if !r.mu.TryLock() {
			t.Fatalf("%s left the index locked", tc.op)
		}
		r.mu.Unlock()
	}

	// A panic that does not come from Pebble is a bug: it is not hidden.
	func() {
		defer func() {
			if p := recover(); p != "a bug" {
				t.Errorf("recovered %v, want the engine's own panic re-raised", p)
			}
		}()
		func() (err error) {
			defer r.guardIndex(&err, "test")
			panic("a bug")
		}()
	}()
}
