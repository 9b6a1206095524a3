package backendtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// Run runs the conformance suite against the backends newBackend makes:
// one subtest per property, each on a new, empty backend that is closed
// when the subtest ends. The subtests run in parallel with each other
// (newBackend is called from each). The suite needs no timing: where it
// must catch a Put halfway, the Put's data stops there until the test has
// looked.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"AtomicPut", testAtomicPut},
		{"ConcurrentReaders", testConcurrentReaders},
		{"Missing", testMissing},
		{"List", testList},
		{"Delete", testDelete},
		{"InvalidNames", testInvalidNames},
		{"ShortData", testShortData},
		{"ReadAt", testReadAt},
		{"Context", testContext},
		{"Close", testClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			t.Cleanup(func() { b.Close() })
			tc.fn(t, b)
		})
	}
}

// Content returns size deterministic pseudo-random bytes for version v of
// the object name; tests of other packages may use it too.
func Content(name string, v, size int) []byte {
	b := make([]byte, size)
	rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", name, v, size))).Read(b)
	return b
}

var bg = context.Background()

func put(t *testing.T, b backend.Backend, name string, data []byte) {
	t.Helper()
	if err := backend.PutBytes(bg, b, name, data); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func get(t *testing.T, b backend.Backend, name string) []byte {
	t.Helper()
	data, err := backend.Get(bg, b, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return data
}

func wantEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one satisfying errors.Is(err, %v)", what, err, target)
	}
}

// wantAbsent checks that name is no object for Stat, Open, Get and List.
func wantAbsent(t *testing.T, b backend.Backend, name string) {
	t.Helper()
	_, err := b.Stat(bg, name)
	wantIs(t, "stat "+name, err, backend.ErrNotExist)
	o, err := b.Open(bg, name)
	if err == nil {
		o.Close()
	}
	wantIs(t, "open "+name, err, backend.ErrNotExist)
	_, err = backend.Get(bg, b, name)
	wantIs(t, "get "+name, err, backend.ErrNotExist)
	for _, info := range list(t, b, name) {
		if info.Name == name {
			t.Fatalf("list %s: yields the absent object %s", name, name)
		}
	}
}

func list(t *testing.T, b backend.Backend, prefix string) []backend.Info {
	t.Helper()
	infos, err := backend.ListAll(bg, b, prefix)
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return infos
}

func names(infos []backend.Info) []string {
	out := make([]string, 0, len(infos))
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

// gate is a Put's data that stops at the first read reaching past at
// until release is closed, having closed reached; with cancel set it
// cancels instead of stopping.
type gate struct {
	data    []byte
	at      int64
	reached chan struct{}
	release chan struct{}
	cancel  context.CancelFunc
	once    sync.Once
}

func newGate(data []byte, at int64) *gate {
	return &gate{data: data, at: at, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > g.at {
		g.once.Do(func() {
			close(g.reached)
			if g.cancel != nil {
				g.cancel()
				return
			}
			<-g.release
		})
	}
	return bytes.NewReader(g.data).ReadAt(p, off)
}

// putThroughGate starts a Put of g's data and returns once the Put is
// stuck in the middle of it.
func putThroughGate(t *testing.T, ctx context.Context, b backend.Backend, name string, g *gate) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Put(ctx, name, g, int64(len(g.data))) }()
	select {
	case <-g.reached:
	case err := <-errc:
		t.Fatalf("put %s returned (%v) without reading past the middle of its data", name, err)
	}
	return errc
}

