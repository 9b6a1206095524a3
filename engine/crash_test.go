package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// Crash and error injection at every step of an import's commit, of an
// index rebuild, of a forget and of a gc (engine/faultpoints.go). Each operation is
// first run once recording the steps it passes; then, for each step and
// occurrence in turn, a child process (this test binary) runs it on a
// fresh copy of the repository and kills itself with SIGKILL at that step,
// and the same step is made to return an error in this process. After
// either, the repository must open (after 'repair index' when a rebuild
// was killed before its index was in place), verify --read-data clean,
// hold every restore point committed before byte-exact, and hold the one
// the operation adds or removes either whole or not at all: whole once an
// import's record file was written, gone once a forget's tombstone was
// (unless the point is held: then it stays).

const (
	envCrashOp   = "AHVFS_CRASH_OP"
	envCrashDir  = "AHVFS_CRASH_DIR"
	envCrashImg  = "AHVFS_CRASH_IMG"
	envCrashStep = "AHVFS_CRASH_STEP"
	envCrashNth  = "AHVFS_CRASH_NTH"
)

var crashOpts = engine.InitOptions{ChunkSize: 64 << 10, PageEntries: 16, PackSize: 1 << 20, ShardSize: 16 << 10, ParityData: 4, ParityShards: 2}

// crashOp is an operation under test (runCrashOp runs it by name): how to
// prepare its repository, and the restore points it adds (name → disk
// bytes).
type crashOp struct {
	name string
	// prepare turns a copy of the base repository into the operation's
	// starting state.
	prepare func(t *testing.T, dir string)
	// durableAt is the step from which the operation's effect is certain
	// (empty: it has no effect on the restore points). Before it, want
	// must be there and maybe may be; from it on, after must be exactly
	// what is there.
	durableAt   string
	want, maybe map[string][]byte
	after       map[string][]byte
}

func TestCrashAtEveryStep(t *testing.T) {
	if op := os.Getenv(envCrashOp); op != "" {
		crashChild(op)
		return
	}
	testenv.Short(t, "crash enumeration")
	ctx := context.Background()
	base := enginetest.Init(t, crashOpts)
	oldImg := enginetest.DataDisk(t, 4<<20, 11) // random from 4 KiB to 3 MiB + 16 KiB
	// The new image shares two chunks in three with the old one, so that a
	// gc after the old one is forgotten rewrites packs; its own packs of
	// the old one's manifest pages, and those of an import's, are deleted.
	newImg := writeTemp(t, everyThirdChunk(readFile(t, oldImg), 12))
	w := enginetest.Open(t, base, engine.OpenOptions{Writable: true})
	if _, err := enginetest.ImportFiles(ctx, w, "old", time.Unix(1e9, 0), oldImg); err != nil {
		t.Fatal(err)
	}
	w.Close()
	before := map[string][]byte{"old@" + engine.FormatTime(time.Unix(1e9, 0)): readFile(t, oldImg)}
	newName := "new@" + engine.FormatTime(time.Unix(2e9, 0))

	// The repository after a committed import, for the rebuilds.
	full := filepath.Join(t.TempDir(), "full")
	cloneRepo(t, base, full)
	if err := runCrashOp(ctx, "import", full, newImg); err != nil {
		t.Fatal(err)
	}
	both := map[string][]byte{newName: readFile(t, newImg)}
	for k, v := range before {
		both[k] = v
	}
	added := map[string][]byte{newName: readFile(t, newImg)}
	ops := []crashOp{
		{name: "import", prepare: func(t *testing.T, dir string) { cloneRepo(t, base, dir) },
			durableAt: engine.FaultRecordWritten, want: before, maybe: added, after: both},
		{name: "repair", prepare: func(t *testing.T, dir string) { cloneRepo(t, full, dir) }, want: both},
		{name: "repair", prepare: func(t *testing.T, dir string) {
			cloneRepo(t, full, dir)
			os.RemoveAll(filepath.Join(dir, "index"))
			os.RemoveAll(filepath.Join(dir, "snapshots"))
		}, want: both},
		{name: "forget", prepare: func(t *testing.T, dir string) { cloneRepo(t, full, dir) },
			durableAt: engine.FaultForgetMarked, want: before, maybe: added, after: before},
		// A forget of a held point, killed anywhere, removes nothing.
		{name: "forget-held", prepare: func(t *testing.T, dir string) {
			cloneRepo(t, full, dir)
			holdNamed(t, dir, newName)
		}, want: both},
		{name: "gc", prepare: func(t *testing.T, dir string) {
			cloneRepo(t, full, dir)
			forgetNamed(t, dir, "old@"+engine.FormatTime(time.Unix(1e9, 0)))
		}, want: added},
	}
	for i, op := range ops {
		t.Run(fmt.Sprintf("%s-%d", op.name, i), func(t *testing.T) {
			steps := recordSteps(t, op, newImg)
			if len(steps) < 4 {
				t.Fatalf("only %d fault points passed: %v", len(steps), steps)
			}
			durable := len(steps) // from this step on, the operation's effect is certain
			for i, s := range steps {
				if op.durableAt != "" && s.step == op.durableAt && i < durable {
					durable = i
				}
			}
			if op.durableAt != "" && durable == len(steps) {
				t.Fatalf("the operation never passed %q: %v", op.durableAt, steps)
			}
			for i, s := range steps {
				want, maybe := op.want, op.maybe
				if i >= durable {
					want, maybe = op.after, nil
				}
				dir := filepath.Join(t.TempDir(), "repo")
				op.prepare(t, dir)
				if err := crashChildAt(t, op.name, dir, newImg, s); err != nil {
					t.Fatalf("crash at %s: %v", s, err)
				}
				checkAfterFault(t, dir, "crash at "+s.String(), want, maybe)

				dir = filepath.Join(t.TempDir(), "repo")
				op.prepare(t, dir)
				restore := engine.SetFaultHook(s.hook(func() error { return errInjected }))
				err := runCrashOp(ctx, op.name, dir, newImg)
				restore()
				if err == nil || !errors.Is(err, errInjected) {
					t.Fatalf("error at %s: the operation returned %v, want the injected error", s, err)
				}
				checkAfterFault(t, dir, "error at "+s.String(), want, maybe)
			}
			t.Logf("%s: %d steps, each crashed and failed in turn", op.name, len(steps))
		})
	}
}

