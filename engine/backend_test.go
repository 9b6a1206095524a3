package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// The engine on a fault-injecting backend (backend.Faulty over a Local of
// the repository directory). A job — an import, or a verify --repair of a
// damaged repository — is run once without faults to learn its backend
// operations, then once per operation with that operation failing, and
// once per Put with the backend crashing right after it. After each, the
// repository is opened on a plain Local, as the next job would: it must
// verify clean (after the repair the damage it was given may remain, as
// long as it is still repairable), hold every earlier restore point
// byte-exact, and the new one whole or not at all.

// faultyJob is a job run on a Faulty backend.
type faultyJob struct {
	base  string                                                          // the repository it starts from (copied for each run)
	run   func(ctx context.Context, dir string, be backend.Backend) error // the job, on be
	check func(t *testing.T, dir, what string)                            // the state after a fault, on a plain Local
}

// faultyRun copies the job's repository and runs the job on a Faulty set
// up by arm; it returns the Faulty and the job's error.
func (j faultyJob) faultyRun(t *testing.T, arm func(f *backend.Faulty)) (string, *backend.Faulty, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	cloneRepo(t, j.base, dir)
	local, err := backend.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := backend.NewFaulty(local)
	arm(f)
	err = j.run(context.Background(), dir, f)
	if uerr := f.Err(); uerr != nil {
		t.Fatalf("the faulty backend could not roll back: %v", uerr)
	}
	return dir, f, err
}

// opKinds maps Faulty.Ops' names back to operation kinds.
var opKinds = map[string]backend.Op{"put": backend.OpPut, "open": backend.OpOpen, "read": backend.OpRead,
	"stat": backend.OpStat, "list": backend.OpList, "delete": backend.OpDelete}

// backendStep is one backend operation of a clean run: its kind and its
// occurrence among the operations of that kind (1-based).
type backendStep struct {
	op   backend.Op
	nth  int
	what string // as Faulty.Ops names it
}

// backendSteps runs the job without faults and returns its operations.
func (j faultyJob) backendSteps(t *testing.T) []backendStep {
	t.Helper()
	dir, f, err := j.faultyRun(t, func(*backend.Faulty) {})
	if err != nil {
		t.Fatalf("the job without faults: %v", err)
	}
	j.check(t, dir, "without faults")
	count := map[backend.Op]int{}
	var steps []backendStep
	for _, s := range f.Ops() {
		kind, ok := opKinds[s[:strings.IndexByte(s, ' ')]]
		if !ok {
			t.Fatalf("unknown operation %q", s)
		}
		count[kind]++
		steps = append(steps, backendStep{kind, count[kind], s})
	}
	return steps
}

// failEach runs the job once per operation of a clean run, that
// operation failing (and, for a Put or a Delete, once more with it taking
// effect and then failing), and checks the state after each. The runs are
// parallel subtests.
func (j faultyJob) failEach(t *testing.T) {
	steps := j.backendSteps(t)
	if len(steps) < 5 {
		t.Fatalf("only %d backend operations: %v", len(steps), steps)
	}
	runs := 0
	for i, s := range steps {
		actions := []backend.Action{backend.Fail}
		if s.op == backend.OpPut || s.op == backend.OpDelete {
			actions = append(actions, backend.FailAfter)
		}
		for _, a := range actions {
			runs++
			what := fmt.Sprintf("%s #%d (%s), action %d", s.op, s.nth, s.what, a)
			t.Run(fmt.Sprintf("%d-%s-%d-%d", i, s.op, s.nth, a), func(t *testing.T) {
				t.Parallel()
				dir, f, _ := j.faultyRun(t, func(f *backend.Faulty) { f.Add(backend.Rule{Op: s.op, Nth: s.nth, Action: a}) })
				if f.Count(s.op) < s.nth {
					t.Fatalf("%s: the run made only %d such operations", what, f.Count(s.op))
				}
				j.check(t, dir, what)
			})
		}
	}
	t.Logf("%d backend operations, %d runs with a fault", len(steps), runs)
}

// crashEach runs the job once per Put of a clean run, the backend
// crashing right after it, and checks the state after each. The runs are
// parallel subtests.
func (j faultyJob) crashEach(t *testing.T) {
	steps := j.backendSteps(t)
	puts := 0
	for _, s := range steps {
		if s.op != backend.OpPut {
			continue
		}
		puts++
		what := fmt.Sprintf("crash after put #%d (%s)", s.nth, s.what)
		t.Run(fmt.Sprintf("put-%d", s.nth), func(t *testing.T) {
			t.Parallel()
			dir, f, err := j.faultyRun(t, func(f *backend.Faulty) { f.CrashAfter(backend.OpPut, s.nth) })
			if !f.Crashed() {
				t.Fatalf("%s: the backend did not crash (the job returned %v)", what, err)
			}
			j.check(t, dir, what)
		})
	}
	if puts < 2 {
		t.Fatalf("only %d puts: %v", puts, steps)
	}
	t.Logf("%d backend operations, a crash after each of the %d puts", len(steps), puts)
}