func testRoundTrip(t *testing.T, b backend.Backend) {
	for _, size := range []int{0, 1, 100, 4096, 1<<20 - 1, 1<<20 + 1, 2<<20 + 7} {
		name := fmt.Sprintf("rt/size-%d", size)
		data := Content(name, 1, size)
		put(t, b, name, data)
		wantEqual(t, "get "+name, get(t, b, name), data)
		info, err := b.Stat(bg, name)
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if info.Name != name || info.Size != int64(size) || info.ModTime.IsZero() {
			t.Fatalf("stat %s: %+v", name, info)
		}
		o, err := b.Open(bg, name)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		if o.Size() != int64(size) {
			t.Fatalf("open %s: size %d, want %d", name, o.Size(), size)
		}
		o.Close()
	}
	// Nested, spaced, non-ASCII and long names.
	long := strings.Repeat(strings.Repeat("d", 99)+"/", 10)[:1000] + "x"
	for _, name := range []string{"a/b/c/d/e/f.bin", "top", "dir with space/ünïcode ✓.bin", "packs/ab/0123456789abcdef0123456789abcdef.pack", long} {
		data := Content(name, 1, 333)
		put(t, b, name, data)
		wantEqual(t, "get "+name, get(t, b, name), data)
	}
	// The backend keeps neither the caller's buffer nor the one Get returns.
	data := Content("own", 1, 1000)
	keep := bytes.Clone(data)
	put(t, b, "own", data)
	data[0] ^= 0xff
	got := get(t, b, "own")
	wantEqual(t, "get after the caller changed its buffer", got, keep)
	got[1] ^= 0xff
	wantEqual(t, "get after the caller changed what Get returned", get(t, b, "own"), keep)
}

func testOverwrite(t *testing.T, b backend.Backend) {
	const name = "config.json"
	v1, v2, v3 := Content(name, 1, 1000), Content(name, 2, 3000), Content(name, 3, 10)
	put(t, b, name, v1)
	o, err := b.Open(bg, name)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	put(t, b, name, v2)
	wantEqual(t, "get after overwrite", get(t, b, name), v2)
	if info, err := b.Stat(bg, name); err != nil || info.Size != 3000 {
		t.Fatalf("stat after overwrite: %+v, %v", info, err)
	}
	// An Object opened before reads the old version or fails, never a mix.
	if o.Size() != 1000 {
		t.Fatalf("object opened before the overwrite: size %d, want 1000", o.Size())
	}
	buf := make([]byte, 1000)
	if n, err := o.ReadAt(buf, 0); n == len(buf) {
		wantEqual(t, "object opened before the overwrite", buf, v1)
	} else if err == nil {
		t.Fatalf("object opened before the overwrite: read %d of 1000 bytes without an error", n)
	}
	put(t, b, name, v3) // shorter: no tail of v2 may remain
	wantEqual(t, "get after a shorter overwrite", get(t, b, name), v3)
	if got := names(list(t, b, "")); !slices.Equal(got, []string{name}) {
		t.Fatalf("list after overwrites: %q", got)
	}
}

func testAtomicPut(t *testing.T, b backend.Backend) {
	const name = "atomic/object"
	// 1.5 MiB, stopped at 3/4: Local has written its first MiB.
	v1 := Content(name, 1, 3<<19+5)
	g := newGate(v1, int64(len(v1)*3/4))
	errc := putThroughGate(t, bg, b, name, g)
	wantAbsent(t, b, name) // while its Put is halfway
	close(g.release)
	if err := <-errc; err != nil {
		t.Fatalf("put: %v", err)
	}
	wantEqual(t, "get after put", get(t, b, name), v1)

	v2 := Content(name, 2, 3<<19+1000)
	g = newGate(v2, int64(len(v2)*3/4))
	errc = putThroughGate(t, bg, b, name, g)
	wantEqual(t, "get while an overwrite is halfway", get(t, b, name), v1)
	if info, err := b.Stat(bg, name); err != nil || info.Size != int64(len(v1)) {
		t.Fatalf("stat while an overwrite is halfway: %+v, %v", info, err)
	}
	if infos := list(t, b, "atomic/"); len(infos) != 1 || infos[0].Size != int64(len(v1)) {
		t.Fatalf("list while an overwrite is halfway: %+v", infos)
	}
	close(g.release)
	if err := <-errc; err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	wantEqual(t, "get after overwrite", get(t, b, name), v2)
}

