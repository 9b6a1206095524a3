package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"path"
	"sync"
	"sync/atomic"
)

// Op is a kind of operation, for Faulty's rules and counters.
type Op uint8

const (
	// OpAny matches every kind of operation (in a Rule, and in Count).
	OpAny    Op = iota
	OpPut       // Backend.Put
	OpOpen      // Backend.Open
	OpRead      // one ReadAt of an open Object
	OpStat      // Backend.Stat
	OpList      // one List call, however many objects it yields
	OpDelete    // Backend.Delete
	numOps
)

var opNames = [numOps]string{"any", "put", "open", "read", "stat", "list", "delete"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Action is what a Rule does to the operation it fires on.
type Action uint8

const (
	// Fail: the operation fails with the rule's error and has no effect.
	Fail Action = iota
	// FailAfter: the operation takes effect, then fails with the rule's
	// error, as when the reply of a remote store is lost. A read returns
	// the bytes it read with the error.
	FailAfter
	// ShortWrite (Put only): only the first half of the data (size/2
	// bytes) is stored, as an object readers see, and Put fails. It models
	// a broken backend, one without atomic writes, to prove that readers
	// detect truncation; no correct backend leaves a partial object.
	ShortWrite
	// Crash: the backend crashes as soon as the operation has completed,
	// with its effect and its result (see Faulty.Crash).
	Crash
)

// Rule injects a fault into the operations that match it.
type Rule struct {
	// Op is the kind of operation; OpAny matches every kind.
	Op Op
	// Match is a path.Match pattern the object's name (List: the prefix)
	// must match, such as "packs/*/*.pack"; "" matches every name.
	Match string
	// Nth makes the rule fire once, on the Nth matching operation counted
	// from when the rule was added (1-based). 0 fires on every matching
	// operation (not with Crash).
	Nth int
	// Action is what happens; the zero value is Fail.
	Action Action
	// Err is the error of Fail, FailAfter and ShortWrite; nil means
	// ErrInjected. The operation's error wraps it.
	Err error
}

var (
	// ErrInjected is the error of a Rule that names none.
	ErrInjected = errors.New("injected fault")
	// ErrCrashed is the error of every operation of a crashed Faulty.
	ErrCrashed = errors.New("backend crashed")
)

// Faulty is a Backend for tests that forwards to an inner one and injects
// faults by deterministic, composable rules:
//
//   - FailNth, and Add with any Rule: the Nth operation of a kind (and,
//     optionally, whose name matches a pattern) fails without effect,
//     takes effect and then fails, or stores a short object;
//   - FlipBitOnRead: reads see a bit of an object flipped, the stored
//     bytes stay intact;
//   - Crash and CrashAfter: the process "dies".
//
// The crash model. Put and Delete are durable when they return, so a
// crash keeps exactly the operations that returned before it: from the
// crash on, every operation (reads of Objects opened earlier included)
// fails with ErrCrashed and has no effect, and a Put or Delete still in
// flight is rolled back (it returns ErrCrashed and the object is as it was
// before it began: absent, or its previous content). For that, each Put
// and Delete through Faulty first reads the object it changes (one Open
// more, and a read of the old content when there is one), and Puts and
// Deletes of one name run one at a time. Crash returns, and the
// operation that triggers a CrashAfter completes, only once everything in
// flight is rolled back; the inner backend then holds what a restarted
// process finds, and the test goes on with it (Close of a crashed Faulty
// leaves it open). On a local filesystem this is what a power cut does to
// writes not yet fsync'd; a rolled back Put may have been visible to
// readers for a moment, as a renamed but not yet synced file is.
//
// Counting. Count and Ops cover every call since NewFaulty, failed ones and
// those after a crash included; calls with an invalid name or prefix are
// refused before they are counted. Each rule counts the operations that
// match it from when it is added. When operations run concurrently, their
// order is the order in which they reach Faulty; sequential code is
// deterministic. A test runs a job once without faults to learn its steps
// (Ops, Count), then once per step with CrashAfter or FailNth at that step.
//
// When several rules fire on one operation, Fail wins over ShortWrite,
// which wins over FailAfter; a Crash rule crashes after the operation
// whatever it did.
type Faulty struct {
	inner Backend

	mu      sync.Mutex
	settled sync.Cond // signalled when active drops
	rules   []*rule
	flips   []flip
	counts  [numOps]int
	log     []string
	active  int   // Puts and Deletes begun before the crash, not yet settled
	undoErr error // failures to roll back, for Err
	down    atomic.Bool

	names nameLocks
}

type rule struct {
	Rule
	seen  int
	spent bool
}

type flip struct {
	match string
	off   int64
	bit   uint
}

var _ Backend = (*Faulty)(nil)

// NewFaulty returns a Faulty over inner, with no rules.
func NewFaulty(inner Backend) *Faulty {
	f := &Faulty{inner: inner}
	f.settled.L = &f.mu
	return f
}

// Add adds a rule. It panics on a rule it cannot apply (a mistake in the
// test): an unknown Op or Action, a negative Nth, ShortWrite on another
// operation than Put, Crash with Nth 0, or a malformed pattern.
func (f *Faulty) Add(r Rule) {
	switch {
	case r.Op >= numOps:
		panic(fmt.Sprintf("backend.Faulty: rule with unknown %v", r.Op))
	case r.Action > Crash:
		panic(fmt.Sprintf("backend.Faulty: rule with unknown action %d", r.Action))
	case r.Nth < 0:
		panic(fmt.Sprintf("backend.Faulty: rule with Nth %d", r.Nth))
	case r.Action == ShortWrite && r.Op != OpPut:
		panic("backend.Faulty: ShortWrite applies to OpPut only")
	case r.Action == Crash && r.Nth == 0:
		panic("backend.Faulty: a Crash rule needs Nth")
	}
	if _, err := path.Match(r.Match, ""); err != nil {
		panic(fmt.Sprintf("backend.Faulty: pattern %q: %v", r.Match, err))
	}
	f.mu.Lock()
	f.rules = append(f.rules, &rule{Rule: r})
	f.mu.Unlock()
}

// FailNth makes the nth operation of kind op from now (1-based) fail with
// err (nil: ErrInjected) without effect.
func (f *Faulty) FailNth(op Op, n int, err error) {
	f.Add(Rule{Op: op, Nth: n, Err: err})
}

// ShortWriteNth makes the nth Put from now store only the first half of its
// data, visible to readers, and fail with ErrInjected (see ShortWrite).
func (f *Faulty) ShortWriteNth(n int) {
	f.Add(Rule{Op: OpPut, Nth: n, Action: ShortWrite})
}

// CrashAfter crashes the backend as soon as the nth operation of kind op
// from now has completed (n = 0: now). That operation keeps its effect
// and its result; everything after it fails with ErrCrashed.
func (f *Faulty) CrashAfter(op Op, n int) {
	if n == 0 {
		f.Crash()
		return
	}
	f.Add(Rule{Op: op, Nth: n, Action: Crash})
}

// FlipBitOnRead makes every read of an object whose name matches pattern
// (path.Match; "" matches all) see bit (0–7) of the byte at off flipped;
// a negative off counts from the end of the object (-1 is its last byte).
// The stored object is not changed.
func (f *Faulty) FlipBitOnRead(pattern string, off int64, bit uint) {
	if bit > 7 {
		panic(fmt.Sprintf("backend.Faulty: bit %d of a byte", bit))
	}
	if _, err := path.Match(pattern, ""); err != nil {
		panic(fmt.Sprintf("backend.Faulty: pattern %q: %v", pattern, err))
	}
	f.mu.Lock()
	f.flips = append(f.flips, flip{pattern, off, bit})
	f.mu.Unlock()
}

// ClearRules removes every rule and bit flip. A crash stays.
func (f *Faulty) ClearRules() {
	f.mu.Lock()
	f.rules, f.flips = nil, nil
	f.mu.Unlock()
}

// Crash crashes the backend now (see the crash model in Faulty's comment)
// and returns once every Put and Delete in flight is rolled back.
func (f *Faulty) Crash() {
	f.mu.Lock()
	f.crashLocked()
	f.mu.Unlock()
}

// crashLocked marks the backend down and waits, releasing f.mu meanwhile,
// until no Put or Delete begun before is in flight.
func (f *Faulty) crashLocked() {
	f.down.Store(true)
	for f.active > 0 {
		f.settled.Wait()
	}
}

// Crashed reports whether the backend has crashed.
func (f *Faulty) Crashed() bool { return f.down.Load() }

// Err reports failures to roll back a Put or Delete in flight at a crash
// (the inner backend then holds its effect); nil when there were none.
func (f *Faulty) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.undoErr
}

