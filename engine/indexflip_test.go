package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// flipRepo is the repository TestIndexBitFlipWalk damages, and what reading
// it must give.
type flipRepo struct {
	dir   string
	rps   map[string]*engine.RestorePoint // by name
	vms   map[string]int                  // restore points per VM
	disks map[string][][]byte             // by restore point name
	state map[string][]byte               // job state
	packs map[string][]byte               // files under packs/ → contents
	ckpt  string                          // the published checkpoint, relative to dir
}

// smallDisk writes a disk image of size bytes in 64 KiB chunks, each zero,
// random, or compressible but distinct (small packs, one index entry per
// chunk), and returns its path.
func smallDisk(t *testing.T, seed uint64, size int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, size)
	for c := 0; c < len(b); c += 64 << 10 {
		chunk := b[c : c+64<<10]
		switch rng.IntN(8) {
		case 0: // zero
		case 1, 2, 3:
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
		default:
			for i := range chunk {
				chunk[i] = byte(i/512) ^ byte(seed) ^ byte(c>>16)
			}
		}
	}
	p := filepath.Join(t.TempDir(), fmt.Sprintf("disk-%d.raw", seed))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// makeFlipRepo builds the repository: web01@T0 (three disks) and some job
// state committed by a first writer, whose records a second writer's open
// flushes into a table of several blocks (chunk locations, then the format
// record with the rest, then job state and VM records); then web01@T0+1h
// and db01@T0+1h (two disks) committed by the second writer, whose records
// stay in the write-ahead log of index/ and of the checkpoint it publishes
// on close.
func makeFlipRepo(t *testing.T) *flipRepo {
	t.Helper()
	ctx := context.Background()
	f := &flipRepo{
		dir: enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10, PageEntries: 16, PackSize: 1 << 20}),
		rps: map[string]*engine.RestorePoint{}, vms: map[string]int{}, disks: map[string][][]byte{},
		state: map[string][]byte{},
	}
	t0 := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	for _, writer := range [][]struct {
		vm    string
		at    time.Time
		size  int
		seeds []uint64
	}{
		{{"web01", t0, 2 << 20, []uint64{1, 5, 6}}},
		{{"web01", t0.Add(time.Hour), 1 << 20, []uint64{2}}, {"db01", t0.Add(time.Hour), 1 << 20, []uint64{3, 4}}},
	} {
		w, err := engine.Open(ctx, f.dir, engine.OpenOptions{Writable: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range writer {
			var files []string
			var contents [][]byte
			for _, seed := range s.seeds {
				p := smallDisk(t, seed, s.size)
				b, _ := os.ReadFile(p)
				files, contents = append(files, p), append(contents, b)
			}
			rp, err := enginetest.ImportFiles(ctx, w, s.vm, s.at, files...)
			if err != nil {
				t.Fatal(err)
			}
			f.rps[rp.Name()], f.disks[rp.Name()] = rp, contents
			f.vms[s.vm]++
		}
		for i := range 3 - len(f.state) {
			v := make([]byte, 3000) // random: Pebble compresses its blocks
			for j := range v {
				v[j] = byte(rand.Uint32())
			}
			k := fmt.Sprintf("pad/%d", i)
			if err := w.PutState(ctx, k, v); err != nil {
				t.Fatal(err)
			}
			f.state[k] = v
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := os.ReadFile(filepath.Join(f.dir, "snapshots", "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	f.ckpt = filepath.Join("snapshots", fmt.Sprintf("%016s", strings.TrimSpace(string(cur))))
	f.packs = readPacks(t, f.dir)
	return f
}

// copyRepo copies the repository in src to dst, but hard-links its pack
// files: checkPacks compares them with the originals kept in memory, so a
// change to one in place still shows, and they are most of the bytes.
func copyRepo(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o700)
		case strings.HasPrefix(rel, "packs"+string(filepath.Separator)):
			return os.Link(p, to)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
}

// readPacks returns the contents of every file under dir/packs.
func readPacks(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(filepath.Join(dir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// indexFiles lists the Pebble files of the checkpoint and of index/ that
// have bytes to flip, relative to f.dir.
func (f *flipRepo) indexFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{f.ckpt, "index"} {
		entries, err := os.ReadDir(filepath.Join(f.dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			n := e.Name()
			info, _ := e.Info()
			if info.Size() > 0 && (strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".log") ||
				strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "OPTIONS-")) {
				out = append(out, filepath.Join(sub, n))
			}
		}
	}
	return out
}

// flipOffsets samples offsets of a file of size bytes from every part of
// it: the first bytes (headers, the first block), one in each of strata
// parts across the file, the last 512 bytes (index, properties and
// metaindex blocks of a table) and the last 64 (a table's footer).
func flipOffsets(rng *rand.Rand, size, strata int64) []int64 {
	offs := []int64{0, 1, 7, size / 2, size - 1, size - 8}
	for i := range strata {
		lo, hi := size*i/strata, size*(i+1)/strata
		if hi > lo {
			offs = append(offs, lo+rng.Int64N(hi-lo))
		}
	}
	for range 2 {
		offs = append(offs, size-1-rng.Int64N(min(size, 64)))
		offs = append(offs, size-1-rng.Int64N(min(size, 512)))
	}
	var out []int64
	for _, o := range offs {
		if o >= 0 && o < size && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// expect is what a pass over a damaged repository may see instead of the
// right answer.
type expect int

const (
	exact    expect = iota // only the right answers
	damageOK               // or errors that name the damage
)

// flipStats counts outcomes by file kind, for the log.
type flipStats struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *flipStats) add(key string) {
	s.mu.Lock()
	s.n[key]++
	s.mu.Unlock()
}

// TestIndexBitFlipWalk flips one bit at a time at offsets across every file
// of the published checkpoint and of the live index/ (tables, manifests,
// OPTIONS, write-ahead logs) of a copy of one repository, and reads the
// copy with every reading method, then opens it for writing and reads it
// again. Nothing may panic; each operation returns the right answer or an
// error that errors.Is ErrIndexDamaged and ErrCorrupt and says to run
// 'ahvfs repair index' (Verify: a problem saying so, not an error); a flip
// loses no restore point silently: a checkpoint's logs are checked against
// the sums it was published with, and a writer whose write-ahead log lost
// its tail indexes again the record files and packs it no longer knows; the
// writer republishes a good checkpoint over a damaged one; and the pack
// files are never changed, moved or deleted.
func TestIndexBitFlipWalk(t *testing.T) {
	testenv.Short(t, "flips ~180 bits, one repository copy each")
	src := makeFlipRepo(t)
	rng := rand.New(rand.NewPCG(13, 14))
	type job struct {
		file string
		off  int64
		bit  uint
	}
	var jobs []job
	for _, file := range src.indexFiles(t) {
		st, err := os.Stat(filepath.Join(src.dir, file))
		if err != nil {
			t.Fatal(err)
		}
		strata := int64(6)
		if strings.HasSuffix(file, ".sst") {
			strata = 16 // a table's data blocks hold different records
		}
		offs := flipOffsets(rng, st.Size(), strata)
		t.Logf("%s: %d bytes, %d flips", file, st.Size(), len(offs))
		for _, off := range offs {
			jobs = append(jobs, job{file, off, uint(rng.IntN(8))})
		}
	}
	stats := &flipStats{n: map[string]int{}}
	work := make(chan job)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				src.flipAndCheck(t, stats, j.file, j.off, j.bit)
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	keys := make([]string, 0, len(stats.n))
	for k := range stats.n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%4d  %s", stats.n[k], k)
	}
	t.Logf("%d flips", len(jobs))
}

// fileKind names a damaged file's kind: "checkpoint sst", "index log".
func fileKind(rel string) string {
	where := "index"
	if strings.HasPrefix(rel, "snapshots") {
		where = "checkpoint"
	}
	base := filepath.Base(rel)
	if i := strings.IndexAny(base, ".-"); i >= 0 && (strings.HasPrefix(base, "MANIFEST") || strings.HasPrefix(base, "OPTIONS")) {
		return where + " " + base[:i]
	}
	return where + " " + strings.TrimPrefix(filepath.Ext(base), ".")
}

func (f *flipRepo) flipAndCheck(t *testing.T, stats *flipStats, file string, off int64, bit uint) {
	where := fmt.Sprintf("%s@%d bit %d", file, off, bit)
	dir := filepath.Join(t.TempDir(), "repo")
	defer os.RemoveAll(dir)
	if err := copyRepo(f.dir, dir); err != nil {
		t.Error(err)
		return
	}
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Error(err)
		return
	}
	b[off] ^= 1 << bit
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Error(err)
		return
	}
	kind := fileKind(file)
	wal := strings.HasSuffix(file, ".log")
	inCkpt := strings.HasPrefix(file, "snapshots")

	if inCkpt {
		// A checkpoint is published flushed: its records are all in
		// checksummed tables, so no flip loses one silently.
		stats.add(kind + ": read: " + f.check(t, where+" (reader)", dir, damageOK, false))
	}

	ctx := context.Background()
	var w *engine.Repository
	noPanic(t, where, "open writable", func() { w, err = engine.Open(ctx, dir, engine.OpenOptions{Writable: true}) })
	after := exact // a failed writer leaves the good checkpoint
	switch {
	case err == nil:
		closeSoon(t, where+" writer", w)
		stats.add(kind + ": writer opened")
		if !inCkpt && !wal {
			after = damageOK
		}
		// A write-ahead log that lost its tail loses nothing: the writer
		// indexes the record files and packs the index no longer knows.
	case inCkpt:
		t.Errorf("%s: the writer does not open with the index intact: %v", where, err)
	default:
		wantDamage(t, where+": open writable", dir, err)
		stats.add(kind + ": writer fails cleanly")
	}
	// The writer republished the intact index over a damaged checkpoint:
	// listing shows it; reading the data again would repeat the first pass.
	stats.add(kind + ": read after the writer: " + f.check(t, where+" (after the writer)", dir, after, inCkpt))
	f.checkPacks(t, where, dir)
}

// check reads the repository in dir with every reading method and
// compares with f; with quick, it lists and resolves but neither reads the
// disks nor verifies the data. It returns a summary for flipStats:
// "exact", "damage reported by OPS", "restore points silently lost".
func (f *flipRepo) check(t *testing.T, where, dir string, mode expect, quick bool) string {
	ctx := context.Background()
	damaged, lost := false, false
	var first []string // the operations that met the damage first
	// bad is called with an operation's error (not nil).
	bad := func(op string, err error) {
		if mode >= damageOK && wantDamage(t, where+": "+op, dir, err) {
			op, _, _ = strings.Cut(op, " ")
			if !slices.Contains(first, op) && len(first) < 4 {
				first = append(first, op)
			}
			damaged = true
			return
		}
		if mode == exact {
			t.Errorf("%s: %s: %v", where, op, err)
		}
	}
	summary := func() string {
		switch {
		case damaged && lost:
			return "damage reported by " + strings.Join(first, ", ") + "; restore points silently lost"
		case damaged:
			return "damage reported by " + strings.Join(first, ", ")
		case lost:
			return "restore points silently lost"
		}
		return "exact"
	}
	var r *engine.Repository
	var err error
	noPanic(t, where, "open", func() { r, err = engine.Open(ctx, dir, engine.OpenOptions{}) })
	if err != nil {
		bad("open", err)
		return summary()
	}
	defer closeSoon(t, where, r)

	noPanic(t, where, "ListVMs", func() {
		vms, err := r.ListVMs(ctx)
		if err != nil {
			bad("ListVMs", err)
			return
		}
		got := map[string]int{}
		for _, v := range vms {
			got[v.Name] = v.RestorePoints
		}
		for vm, n := range got {
			if n != f.vms[vm] {
				t.Errorf("%s: ListVMs: %s has %d restore points, want %d", where, vm, n, f.vms[vm])
			}
			lost = lost || n < f.vms[vm]
		}
		if len(got) < len(f.vms) {
			t.Errorf("%s: ListVMs: %v, want %v", where, got, f.vms)
			lost = true
		}
	})
	noPanic(t, where, "ListRestorePoints", func() {
		for _, vm := range []string{"", "web01", "db01"} {
			rps, err := r.ListRestorePoints(ctx, vm)
			if err != nil {
				bad("ListRestorePoints "+vm, err)
				continue
			}
			want := 0
			for _, rp := range f.rps {
				if vm == "" || rp.VM == vm {
					want++
				}
			}
			for _, rp := range rps {
				if w := f.rps[rp.Name()]; w == nil || w.ID != rp.ID || !slices.Equal(w.Disks[0].Pages, rp.Disks[0].Pages) {
					t.Errorf("%s: ListRestorePoints %q lists %s (%s), not a committed restore point", where, vm, rp.Name(), rp.ID)
				}
			}
			if len(rps) < want {
				t.Errorf("%s: ListRestorePoints %q: %d restore points, want %d", where, vm, len(rps), want)
				lost = true
			}
		}
	})
	noPanic(t, where, "ListState", func() {
		st, err := r.ListState(ctx, "")
		if err != nil {
			bad("ListState", err)
			return
		}
		if len(st) != len(f.state) {
			t.Errorf("%s: ListState: %d keys, want %d", where, len(st), len(f.state))
		}
		for k, v := range st {
			if !bytes.Equal(v, f.state[k]) {
				t.Errorf("%s: ListState: %s differs", where, k)
			}
		}
	})
	for name, want := range f.rps {
		noPanic(t, where, "Resolve", func() {
			rp, err := r.Resolve(ctx, name)
			if err != nil {
				bad("Resolve "+name, err)
			} else if rp.ID != want.ID {
				t.Errorf("%s: Resolve %s: ID %s, want %s", where, name, rp.ID, want.ID)
			}
		})
		noPanic(t, where, "RestorePointByID", func() {
			if _, err := r.RestorePointByID(ctx, want.ID); err != nil {
				bad("RestorePointByID "+name, err)
			}
		})
		if quick {
			continue
		}
		// Read with the committed record, whether or not the index still
		// lists it: the chunk lookups go through the damaged index.
		for i, content := range f.disks[name] {
			noPanic(t, where, "OpenDisk+ReadAt", func() {
				d, err := r.OpenDisk(ctx, want, i)
				if err != nil {
					bad("OpenDisk", err)
					return
				}
				defer d.Close()
				got := make([]byte, d.Size())
				if _, err := d.ReadAt(got, 0); err != nil {
					bad(fmt.Sprintf("read %s disk-%d", name, i), err)
				} else if !bytes.Equal(got, content) {
					t.Errorf("%s: %s disk-%d differs from its image", where, name, i)
				}
			})
		}
	}
	for _, readData := range []bool{false, true} {
		if quick && readData {
			break
		}
		noPanic(t, where, "Verify", func() {
			rep, err := r.Verify(ctx, engine.VerifyOptions{ReadData: readData})
			if err != nil {
				t.Errorf("%s: Verify (read data %v) returned an error instead of a report: %v", where, readData, err)
				return
			}
			if rep.OK() {
				if rep.RestorePoints < len(f.rps) {
					t.Errorf("%s: Verify (read data %v): OK with %d restore points, want %d", where, readData, rep.RestorePoints, len(f.rps))
					lost = true
				}
				return
			}
			named := false
			for _, p := range rep.Problems {
				named = named || strings.Contains(p, "repair index")
			}
			if !named || mode < damageOK {
				t.Errorf("%s: Verify (read data %v): %+v", where, readData, rep)
				return
			}
			if !slices.Contains(first, "Verify") && len(first) < 4 {
				first = append(first, "Verify")
			}
			damaged = true
		})
	}
	return summary()
}

// wantDamage reports whether err is index damage the way users must see it,
// and fails the test if not.
func wantDamage(t *testing.T, where, dir string, err error) bool {
	t.Helper()
	var d *engine.IndexDamageError
	switch {
	case !errors.Is(err, engine.ErrIndexDamaged) || !errors.Is(err, engine.ErrCorrupt) || !errors.As(err, &d):
		t.Errorf("%s: %v\nwant an *IndexDamageError (ErrIndexDamaged, ErrCorrupt)", where, err)
	case !strings.Contains(err.Error(), "; run 'ahvfs repair index'"):
		t.Errorf("%s: %v\nwant it to say to run 'ahvfs repair index'", where, err)
	case !strings.HasPrefix(d.Path, dir+string(filepath.Separator)) || !strings.Contains(err.Error(), d.Path):
		t.Errorf("%s: %v\nnames %q, not a file of the repository", where, err, d.Path)
	case strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "goroutine "):
		t.Errorf("%s: %q is not one line", where, err)
	default:
		return true
	}
	return false
}

// checkPacks fails the test when a file under packs/ changed, went or
// came, or something was quarantined.
func (f *flipRepo) checkPacks(t *testing.T, where, dir string) {
	t.Helper()
	got := readPacks(t, dir)
	for p, b := range f.packs {
		if g, ok := got[p]; !ok {
			t.Errorf("%s: %s is gone", where, p)
		} else if !bytes.Equal(g, b) {
			t.Errorf("%s: %s changed", where, p)
		}
	}
	for p := range got {
		if f.packs[p] == nil {
			t.Errorf("%s: %s appeared", where, p)
		}
	}
	if q, _ := os.ReadDir(filepath.Join(dir, "quarantine")); len(q) > 0 {
		t.Errorf("%s: %d files quarantined", where, len(q))
	}
}

// noPanic runs fn and fails the test if it panics.
func noPanic(t *testing.T, where, op string, fn func()) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s: %s panicked: %v\n%s", where, op, p, debug.Stack())
		}
	}()
	fn()
}

// closeSoon closes r, failing the test if that takes more than 10 s: a
// read that left the repository's lock held makes Close wait forever.
func closeSoon(t *testing.T, where string, r *engine.Repository) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		noPanic(t, where, "Close", func() { r.Close() })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: Close hangs: a read left the index locked", where)
	}
}