var errInjected = errors.New("injected fault")

// faultStep is the nth time (1-based) a fault point is passed.
type faultStep struct {
	step string
	nth  int
}

func (s faultStep) String() string { return fmt.Sprintf("%q #%d", s.step, s.nth) }

// hook returns a fault hook that calls act at the nth pass of the step.
func (s faultStep) hook(act func() error) func(string) error {
	var mu sync.Mutex
	seen := 0
	return func(step string) error {
		if step != s.step {
			return nil
		}
		mu.Lock()
		seen++
		hit := seen == s.nth
		mu.Unlock()
		if hit {
			return act()
		}
		return nil
	}
}

// recordSteps runs op once on a fresh copy and returns every fault point
// it passed, with its occurrence number.
func recordSteps(t *testing.T, op crashOp, img string) []faultStep {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	op.prepare(t, dir)
	var mu sync.Mutex
	count := map[string]int{}
	var steps []faultStep
	restore := engine.SetFaultHook(func(step string) error {
		mu.Lock()
		defer mu.Unlock()
		count[step]++
		steps = append(steps, faultStep{step, count[step]})
		return nil
	})
	err := runCrashOp(context.Background(), op.name, dir, img)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

func runCrashOp(ctx context.Context, op, dir, img string) error {
	switch op {
	case "import":
		w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
		if err != nil {
			return err
		}
		_, err = enginetest.ImportFiles(ctx, w, "new", time.Unix(2e9, 0), img)
		return errors.Join(err, w.Close())
	case "repair":
		_, err := engine.RepairIndex(ctx, dir, engine.OpenOptions{}, engine.RepairOptions{})
		return err
	case "gc":
		w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
		if err != nil {
			return err
		}
		rep, err := w.GC(ctx, engine.GCOptions{ReaderWait: time.Second})
		if err == nil && (rep.PacksDeleted == 0 || rep.PacksRewritten == 0) {
			err = fmt.Errorf("gc deleted %d packs and rewrote %d: the test wants both", rep.PacksDeleted, rep.PacksRewritten)
		}
		return errors.Join(err, w.Close())
	case "forget", "forget-held":
		w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
		if err != nil {
			return err
		}
		rp, err := w.Resolve(ctx, "new@"+engine.FormatTime(time.Unix(2e9, 0)))
		if err == nil {
			err = w.Forget(ctx, []*engine.RestorePoint{rp})
		}
		if op == "forget-held" { // the point is held: the forget must fail
			switch {
			case err == nil:
				err = errors.New("the forget of a held point succeeded")
			case errors.Is(err, engine.ErrHeld):
				err = nil
			}
		}
		return errors.Join(err, w.Close())
	}
	return fmt.Errorf("unknown operation %q", op)
}

// crashChildAt runs op in a child process that kills itself at step s,
// and checks that it did.
func crashChildAt(t *testing.T, op, dir, img string, s faultStep) error {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAtEveryStep$")
	cmd.Env = append(os.Environ(), envCrashOp+"="+op, envCrashDir+"="+dir, envCrashImg+"="+img,
		envCrashStep+"="+s.step, envCrashNth+"="+strconv.Itoa(s.nth))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return nil
		}
	}
	return fmt.Errorf("the child was not killed at the step (%v): %s", err, out)
}