// Count returns how many operations of kind op (OpAny: of every kind) were
// called since NewFaulty.
func (f *Faulty) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op == OpAny {
		return len(f.log)
	}
	if op >= numOps {
		return 0
	}
	return f.counts[op]
}

// Ops returns every operation called since NewFaulty, in order, as "<op>
// <name>": "put packs/ab/x.pack", "read packs/ab/x.pack", "list records/".
func (f *Faulty) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// String implements Backend.
func (f *Faulty) String() string { return "faulty " + f.inner.String() }

// Close implements Backend. Once crashed, it leaves the inner backend
// open: the test inspects it as the restarted process would.
func (f *Faulty) Close() error {
	if f.down.Load() {
		return nil
	}
	return f.inner.Close()
}

// verdict is what the rules decided for one operation.
type verdict struct {
	crashed  bool  // the backend was down when the operation began
	fail     error // Fail
	after    error // FailAfter
	short    error // ShortWrite
	crash    bool  // crash when the operation completes
	mutation bool  // a Put or Delete, counted in active
}

// begin counts and logs an operation and applies the rules to it.
func (f *Faulty) begin(op Op, name string) verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[op]++
	f.log = append(f.log, op.String()+" "+name)
	if f.down.Load() {
		return verdict{crashed: true}
	}
	var v verdict
	for _, r := range f.rules {
		if r.spent || (r.Op != OpAny && r.Op != op) || !matchName(r.Match, name) {
			continue
		}
		r.seen++
		if r.Nth != 0 {
			if r.seen != r.Nth {
				continue
			}
			r.spent = true
		}
		err := r.Err
		if err == nil {
			err = ErrInjected
		}
		switch r.Action {
		case Fail:
			v.fail = firstErr(v.fail, err)
		case FailAfter:
			v.after = firstErr(v.after, err)
		case ShortWrite:
			v.short = firstErr(v.short, err)
		case Crash:
			v.crash = true
		}
	}
	if op == OpPut || op == OpDelete {
		v.mutation = true
		f.active++
	}
	return v
}