// backendFixture is a repository holding restore point "old" and the
// image an import adds as "new".
type backendFixture struct {
	base, newImg string
	before, both map[string][]byte
	newName      string
}

func newBackendFixture(t *testing.T) backendFixture {
	t.Helper()
	ctx := context.Background()
	fx := backendFixture{base: enginetest.Init(t, crashOpts)}
	oldImg := randomImage(t, 1<<20, 21)
	fx.newImg = randomImage(t, 2<<20+12345, 22)
	w := enginetest.Open(t, fx.base, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(ctx, w, "old", time.Unix(1e9, 0), oldImg); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fx.before = map[string][]byte{"old@" + engine.FormatTime(time.Unix(1e9, 0)): readFile(t, oldImg)}
	fx.newName = "new@" + engine.FormatTime(time.Unix(2e9, 0))
	fx.both = map[string][]byte{fx.newName: readFile(t, fx.newImg)}
	for k, v := range fx.before {
		fx.both[k] = v
	}
	return fx
}

// importJob imports the fixture's new image on the backend.
func (fx backendFixture) importJob() faultyJob {
	return faultyJob{
		base: fx.base,
		run: func(ctx context.Context, dir string, be backend.Backend) error {
			w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true, Backend: be})
			if err != nil {
				return err
			}
			_, err = enginetest.ImportFiles(ctx, w, "new", time.Unix(2e9, 0), fx.newImg)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			return err
		},
		check: func(t *testing.T, dir, what string) {
			checkAfterFault(t, dir, what, fx.before, map[string][]byte{fx.newName: fx.both[fx.newName]})
		},
	}
}

func TestBackendFailureAtEveryImportStep(t *testing.T) {
	testenv.Short(t, "fault enumeration")
	newBackendFixture(t).importJob().failEach(t)
}

func TestBackendCrashAfterEveryImportPut(t *testing.T) {
	testenv.Short(t, "fault enumeration")
	newBackendFixture(t).importJob().crashEach(t)
}

// repairFixture is the fixture with both restore points and damage that
// verify --repair rebuilds: a flipped bit in a blob of one pack and one in
// a parity shard of another pack's sidecar.
func (fx backendFixture) repairJob(t *testing.T) faultyJob {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "damaged")
	cloneRepo(t, fx.base, dir)
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	rp, err := enginetest.ImportFiles(ctx, w, "new", time.Unix(2e9, 0), fx.newImg)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := w.ChunkIDs(ctx, &rp.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	var packs []string
	for _, id := range ids {
		if id.IsZero() {
			continue
		}
		p, off, stored, err := engine.BlobLocation(w, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(packs) == 0 {
			flipBitAt(t, p, off+int64(stored)/2, 3)
			packs = append(packs, p)
		} else if p != packs[0] {
			par := strings.TrimSuffix(p, ".pack") + ".par"
			st, err := os.Stat(par)
			if err != nil {
				t.Fatal(err)
			}
			flipBitAt(t, par, st.Size()-100, 5)
			packs = append(packs, p)
			break
		}
	}
	w.Close()
	if len(packs) != 2 {
		t.Fatalf("the new restore point's chunks lie in %d pack(s), want two or more", len(packs))
	}
	return faultyJob{
		base: dir,
		run: func(ctx context.Context, dir string, be backend.Backend) error {
			w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true, Backend: be})
			if err != nil {
				return err
			}
			_, err = w.Verify(ctx, engine.VerifyOptions{Repair: true})
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			return err
		},
		check: func(t *testing.T, dir, what string) { checkRepairable(t, dir, what, fx.both) },
	}
}

// checkRepairable opens the repository for writing on a plain Local: what
// verify --read-data finds must be damage parity rebuilds, no more (the
// damage repairJob made, where the job did not repair it); verify --repair
// then makes it whole, and the restore points of want read back
// byte-exact.
func checkRepairable(t *testing.T, dir, what string, want map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatalf("%s: the next writer cannot open: %v", what, err)
	}
	defer w.Close()
	v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatalf("%s: verify: %v", what, err)
	}
	bad := len(v.Problems) > 0 || len(v.Damaged) > 2
	for _, d := range v.Damaged {
		bad = bad || d.State != engine.DamageRepairable || d.LostBlobs > 0
	}
	for _, a := range v.Affected {
		bad = bad || a.MissingChunks > 0 || a.DamagedChunks != a.RepairableChunks
	}
	if bad {
		t.Fatalf("%s: verify finds more than the repairable damage the job was given: %+v", what, v)
	}
	if v, err = w.Verify(ctx, engine.VerifyOptions{Repair: true}); err != nil || !v.OK() {
		t.Fatalf("%s: verify --repair: %+v %v", what, v, err)
	}
	rps, err := w.ListRestorePoints(ctx, "")
	if err != nil || len(rps) != len(want) {
		t.Fatalf("%s: %d restore points (%v), want %d", what, len(rps), err, len(want))
	}
	for _, rp := range rps {
		if got := readAll(t, w, rp, 0); !bytes.Equal(got, want[rp.Name()]) {
			t.Fatalf("%s: %s reads back wrong bytes", what, rp.Name())
		}
	}
}