// versioned is version v of a self-describing object: its version and
// size, then Content.
func versioned(name string, v, size int) []byte {
	data := Content(name, v, size)
	binary.LittleEndian.PutUint64(data[0:], uint64(v))
	binary.LittleEndian.PutUint64(data[8:], uint64(size))
	return data
}

func testConcurrentReaders(t *testing.T, b backend.Backend) {
	const name = "cr/object"
	const versions = 6
	want := map[uint64][]byte{}
	for v := 1; v <= versions; v++ {
		want[uint64(v)] = versioned(name, v, v*64<<10+v)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 200 { // bounded: readers must not starve the writer
				select {
				case <-done:
					return
				default:
				}
				data, err := backend.Get(bg, b, name)
				if errors.Is(err, backend.ErrNotExist) {
					continue
				}
				if err != nil {
					t.Errorf("get while Puts run: %v", err)
					return
				}
				if len(data) < 16 || !bytes.Equal(data, want[binary.LittleEndian.Uint64(data)]) {
					t.Errorf("get while Puts run: %d bytes that are no version written", len(data))
					return
				}
			}
		})
	}
	for v := 1; v <= versions; v++ {
		if err := backend.PutBytes(bg, b, name, want[uint64(v)]); err != nil {
			t.Errorf("put version %d: %v", v, err)
		}
	}
	close(done)
	wg.Wait()
	wantEqual(t, "get after the last put", get(t, b, name), want[versions])
}

func testMissing(t *testing.T, b backend.Backend) {
	wantAbsent(t, b, "missing/object")
	wantAbsent(t, b, "missing")
	put(t, b, "dir/object", []byte("x"))
	// A prefix of names is no object, and neither is a name below an object.
	wantAbsent(t, b, "dir")
	wantAbsent(t, b, "dir/object/below")
	if err := b.Delete(bg, "dir"); err != nil {
		t.Fatalf("delete of the prefix dir: %v", err)
	}
	wantEqual(t, "get dir/object after deleting the prefix dir", get(t, b, "dir/object"), []byte("x"))
	if infos := list(t, b, "missing/"); len(infos) != 0 {
		t.Fatalf("list of a missing prefix: %+v", infos)
	}
}