// firstErr returns a unless it is nil (the earliest rule's error wins).
func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func matchName(pattern, name string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

// end settles an operation that began with v (not crashed). A Put or
// Delete that the crash overtook is rolled back by undo; end reports
// whether that happened. An operation a Crash rule fired on crashes the
// backend.
func (f *Faulty) end(v verdict, undo func() error) (rolledBack bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v.mutation && f.down.Load() {
		f.mu.Unlock()
		err := undo()
		f.mu.Lock()
		if err != nil {
			f.undoErr = errors.Join(f.undoErr, err)
		}
		f.active--
		f.settled.Broadcast()
		return true
	}
	if v.mutation {
		f.active--
		f.settled.Broadcast()
	}
	if v.crash {
		f.crashLocked()
	}
	return false
}

func crashed(op, name string) error {
	return fmt.Errorf("%s %s: %w", op, name, ErrCrashed)
}

// image is an object as it was before a Put or Delete, to roll it back.
type image struct {
	exists bool
	data   []byte
}

func (f *Faulty) capture(ctx context.Context, name string) (*image, error) {
	b, err := Get(ctx, f.inner, name)
	switch {
	case err == nil:
		return &image{exists: true, data: b}, nil
	case errors.Is(err, ErrNotExist):
		return &image{}, nil
	}
	return nil, fmt.Errorf("keep the object as it was, for a crash: %w", err)
}

// rollback returns a func that restores *img (when it was captured).
func (f *Faulty) rollback(name string, img **image) func() error {
	return func() error {
		if *img == nil {
			return nil
		}
		ctx := context.Background()
		var err error
		if (*img).exists {
			err = PutBytes(ctx, f.inner, name, (*img).data)
		} else {
			err = f.inner.Delete(ctx, name)
		}
		if err != nil {
			return fmt.Errorf("roll back %s after the crash: %w", name, err)
		}
		return nil
	}
}

// Put implements Backend.
func (f *Faulty) Put(ctx context.Context, name string, data io.ReaderAt, size int64) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	if err := checkSize("put", name, size); err != nil {
		return err
	}
	defer f.names.lock(name)()
	v := f.begin(OpPut, name)
	if v.crashed {
		return crashed("put", name)
	}
	var img *image
	err := f.put(ctx, name, guarded{data, f}, size, v, &img)
	if f.end(v, f.rollback(name, &img)) {
		return crashed("put", name)
	}
	return err
}