func TestBackendFailureAtEveryRepairStep(t *testing.T) {
	testenv.Short(t, "fault enumeration")
	fx := newBackendFixture(t)
	fx.repairJob(t).failEach(t)
}

func TestBackendCrashAfterEveryRepairPut(t *testing.T) {
	testenv.Short(t, "fault enumeration")
	fx := newBackendFixture(t)
	fx.repairJob(t).crashEach(t)
}

// TestBackendBitFlipOnRead: a pack reads with a flipped bit (the stored
// bytes are intact): reads rebuild the blob in memory from parity and say
// so, verify --read-data reports the pack as repairable, and nothing is
// written.
func TestBackendBitFlipOnRead(t *testing.T) {
	ctx := context.Background()
	fx := newBackendFixture(t)
	r := enginetest.Open(t, fx.base, engine.OpenOptions{})
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil || len(rps) != 1 {
		t.Fatalf("list: %v %v", rps, err)
	}
	rp := rps[0]
	ids, err := r.ChunkIDs(ctx, &rp.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	p, off, stored, err := engine.BlobLocation(r, ids[5])
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	rel, err := filepath.Rel(fx.base, p)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.ToSlash(rel)
	onDisk := readFile(t, p)

	local, err := backend.OpenLocal(fx.base)
	if err != nil {
		t.Fatal(err)
	}
	f := backend.NewFaulty(local)
	f.FlipBitOnRead(name, off+int64(stored)/2, 6)
	var log enginetest.LogBuffer
	fr := enginetest.Open(t, fx.base, engine.OpenOptions{Backend: f, Logger: log.Logger()})
	if got := readAll(t, fr, rp, 0); !bytes.Equal(got, fx.before[rp.Name()]) {
		t.Fatal("a read through a flipped bit returned wrong bytes")
	}
	for _, s := range []string{"level=WARN", "repaired in memory", "ahvfs verify --repair"} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, log.String())
		}
	}
	v, err := fr.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	pack := strings.TrimSuffix(filepath.Base(p), ".pack")
	if len(v.Damaged) != 1 || v.Damaged[0].Pack != pack || v.Damaged[0].State != engine.DamageRepairable ||
		len(v.Affected) != 1 || v.Affected[0].RepairableChunks != 1 || v.Affected[0].DamagedChunks != 1 {
		t.Fatalf("verify --read-data does not report pack %s as repairable, one chunk affected: %+v", pack, v)
	}
	if got := readFile(t, p); !bytes.Equal(got, onDisk) {
		t.Fatal("reading or verifying wrote the pack")
	}
	if n := f.Count(backend.OpPut) + f.Count(backend.OpDelete); n > 0 {
		t.Fatalf("a reader made %d puts and deletes", n)
	}
}

// TestBackendUnreadableSidecarIsNotDamage: an unindexed pack whose trailer
// is damaged needs its sidecar to be rebuilt. When the sidecar cannot be
// read (an I/O error, not damage), the writer's open fails and leaves the
// pack where it is, instead of moving it to quarantine/; the next open
// that can read the sidecar rebuilds and indexes it.
func TestBackendUnreadableSidecarIsNotDamage(t *testing.T) {
	ctx := context.Background()
	fx := newBackendFixture(t)
	pack := packFiles(t, fx.base)[0] // the largest: a data pack
	forgetPacks(t, fx.base, []string{pack})
	st, err := os.Stat(pack)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(pack, st.Size()-10); err != nil {
		t.Fatal(err)
	}
	damaged := readFile(t, pack)

	local, err := backend.OpenLocal(fx.base)
	if err != nil {
		t.Fatal(err)
	}
	f := backend.NewFaulty(local)
	f.Add(backend.Rule{Op: backend.OpOpen, Match: "packs/*/*.par"})
	if w, err := engine.Open(ctx, fx.base, engine.OpenOptions{Writable: true, Backend: f}); err == nil {
		w.Close()
		t.Fatal("the writer opened without the sidecar it needs")
	} else if !errors.Is(err, backend.ErrInjected) {
		t.Fatalf("open: %v, want the sidecar's read error", err)
	}
	if q := repoFiles(t, fx.base, "quarantine"); len(q) > 0 {
		t.Fatalf("quarantined for a read error: %v", q)
	}
	if got := readFile(t, pack); !bytes.Equal(got, damaged) {
		t.Fatal("the pack changed")
	}
	checkAfterFault(t, fx.base, "after the sidecar reads again", fx.before, nil)
}

// randomImage writes a size-byte image of random bytes but for one zero
// chunk (64 KiB at 256 KiB) and returns its path.
func randomImage(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	b := make([]byte, size)
	rnd := rand.New(rand.NewPCG(seed, 9))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	clear(b[256<<10 : 320<<10])
	p := filepath.Join(t.TempDir(), "random.raw")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
