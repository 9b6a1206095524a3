package backend_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/backendtest"
)

var ctx = context.Background()

var errBoom = errors.New("boom")

func put(t *testing.T, b backend.Backend, name string, data []byte) {
	t.Helper()
	if err := backend.PutBytes(ctx, b, name, data); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func get(t *testing.T, b backend.Backend, name string) []byte {
	t.Helper()
	data, err := backend.Get(ctx, b, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return data
}

// objects is every object of b with its content, as "name=content"
// (a long content as its length and hash).
func objects(t *testing.T, b backend.Backend) []string {
	t.Helper()
	infos, err := backend.ListAll(ctx, b, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		data := get(t, b, i.Name)
		if len(data) > 32 {
			data = fmt.Appendf(nil, "%d bytes %x", len(data), sha256.Sum256(data))
		}
		out = append(out, i.Name+"="+string(data))
	}
	return out
}

func wantObjects(t *testing.T, b backend.Backend, want ...string) {
	t.Helper()
	if got := objects(t, b); !slices.Equal(got, want) {
		t.Fatalf("objects:\n got %q\nwant %q", got, want)
	}
}

// TestFaultyFailNth: a FailNth rule fails exactly the nth operation of its
// kind, without effect, and no other.
func TestFaultyFailNth(t *testing.T) {
	const n = 3
	for _, tc := range []struct {
		op  backend.Op
		run func(f *backend.Faulty, i int) error
		// effect reports whether operation i left its effect in inner.
		effect func(inner *backend.Mem, i int) bool
	}{
		{op: backend.OpPut,
			run: func(f *backend.Faulty, i int) error {
				return backend.PutBytes(ctx, f, fmt.Sprintf("new/%d", i), []byte("x"))
			},
			effect: func(inner *backend.Mem, i int) bool {
				_, err := inner.Stat(ctx, fmt.Sprintf("new/%d", i))
				return err == nil
			}},
		{op: backend.OpDelete,
			run: func(f *backend.Faulty, i int) error { return f.Delete(ctx, fmt.Sprintf("old/%d", i)) },
			effect: func(inner *backend.Mem, i int) bool {
				_, err := inner.Stat(ctx, fmt.Sprintf("old/%d", i))
				return errors.Is(err, backend.ErrNotExist)
			}},
		{op: backend.OpOpen, run: func(f *backend.Faulty, i int) error {
			o, err := f.Open(ctx, "old/1")
			if err == nil {
				o.Close()
			}
			return err
		}},
		{op: backend.OpStat, run: func(f *backend.Faulty, i int) error { _, err := f.Stat(ctx, "old/1"); return err }},
		{op: backend.OpList, run: func(f *backend.Faulty, i int) error { _, err := backend.ListAll(ctx, f, "old/"); return err }},
	} {
		t.Run(tc.op.String(), func(t *testing.T) {
			inner := backend.NewMem()
			for i := 1; i <= 5; i++ {
				put(t, inner, fmt.Sprintf("old/%d", i), []byte("old"))
			}
			f := backend.NewFaulty(inner)
			f.FailNth(tc.op, n, errBoom)
			for i := 1; i <= 5; i++ {
				err := tc.run(f, i)
				if i == n && !errors.Is(err, errBoom) {
					t.Fatalf("%v #%d: %v, want the injected error", tc.op, i, err)
				}
				if i != n && err != nil {
					t.Fatalf("%v #%d: %v", tc.op, i, err)
				}
				if tc.effect != nil && tc.effect(inner, i) != (i != n) {
					t.Fatalf("%v #%d: effect %v, want %v", tc.op, i, tc.effect(inner, i), i != n)
				}
			}
			if got := f.Count(tc.op); got != 5 {
				t.Fatalf("Count(%v) = %d, want 5", tc.op, got)
			}
		})
	}
}

// TestFaultyFailRead: reads of an open object count one by one.
func TestFaultyFailRead(t *testing.T) {
	inner := backend.NewMem()
	put(t, inner, "obj", []byte("0123456789"))
	f := backend.NewFaulty(inner)
	o, err := f.Open(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	f.FailNth(backend.OpRead, 2, nil)
	for i := 1; i <= 3; i++ {
		buf := make([]byte, 4)
		n, err := o.ReadAt(buf, 2)
		if i == 2 {
			if n != 0 || !errors.Is(err, backend.ErrInjected) {
				t.Fatalf("read #2: %d, %v", n, err)
			}
			continue
		}
		if n != 4 || err != nil || string(buf) != "2345" {
			t.Fatalf("read #%d: %q, %v", i, buf[:n], err)
		}
	}
	if got := f.Count(backend.OpRead); got != 3 {
		t.Fatalf("Count(read) = %d", got)
	}
}

// TestFaultyMatch: a rule counts only the operations whose name matches,
// from when it is added; Nth 0 fires on every one; ClearRules ends it.
func TestFaultyMatch(t *testing.T) {
	inner := backend.NewMem()
	f := backend.NewFaulty(inner)
	put(t, f, "packs/ab/0.pack", []byte("before the rule")) // not counted by it
	f.Add(backend.Rule{Op: backend.OpPut, Match: "packs/*/*.pack", Nth: 2, Err: errBoom})
	for _, c := range []struct {
		name string
		fail bool
	}{
		{"packs/ab/1.pack", false}, {"records/rp/1.rec", false}, {"packs/ab/1.par", false},
		{"packs/cd/2.pack", true}, {"packs/ef/3.pack", false},
	} {
		err := backend.PutBytes(ctx, f, c.name, []byte("x"))
		if c.fail != errors.Is(err, errBoom) || (!c.fail && err != nil) {
			t.Fatalf("put %s: %v (want failure: %v)", c.name, err, c.fail)
		}
	}

	f.Add(backend.Rule{Op: backend.OpAny, Match: "records/*", Err: errBoom}) // every operation on records
	if _, err := f.Stat(ctx, "records/rp"); !errors.Is(err, errBoom) {
		t.Fatalf("stat records/rp: %v", err)
	}
	if _, err := backend.ListAll(ctx, f, "records/"); !errors.Is(err, errBoom) {
		t.Fatalf("list records/: %v", err)
	}
	if _, err := backend.Get(ctx, f, "records/rp/1.rec"); err != nil { // "*" stops at a slash
		t.Fatalf("get records/rp/1.rec: %v", err)
	}
	if _, err := f.Stat(ctx, "packs/ab/1.par"); err != nil {
		t.Fatalf("stat packs/ab/1.par: %v", err)
	}
	f.ClearRules()
	if _, err := f.Stat(ctx, "records/rp"); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("stat records/rp after ClearRules: %v", err)
	}
}

// TestFaultyFailAfter: the operation takes effect and still fails.
func TestFaultyFailAfter(t *testing.T) {
	inner := backend.NewMem()
	f := backend.NewFaulty(inner)
	f.Add(backend.Rule{Op: backend.OpPut, Nth: 1, Action: backend.FailAfter})
	f.Add(backend.Rule{Op: backend.OpDelete, Nth: 1, Action: backend.FailAfter, Err: errBoom})
	if err := backend.PutBytes(ctx, f, "a", []byte("new")); !errors.Is(err, backend.ErrInjected) {
		t.Fatalf("put: %v", err)
	}
	put(t, f, "b", []byte("b"))
	wantObjects(t, inner, "a=new", "b=b")
	if err := f.Delete(ctx, "a"); !errors.Is(err, errBoom) {
		t.Fatalf("delete: %v", err)
	}
	wantObjects(t, inner, "b=b")
}

// TestFaultyShortWrite: the nth Put leaves a truncated object, visible to
// readers, and an error.
func TestFaultyShortWrite(t *testing.T) {
	inner := backend.NewMem()
	f := backend.NewFaulty(inner)
	f.ShortWriteNth(2)
	data := backendtest.Content("x", 1, 1001)
	put(t, f, "one", data)
	if err := backend.PutBytes(ctx, f, "two", data); !errors.Is(err, backend.ErrInjected) {
		t.Fatalf("put #2: %v", err)
	}
	put(t, f, "three", data)
	for _, b := range []backend.Backend{inner, f} {
		if got := get(t, b, "two"); !bytes.Equal(got, data[:500]) {
			t.Fatalf("%v: the short object holds %d bytes, want the first 500", b, len(got))
		}
		if !bytes.Equal(get(t, b, "one"), data) || !bytes.Equal(get(t, b, "three"), data) {
			t.Fatalf("%v: other Puts are not complete", b)
		}
	}
}

// TestFaultyFlipBit: reads see the flipped bits, the stored object does
// not change, other objects and other bytes are untouched.
func TestFaultyFlipBit(t *testing.T) {
	inner := backend.NewMem()
	f := backend.NewFaulty(inner)
	data := backendtest.Content("obj", 1, 1000)
	put(t, f, "packs/ab/obj.pack", data)
	put(t, f, "packs/ab/obj.par", data)
	f.FlipBitOnRead("packs/*/*.pack", 10, 3)
	f.FlipBitOnRead("packs/*/*.pack", -1, 0)

	want := bytes.Clone(data)
	want[10] ^= 1 << 3
	want[999] ^= 1
	if got := get(t, f, "packs/ab/obj.pack"); !bytes.Equal(got, want) {
		t.Fatal("get through Faulty: not exactly the two flipped bits")
	}
	if !bytes.Equal(get(t, inner, "packs/ab/obj.pack"), data) {
		t.Fatal("the stored object changed")
	}
	if !bytes.Equal(get(t, f, "packs/ab/obj.par"), data) {
		t.Fatal("an object the pattern does not match was flipped")
	}
	o, err := f.Open(ctx, "packs/ab/obj.pack")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	buf := make([]byte, 10)
	if _, err := o.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:10]) {
		t.Fatalf("read of [0,10): %v, or flipped", err)
	}
	if _, err := o.ReadAt(buf, 5); err != nil || !bytes.Equal(buf, want[5:15]) {
		t.Fatalf("read of [5,15): %v, or not flipped at 10", err)
	}
}