func testList(t *testing.T, b backend.Backend) {
	all := []string{
		"a/b", "a/c/d", "a-c", "a.x", "a0", "b", "config.json",
		"packs/ab/0123.pack", "packs/ab/0123.par", "packs/a0/x.pack", "packs/b1/y.pack", "packs-old",
		"records/rp/01.rec", "quarantine/0123.pack",
	}
	for _, name := range all {
		put(t, b, name, Content(name, 1, len(name)))
	}
	sorted := slices.Clone(all)
	slices.Sort(sorted)
	for _, prefix := range []string{"", "a", "a/", "a/c", "a/c/", "a-", "packs", "packs/", "packs/a", "packs/ab/",
		"packs/ab/0123.pa", "packs/ab/0123.pack", "records/rp/", "b", "zzz", "zzz/"} {
		var want []string
		for _, n := range sorted {
			if strings.HasPrefix(n, prefix) {
				want = append(want, n)
			}
		}
		infos := list(t, b, prefix)
		if got := names(infos); !slices.Equal(got, want) {
			t.Errorf("list %q:\n got %q\nwant %q", prefix, got, want)
			continue
		}
		for _, info := range infos {
			if info.Size != int64(len(info.Name)) || info.ModTime.IsZero() {
				t.Errorf("list %q: %+v", prefix, info)
			}
		}
	}
	// A consumer may stop early.
	n := 0
	for _, err := range b.List(bg, "") {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	if got := len(list(t, b, "")); got != len(all) {
		t.Fatalf("list after an early stop: %d objects, want %d", got, len(all))
	}
}

func testDelete(t *testing.T, b backend.Backend) {
	put(t, b, "del/x", []byte("x"))
	put(t, b, "del/y", []byte("y"))
	for range 2 { // idempotent
		if err := b.Delete(bg, "del/x"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		wantAbsent(t, b, "del/x")
	}
	if got := names(list(t, b, "del/")); !slices.Equal(got, []string{"del/y"}) {
		t.Fatalf("list after delete: %q", got)
	}
	if err := b.Delete(bg, "never/was/here"); err != nil {
		t.Fatalf("delete of a missing object: %v", err)
	}
	put(t, b, "del/x", []byte("again"))
	wantEqual(t, "get after put, delete, put", get(t, b, "del/x"), []byte("again"))
}

func testInvalidNames(t *testing.T, b backend.Backend) {
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "../a", "a/..", "a/../b", "./a", "a/./b", ".hidden",
		"a/.b", "a\x00b", "a\nb", "a\x7fb", "\xff\xfe", strings.Repeat("x", backend.MaxNameLen+1)}
	for _, name := range bad {
		err := backend.PutBytes(bg, b, name, []byte("data"))
		wantIs(t, fmt.Sprintf("put %q", name), err, backend.ErrInvalidName)
		_, err = b.Open(bg, name)
		wantIs(t, fmt.Sprintf("open %q", name), err, backend.ErrInvalidName)
		_, err = b.Stat(bg, name)
		wantIs(t, fmt.Sprintf("stat %q", name), err, backend.ErrInvalidName)
		_, err = backend.Get(bg, b, name)
		wantIs(t, fmt.Sprintf("get %q", name), err, backend.ErrInvalidName)
		err = b.Delete(bg, name)
		wantIs(t, fmt.Sprintf("delete %q", name), err, backend.ErrInvalidName)
	}
	for _, prefix := range []string{"/", "/a", "a//", "../", ".", "a/.", "a\x00", strings.Repeat("x", backend.MaxNameLen)} {
		_, err := backend.ListAll(bg, b, prefix)
		wantIs(t, fmt.Sprintf("list %q", prefix), err, backend.ErrInvalidName)
	}
	if infos := list(t, b, ""); len(infos) != 0 {
		t.Fatalf("invalid names stored something: %+v", infos)
	}
}

func testShortData(t *testing.T, b backend.Backend) {
	err := b.Put(bg, "short/new", bytes.NewReader(make([]byte, 10)), 20)
	if err == nil {
		t.Fatal("put of 10 bytes as 20: no error")
	}
	wantAbsent(t, b, "short/new")
	if err := b.Put(bg, "short/new", bytes.NewReader(nil), -1); err == nil {
		t.Fatal("put with size -1: no error")
	}
	wantAbsent(t, b, "short/new")
	old := Content("short/old", 1, 5000)
	put(t, b, "short/old", old)
	if err := b.Put(bg, "short/old", bytes.NewReader(make([]byte, 100)), 200); err == nil {
		t.Fatal("overwrite with short data: no error")
	}
	wantEqual(t, "get after a failed overwrite", get(t, b, "short/old"), old)
	// Data longer than size: only size bytes are stored.
	if err := b.Put(bg, "short/prefix", bytes.NewReader(old), 100); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "get of a put of the first 100 bytes", get(t, b, "short/prefix"), old[:100])
}