func (f *Faulty) put(ctx context.Context, name string, data io.ReaderAt, size int64, v verdict, img **image) error {
	if v.fail != nil {
		return fmt.Errorf("put %s: %w", name, v.fail)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	var err error
	if *img, err = f.capture(ctx, name); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if v.short != nil {
		k := size / 2
		if err := f.inner.Put(ctx, name, io.NewSectionReader(data, 0, k), k); err != nil {
			return err
		}
		return fmt.Errorf("put %s: short write, %d of %d bytes stored: %w", name, k, size, v.short)
	}
	if err := f.inner.Put(ctx, name, data, size); err != nil {
		return err
	}
	if v.after != nil {
		return fmt.Errorf("put %s: %w", name, v.after)
	}
	return nil
}

// guarded is a Put's data that stops yielding bytes once the backend has
// crashed, so an inner Put in flight gives up early.
type guarded struct {
	r io.ReaderAt
	f *Faulty
}

func (g guarded) ReadAt(p []byte, off int64) (int, error) {
	if g.f.down.Load() {
		return 0, ErrCrashed
	}
	return g.r.ReadAt(p, off)
}

// Delete implements Backend.
func (f *Faulty) Delete(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	defer f.names.lock(name)()
	v := f.begin(OpDelete, name)
	if v.crashed {
		return crashed("delete", name)
	}
	var img *image
	err := func() error {
		if v.fail != nil {
			return fmt.Errorf("delete %s: %w", name, v.fail)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		var err error
		if img, err = f.capture(ctx, name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		if err := f.inner.Delete(ctx, name); err != nil {
			return err
		}
		if v.after != nil {
			return fmt.Errorf("delete %s: %w", name, v.after)
		}
		return nil
	}()
	if f.end(v, f.rollback(name, &img)) {
		return crashed("delete", name)
	}
	return err
}

// Open implements Backend.
func (f *Faulty) Open(ctx context.Context, name string) (Object, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	v := f.begin(OpOpen, name)
	if v.crashed {
		return nil, crashed("open", name)
	}
	defer f.end(v, nil)
	if v.fail != nil {
		return nil, fmt.Errorf("open %s: %w", name, v.fail)
	}
	o, err := f.inner.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	if v.after != nil {
		o.Close()
		return nil, fmt.Errorf("open %s: %w", name, v.after)
	}
	return &faultyObject{f: f, name: name, o: o}, nil
}

// faultyObject applies the rules and bit flips to each read.
type faultyObject struct {
	f    *Faulty
	name string
	o    Object
}

func (o *faultyObject) ReadAt(p []byte, off int64) (int, error) {
	v := o.f.begin(OpRead, o.name)
	if v.crashed {
		return 0, crashed("read", o.name)
	}
	defer o.f.end(v, nil)
	if v.fail != nil {
		return 0, fmt.Errorf("read %s: %w", o.name, v.fail)
	}
	n, err := o.o.ReadAt(p, off)
	o.f.flipBits(o.name, o.o.Size(), p[:n], off)
	if v.after != nil {
		err = fmt.Errorf("read %s: %w", o.name, v.after)
	}
	return n, err
}

func (o *faultyObject) Size() int64  { return o.o.Size() }
func (o *faultyObject) Close() error { return o.o.Close() }

func (o *faultyObject) Prefetch(off, n int64) {
	if p, ok := o.o.(Prefetcher); ok {
		p.Prefetch(off, n)
	}
}

// flipBits applies the bit flips to p, read at off from the object name of
// size bytes.
func (f *Faulty) flipBits(name string, size int64, p []byte, off int64) {
	f.mu.Lock()
	flips := f.flips
	f.mu.Unlock()
	for _, fl := range flips {
		at := fl.off
		if at < 0 {
			at += size
		}
		if at >= off && at < off+int64(len(p)) && matchName(fl.match, name) {
			p[at-off] ^= 1 << fl.bit
		}
	}
}

// Stat implements Backend.
func (f *Faulty) Stat(ctx context.Context, name string) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, fmt.Errorf("stat: %w", err)
	}
	v := f.begin(OpStat, name)
	if v.crashed {
		return Info{}, crashed("stat", name)
	}
	defer f.end(v, nil)
	if v.fail != nil {
		return Info{}, fmt.Errorf("stat %s: %w", name, v.fail)
	}
	info, err := f.inner.Stat(ctx, name)
	if err == nil && v.after != nil {
		err = fmt.Errorf("stat %s: %w", name, v.after)
	}
	return info, err
}

// List implements Backend.
func (f *Faulty) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		if err := checkPrefix(prefix); err != nil {
			yield(Info{}, fmt.Errorf("list: %w", err))
			return
		}
		v := f.begin(OpList, prefix)
		if v.crashed {
			yield(Info{}, crashed("list", prefix))
			return
		}
		defer f.end(v, nil)
		if v.fail != nil {
			yield(Info{}, fmt.Errorf("list %s: %w", prefix, v.fail))
			return
		}
		for info, err := range f.inner.List(ctx, prefix) {
			if err == nil && f.down.Load() {
				err = crashed("list", prefix)
			}
			if !yield(info, err) || err != nil {
				return
			}
		}
		if v.after != nil {
			yield(Info{}, fmt.Errorf("list %s: %w", prefix, v.after))
		}
	}
}

// nameLocks serialises the Puts and Deletes of one name, so that each can
// be rolled back to the object as it found it.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks name and returns the func that unlocks it.
func (n *nameLocks) lock(name string) func() {
	n.mu.Lock()
	if n.m == nil {
		n.m = map[string]*nameLock{}
	}
	l := n.m[name]
	if l == nil {
		l = &nameLock{}
		n.m[name] = l
	}
	l.refs++
	n.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		n.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(n.m, name)
		}
		n.mu.Unlock()
	}
}