// TestFaultyCrash: after Crash every operation fails without effect, open
// objects included; the inner backend is left open and as it was.
func TestFaultyCrash(t *testing.T) {
	inner := backend.NewMem()
	f := backend.NewFaulty(inner)
	put(t, f, "a", []byte("a"))
	o, err := f.Open(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	f.Crash()
	if !f.Crashed() {
		t.Fatal("Crashed() false after Crash")
	}
	checks := map[string]error{
		"put":    backend.PutBytes(ctx, f, "b", []byte("b")),
		"delete": f.Delete(ctx, "a"),
	}
	_, checks["open"] = f.Open(ctx, "a")
	_, checks["stat"] = f.Stat(ctx, "a")
	_, checks["list"] = backend.ListAll(ctx, f, "")
	_, checks["read"] = o.ReadAt(make([]byte, 1), 0)
	for op, err := range checks {
		if !errors.Is(err, backend.ErrCrashed) {
			t.Errorf("%s after the crash: %v", op, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantObjects(t, inner, "a=a") // still open, nothing changed
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
}

// blockingData is a Put's data that stops at its first read until
// release is closed, having closed reached.
type blockingData struct {
	data    []byte
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlocking(data []byte) *blockingData {
	return &blockingData{data: data, reached: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingData) ReadAt(p []byte, off int64) (int, error) {
	b.once.Do(func() { close(b.reached); <-b.release })
	return bytes.NewReader(b.data).ReadAt(p, off)
}

// waitCrashed waits until f has crashed (a Crash in another goroutine).
func waitCrashed(f *backend.Faulty) {
	for !f.Crashed() {
		time.Sleep(time.Millisecond)
	}
}

// TestFaultyCrashRollsBackInFlight: a Put or Delete that has not returned
// when the crash comes has no effect, whether the inner backend had
// finished it (Mem reads all data at once) or not.
func TestFaultyCrashRollsBackInFlight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inner func(t *testing.T) backend.Backend
	}{
		{"Mem", func(t *testing.T) backend.Backend { return backend.NewMem() }},
		{"Local", func(t *testing.T) backend.Backend { return newLocal(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := tc.inner(t)
			put(t, inner, "old", []byte("old content"))
			put(t, inner, "doomed", []byte("kept"))
			for _, name := range []string{"new", "old"} {
				f := backend.NewFaulty(inner)
				data := newBlocking(backendtest.Content(name, 2, 3<<20))
				errc := make(chan error, 1)
				go func() { errc <- f.Put(ctx, name, data, int64(len(data.data))) }()
				<-data.reached
				crashed := make(chan struct{})
				go func() { f.Crash(); close(crashed) }()
				waitCrashed(f)
				close(data.release)
				if err := <-errc; !errors.Is(err, backend.ErrCrashed) {
					t.Fatalf("put %s in flight at the crash: %v", name, err)
				}
				<-crashed
				if err := f.Err(); err != nil {
					t.Fatal(err)
				}
			}
			// A Delete in flight: the inner Delete waits for the crash.
			sd := &hookedDelete{Backend: inner}
			f := backend.NewFaulty(sd)
			sd.hook = func() { go f.Crash(); waitCrashed(f) }
			if err := f.Delete(ctx, "doomed"); !errors.Is(err, backend.ErrCrashed) {
				t.Fatalf("delete in flight at the crash: %v", err)
			}
			wantObjects(t, inner, "doomed=kept", "old=old content")
		})
	}
}

// hookedDelete calls hook after each Delete of the backend it wraps.
type hookedDelete struct {
	backend.Backend
	hook func()
}

func (h *hookedDelete) Delete(ctx context.Context, name string) error {
	err := h.Backend.Delete(ctx, name)
	h.hook()
	return err
}

// job is a sequence of steps of the kind a repository writer takes: data
// first, then the record that names it, then cleanup.
func job(b backend.Backend) error {
	steps := []func() error{
		func() error { return backend.PutBytes(ctx, b, "packs/ab/1.pack", []byte("pack")) },
		func() error { return backend.PutBytes(ctx, b, "packs/ab/1.par", []byte("par")) },
		func() error { _, err := b.Stat(ctx, "packs/ab/1.pack"); return err },
		func() error { return backend.PutBytes(ctx, b, "records/rp/1.rec", []byte("rec")) },
		func() error { return b.Delete(ctx, "old") },
		func() error { return backend.PutBytes(ctx, b, "config.json", []byte("v2")) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// TestFaultyCrashAfterEachStep: the pattern for crash tests. One run
// without faults enumerates the steps; then, for each k, a run that
// crashes right after step k leaves exactly the effects of steps 1..k.
func TestFaultyCrashAfterEachStep(t *testing.T) {
	base := backend.NewMem()
	put(t, base, "old", []byte("old"))
	put(t, base, "config.json", []byte("v1"))

	clean := backend.NewFaulty(base.Clone())
	if err := job(clean); err != nil {
		t.Fatal(err)
	}
	steps := clean.Ops()
	wantSteps := []string{"put packs/ab/1.pack", "put packs/ab/1.par", "stat packs/ab/1.pack", "put records/rp/1.rec",
		"delete old", "put config.json"}
	if !slices.Equal(steps, wantSteps) {
		t.Fatalf("steps %q, want %q", steps, wantSteps)
	}
	if clean.Count(backend.OpAny) != 6 || clean.Count(backend.OpPut) != 4 || clean.Count(backend.OpDelete) != 1 {
		t.Fatalf("counts: any %d, put %d, delete %d", clean.Count(backend.OpAny), clean.Count(backend.OpPut), clean.Count(backend.OpDelete))
	}
	want := [][]string{
		{"config.json=v1", "old=old"},
		{"config.json=v1", "old=old", "packs/ab/1.pack=pack"},
		{"config.json=v1", "old=old", "packs/ab/1.pack=pack", "packs/ab/1.par=par"},
		{"config.json=v1", "old=old", "packs/ab/1.pack=pack", "packs/ab/1.par=par"},
		{"config.json=v1", "old=old", "packs/ab/1.pack=pack", "packs/ab/1.par=par", "records/rp/1.rec=rec"},
		{"config.json=v1", "packs/ab/1.pack=pack", "packs/ab/1.par=par", "records/rp/1.rec=rec"},
		{"config.json=v2", "packs/ab/1.pack=pack", "packs/ab/1.par=par", "records/rp/1.rec=rec"},
	}
	for k := 0; k <= len(steps); k++ {
		inner := base.Clone()
		f := backend.NewFaulty(inner)
		f.CrashAfter(backend.OpAny, k)
		err := job(f)
		if k < len(steps) && !errors.Is(err, backend.ErrCrashed) {
			t.Fatalf("crash after step %d: the job returned %v", k, err)
		}
		wantObjects(t, inner, want[k]...)
		// The same crash points, counted in Puts only.
		if k <= 4 {
			inner := base.Clone()
			f := backend.NewFaulty(inner)
			f.CrashAfter(backend.OpPut, k)
			job(f)
			wantPuts := [][]string{want[0], want[1], want[2], want[4], want[6]}[k]
			wantObjects(t, inner, wantPuts...)
		}
	}
}

// TestFaultyCrashAfterConcurrent: when the crash comes at the end of one
// operation, another Put still in flight is rolled back.
func TestFaultyCrashAfterConcurrent(t *testing.T) {
	inner := backend.NewMem()
	f := backend.NewFaulty(inner)
	f.CrashAfter(backend.OpPut, 2)
	slow := newBlocking([]byte("slow"))
	errc := make(chan error, 1)
	go func() { errc <- f.Put(ctx, "slow", slow, 4) }() // Put #1, stuck in its data
	<-slow.reached
	fast := make(chan error, 1)
	go func() { fast <- backend.PutBytes(ctx, f, "fast", []byte("fast")) }() // Put #2, the crash point
	waitCrashed(f)
	close(slow.release)
	if err := <-errc; !errors.Is(err, backend.ErrCrashed) {
		t.Fatalf("put in flight: %v", err)
	}
	if err := <-fast; err != nil {
		t.Fatalf("the put the crash follows: %v", err)
	}
	wantObjects(t, inner, "fast=fast")
}

// TestFaultyOps: the log names every call, failed ones and those after a
// crash included, but not calls refused for their names.
func TestFaultyOps(t *testing.T) {
	f := backend.NewFaulty(backend.NewMem())
	f.FailNth(backend.OpStat, 1, nil)
	put(t, f, "a/x", []byte("x"))
	f.Stat(ctx, "a/x")
	backend.ListAll(ctx, f, "a/")
	get(t, f, "a/x")
	f.Delete(ctx, "../bad")
	f.Crash()
	f.Delete(ctx, "a/x")
	want := []string{"put a/x", "stat a/x", "list a/", "open a/x", "read a/x", "delete a/x"}
	if got := f.Ops(); !slices.Equal(got, want) {
		t.Fatalf("ops %q, want %q", got, want)
	}
	for op, n := range map[backend.Op]int{backend.OpAny: 6, backend.OpPut: 1, backend.OpStat: 1, backend.OpList: 1,
		backend.OpOpen: 1, backend.OpRead: 1, backend.OpDelete: 1} {
		if got := f.Count(op); got != n {
			t.Errorf("Count(%v) = %d, want %d", op, got, n)
		}
	}
}

// TestFaultyAddRefuses: rules Faulty cannot apply panic.
func TestFaultyAddRefuses(t *testing.T) {
	for _, r := range []backend.Rule{
		{Op: backend.OpDelete, Nth: 1, Action: backend.ShortWrite},
		{Op: backend.OpPut, Action: backend.Crash},
		{Op: backend.OpPut, Nth: -1},
		{Op: backend.OpPut, Match: "[", Nth: 1},
		{Op: 99, Nth: 1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%+v) did not panic", r)
				}
			}()
			backend.NewFaulty(backend.NewMem()).Add(r)
		}()
	}
}