func testReadAt(t *testing.T, b backend.Backend) {
	const size = 10000
	data := Content("ra", 1, size)
	put(t, b, "ra", data)
	o, err := b.Open(bg, "ra")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off, n int64
		want   int
		eof    string // "no", "yes", "may"
	}{
		{0, 100, 100, "no"},
		{1234, 4000, 4000, "no"},
		{size - 10, 10, 10, "may"},
		{size - 5, 10, 5, "yes"},
		{0, size + 1, size, "yes"},
		{size, 1, 0, "yes"},
		{size + 100, 1, 0, "yes"},
		{0, 0, 0, "no"},
		{size / 2, 0, 0, "no"},
	} {
		buf := make([]byte, c.n)
		n, err := o.ReadAt(buf, c.off)
		what := fmt.Sprintf("ReadAt(%d bytes, %d)", c.n, c.off)
		if n != c.want {
			t.Fatalf("%s: %d bytes (%v), want %d", what, n, err, c.want)
		}
		wantEqual(t, what, buf[:n], data[min(c.off, size):min(c.off, size)+int64(n)])
		switch {
		case c.eof == "yes" && err != io.EOF, c.eof == "no" && err != nil, c.eof == "may" && err != nil && err != io.EOF:
			t.Fatalf("%s: error %v (io.EOF %s)", what, err, c.eof)
		}
	}
	if _, err := o.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at a negative offset: no error")
	}
	// Concurrent readers of one Object.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for range 50 {
				off, n := r.IntN(size), 1+r.IntN(2000)
				buf := make([]byte, n)
				got, err := o.ReadAt(buf, int64(off))
				if got != min(n, size-off) || (got < n && err != io.EOF) || !bytes.Equal(buf[:got], data[off:off+got]) {
					t.Errorf("concurrent ReadAt(%d, %d): %d bytes, %v", n, off, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := o.ReadAt(make([]byte, 1), 0); err == nil {
		t.Fatal("ReadAt after Close: no error")
	}
}

func testContext(t *testing.T, b backend.Backend) {
	done, cancel := context.WithCancel(bg)
	cancel()
	err := backend.PutBytes(done, b, "ctx/new", []byte("data"))
	wantIs(t, "put with a cancelled context", err, context.Canceled)
	wantAbsent(t, b, "ctx/new")

	put(t, b, "ctx/old", []byte("old"))
	wantIs(t, "delete with a cancelled context", b.Delete(done, "ctx/old"), context.Canceled)
	wantEqual(t, "get after a cancelled delete", get(t, b, "ctx/old"), []byte("old"))
	_, err = b.Open(done, "ctx/old")
	wantIs(t, "open with a cancelled context", err, context.Canceled)
	_, err = b.Stat(done, "ctx/old")
	wantIs(t, "stat with a cancelled context", err, context.Canceled)
	_, err = backend.ListAll(done, b, "ctx/")
	wantIs(t, "list with a cancelled context", err, context.Canceled)
	_, err = backend.Get(done, b, "ctx/old")
	wantIs(t, "get with a cancelled context", err, context.Canceled)

	// Cancelled while its data is being read: nothing is stored, and an
	// overwrite leaves the old object.
	for _, name := range []string{"ctx/new", "ctx/old"} {
		ctx, cancel := context.WithCancel(bg)
		data := Content(name, 2, 3<<19)
		g := newGate(data, int64(len(data)/2))
		g.cancel = cancel
		err := b.Put(ctx, name, g, int64(len(data)))
		wantIs(t, "put cancelled halfway", err, context.Canceled)
	}
	wantAbsent(t, b, "ctx/new")
	wantEqual(t, "get after an overwrite cancelled halfway", get(t, b, "ctx/old"), []byte("old"))
}

func testClose(t *testing.T, b backend.Backend) {
	put(t, b, "x", []byte("data"))
	o, err := b.Open(bg, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantIs(t, "put after close", backend.PutBytes(bg, b, "y", []byte("y")), fs.ErrClosed)
	_, err = b.Open(bg, "x")
	wantIs(t, "open after close", err, fs.ErrClosed)
	_, err = b.Stat(bg, "x")
	wantIs(t, "stat after close", err, fs.ErrClosed)
	_, err = backend.ListAll(bg, b, "")
	wantIs(t, "list after close", err, fs.ErrClosed)
	wantIs(t, "delete after close", b.Delete(bg, "x"), fs.ErrClosed)
	buf := make([]byte, 4)
	if n, err := o.ReadAt(buf, 0); n != 4 || string(buf) != "data" {
		t.Fatalf("read of an object opened before close: %q, %v", buf[:n], err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