// crashChild is the child's side: run the operation, SIGKILL at the step.
func crashChild(op string) {
	nth, _ := strconv.Atoi(os.Getenv(envCrashNth))
	s := faultStep{os.Getenv(envCrashStep), nth}
	engine.SetFaultHook(s.hook(func() error {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}))
	err := runCrashOp(context.Background(), op, os.Getenv(envCrashDir), os.Getenv(envCrashImg))
	fmt.Fprintf(os.Stderr, "the operation ended without reaching the step: %v\n", err)
	os.Exit(3)
}

// checkAfterFault opens the repository as the next job would and checks
// it: verify clean, every restore point of want byte-exact, those of
// maybe whole or absent, nothing else.
func checkAfterFault(t *testing.T, dir, what string, want, maybe map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	w, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
	if err != nil && strings.Contains(err.Error(), "repair index") {
		if _, err = engine.RepairIndex(ctx, dir, engine.OpenOptions{}, engine.RepairOptions{}); err == nil {
			w, err = engine.Open(ctx, dir, engine.OpenOptions{Writable: true})
		}
	}
	if err != nil {
		t.Fatalf("%s: the next writer cannot open: %v", what, err)
	}
	defer w.Close()
	v, err := w.Verify(ctx, engine.VerifyOptions{ReadData: true})
	if err != nil || !v.OK() {
		t.Fatalf("%s: verify: %+v %v", what, v, err)
	}
	rps, err := w.ListRestorePoints(ctx, "")
	if err != nil {
		t.Fatalf("%s: list: %v", what, err)
	}
	found := map[string]bool{}
	for _, rp := range rps {
		data, ok := want[rp.Name()]
		if !ok {
			data, ok = maybe[rp.Name()]
		}
		if !ok {
			t.Fatalf("%s: unexpected restore point %s", what, rp.Name())
		}
		if got := readAll(t, w, rp, 0); !bytes.Equal(got, data) {
			t.Fatalf("%s: %s reads back wrong bytes", what, rp.Name())
		}
		found[rp.Name()] = true
	}
	for name := range want {
		if !found[name] {
			t.Fatalf("%s: restore point %s lost", what, name)
		}
	}
	// A reader sees what the writer sees.
	r, err := engine.Open(ctx, dir, engine.OpenOptions{})
	if err != nil {
		t.Fatalf("%s: reader: %v", what, err)
	}
	defer r.Close()
	rrps, err := r.ListRestorePoints(ctx, "")
	if err != nil || len(rrps) != len(rps) {
		t.Fatalf("%s: the reader lists %d restore points (%v), the writer %d", what, len(rrps), err, len(rps))
	}
}

// forgetNamed forgets restore point name of the repository in dir.
func forgetNamed(t *testing.T, dir, name string) {
	t.Helper()
	ctx := context.Background()
	w := enginetest.Open(t, dir, engine.OpenOptions{Writable: true})
	defer w.Close()
	rp, err := w.Resolve(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Forget(ctx, []*engine.RestorePoint{rp}); err != nil {
		t.Fatal(err)
	}
}

// holdNamed holds restore point name of the repository in dir.
func holdNamed(t *testing.T, dir, name string) {
	t.Helper()
	ctx := context.Background()
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	defer r.Close()
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddHold(ctx, rp, engine.Hold{Reason: "crash test"}); err != nil {
		t.Fatal(err)
	}
}

func cloneRepo(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(to, "lock"))
}
