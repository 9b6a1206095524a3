package backend_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// The crash test re-runs this test binary as a child that writes objects
// until it is killed (AHVFS_BACKEND_CRASH_CHILD names its directory).
func TestMain(m *testing.M) {
	if dir := os.Getenv("AHVFS_BACKEND_CRASH_CHILD"); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv("AHVFS_BACKEND_CRASH_SEED"), 10, 64)
		err := crashChild(dir, seed)
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// files lists every file under dir (not directories), relative, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	if _, err := backend.OpenLocal(filepath.Join(dir, "missing")); err == nil {
		t.Error("OpenLocal of a missing directory: no error")
	}
	writeFile(t, filepath.Join(dir, "file"), nil)
	if _, err := backend.OpenLocal(filepath.Join(dir, "file")); err == nil {
		t.Error("OpenLocal of a file: no error")
	}
	t.Chdir(dir)
	l, err := backend.OpenLocal(".")
	if err != nil {
		t.Fatal(err)
	}
	a, err1 := os.Stat(l.Dir())
	b, err2 := os.Stat(dir)
	if err1 != nil || err2 != nil || !os.SameFile(a, b) || !filepath.IsAbs(l.Dir()) {
		t.Errorf("Dir() = %s, want %s", l.Dir(), dir)
	}
	if l.String() != "local "+l.Dir() {
		t.Errorf("String() = %s", l.String())
	}
}

// TestLocalLayout: objects are plain files of the repository layout, so
// files written before the backend existed are objects, and a Put leaves
// nothing else behind.
func TestLocalLayout(t *testing.T) {
	l := newLocal(t)
	dir := l.Dir()
	writeFile(t, filepath.Join(dir, "config.json"), []byte("{}"))
	writeFile(t, filepath.Join(dir, "packs", "cd", "old.pack"), []byte("old pack"))
	put(t, l, "packs/ab/new.pack", []byte("new pack"))
	put(t, l, "records/rp/x.rec", []byte("record"))

	if got, want := files(t, dir), []string{"config.json", "packs/ab/new.pack", "packs/cd/old.pack", "records/rp/x.rec"}; !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "packs", "ab", "new.pack"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("object mode %v, want 0600", fi.Mode())
	}
	if fi, err := os.Stat(filepath.Join(dir, "records", "rp")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v, %v (want mode 0700)", fi.Mode(), err)
	}
	wantObjects(t, l, "config.json={}", "packs/ab/new.pack=new pack", "packs/cd/old.pack=old pack", "records/rp/x.rec=record")

	o, err := l.Open(ctx, "packs/cd/old.pack")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	p, ok := o.(backend.Prefetcher)
	if !ok {
		t.Fatal("a local object is no Prefetcher")
	}
	p.Prefetch(0, o.Size())
}

// TestLocalSkipsNonObjects: temporary files, hidden entries and other
// non-objects are not listed; a failed Put leaves no file.
func TestLocalSkipsNonObjects(t *testing.T) {
	l := newLocal(t)
	dir := l.Dir()
	put(t, l, "packs/ab/x.pack", []byte("x"))
	for _, f := range []string{"packs/ab/.x.pack.tmp-123", ".hidden/obj", "snapshots/.tmp-5/file", ".lock"} {
		writeFile(t, filepath.Join(dir, filepath.FromSlash(f)), []byte("not an object"))
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	wantObjects(t, l, "packs/ab/x.pack=x")
	before := files(t, dir)
	if err := l.Put(ctx, "packs/ab/y.pack", bytes.NewReader([]byte("short")), 10); err == nil {
		t.Fatal("put of short data: no error")
	}
	if err := l.Put(ctx, "packs/ef/z.pack", bytes.NewReader([]byte("short")), 10); err == nil {
		t.Fatal("put of short data: no error")
	}
	if got := files(t, dir); !slices.Equal(got, before) {
		t.Fatalf("files after failed Puts %q, want %q", got, before)
	}
}

// TestLocalSweepTemp: SweepTemp removes leftover temporary files under its
// prefix, of its age, and nothing else.
func TestLocalSweepTemp(t *testing.T) {
	l := newLocal(t)
	dir := l.Dir()
	put(t, l, "packs/ab/x.pack", []byte("x"))
	put(t, l, "records/rp/r.rec", []byte("r"))
	old := time.Now().Add(-2 * time.Hour)
	for _, f := range []string{
		"packs/ab/.x.pack.tmp-123", "packs/ab/.y.par.tmp-9", "packs/.zz.tmp-1", // swept by "packs/"
		"records/rp/.r.rec.tmp-1", "records/rp/.s.rec.tmp-2", // one old, one new
		"journal/job/.obj.json.tmp-7", ".config.json.tmp-3", // outside the prefixes swept
	} {
		writeFile(t, filepath.Join(dir, filepath.FromSlash(f)), []byte("partial"))
	}
	if err := os.Chtimes(filepath.Join(dir, "records", "rp", ".r.rec.tmp-1"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "packs", ".d.tmp-1"), 0o700); err != nil { // a directory: kept
		t.Fatal(err)
	}
	if n, err := l.SweepTemp(ctx, "packs/", 0); err != nil || n != 3 {
		t.Fatalf("SweepTemp(packs/): %d, %v; want 3", n, err)
	}
	if n, err := l.SweepTemp(ctx, "records/", time.Hour); err != nil || n != 1 {
		t.Fatalf("SweepTemp(records/, 1h): %d, %v; want 1", n, err)
	}
	want := []string{".config.json.tmp-3", "journal/job/.obj.json.tmp-7", "packs/ab/x.pack", "records/rp/.s.rec.tmp-2", "records/rp/r.rec"}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files after sweeping %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "packs", ".d.tmp-1")); err != nil {
		t.Fatalf("a directory named like a temporary file was removed: %v", err)
	}
	if _, err := l.SweepTemp(ctx, "../", 0); !errors.Is(err, backend.ErrInvalidName) {
		t.Fatalf("SweepTemp(../): %v", err)
	}
}

// TestLocalNameConflicts: a name cannot be both an object and a directory
// of names on a filesystem; such a Put fails and changes nothing.
func TestLocalNameConflicts(t *testing.T) {
	l := newLocal(t)
	put(t, l, "a", []byte("a"))
	put(t, l, "c/d", []byte("d"))
	if err := backend.PutBytes(ctx, l, "a/b", []byte("b")); err == nil {
		t.Error("put a/b over the object a: no error")
	}
	if err := backend.PutBytes(ctx, l, "c", []byte("c")); err == nil {
		t.Error("put c over the names c/...: no error")
	}
	wantObjects(t, l, "a=a", "c/d=d")
}

// TestLocalSymlinks: directories moved elsewhere behind a symbolic link
// (packs on another disk) keep working.
func TestLocalSymlinks(t *testing.T) {
	l := newLocal(t)
	elsewhere := t.TempDir()
	err := os.Symlink(elsewhere, filepath.Join(l.Dir(), "packs"))
	testenv.RequireOrSkip(t, err == nil, fmt.Sprintf("symbolic links (%v)", err))
	put(t, l, "packs/ab/x.pack", []byte("x"))
	put(t, l, "config.json", []byte("{}"))
	if _, err := os.Stat(filepath.Join(elsewhere, "ab", "x.pack")); err != nil {
		t.Fatalf("the object is not behind the link: %v", err)
	}
	wantObjects(t, l, "config.json={}", "packs/ab/x.pack=x")
}

// crashObject is a self-checking object: its length, bytes of body, and
// the CRC-32C of all that.
func crashObject(body []byte) []byte {
	data := binary.LittleEndian.AppendUint64(nil, uint64(8+len(body)+4))
	data = append(data, body...)
	return binary.LittleEndian.AppendUint32(data, crc32.Checksum(data, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkCrashObject reports what is wrong with an object a killed child
// left, if anything: a part of an object, or parts of two, fail it.
func checkCrashObject(data []byte) error {
	if len(data) < 12 {
		return fmt.Errorf("%d bytes, shorter than header and checksum", len(data))
	}
	if n := binary.LittleEndian.Uint64(data); n != uint64(len(data)) {
		return fmt.Errorf("%d bytes, its header says %d", len(data), n)
	}
	if sum := binary.LittleEndian.Uint32(data[len(data)-4:]); sum != crc32.Checksum(data[:len(data)-4], castagnoli) {
		return errors.New("checksum mismatch")
	}
	return nil
}

// crashChild writes, overwrites and deletes objects under dir from three
// goroutines until it is killed. It prints "ready" first, then a "." after
// each operation.
func crashChild(dir string, seed uint64) error {
	l, err := backend.OpenLocal(dir)
	if err != nil {
		return err
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	pool := make([]byte, 256<<10)
	rand.NewChaCha8(key).Read(pool)
	fmt.Println("ready")
	errc := make(chan error, 3)
	for g := range 3 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(g+1)))
			for {
				name := fmt.Sprintf("objs/%d/%02x/o%d", g, r.IntN(4), r.IntN(6))
				var err error
				if r.IntN(8) == 0 {
					err = l.Delete(ctx, name)
				} else {
					off := r.IntN(len(pool) / 2)
					err = backend.PutBytes(ctx, l, name, crashObject(pool[off:off+r.IntN(len(pool)/2)]))
				}
				if err == nil {
					_, err = os.Stdout.Write([]byte{'.'})
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	return <-errc
}

// killedPuts starts a child writing into l and kills it (SIGKILL) once it
// has done ops operations and wait has passed: a moment chosen by the
// child's progress, so that a slow machine does not turn every kill into
// one at start-up. Then it checks every object the child left and sweeps
// the temporary files; it returns how many it swept.
func killedPuts(child string, l *backend.Local, seed uint64, ops int, wait time.Duration) (int, error) {
	cmd := exec.Command(child, "-test.run=^$")
	cmd.Env = append(os.Environ(), "AHVFS_BACKEND_CRASH_CHILD="+l.Dir(), fmt.Sprintf("AHVFS_BACKEND_CRASH_SEED=%d", seed))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	out := bufio.NewReader(stdout)
	line, _ := out.ReadString('\n')
	if line == "ready\n" {
		io.CopyN(io.Discard, out, int64(ops))
		time.Sleep(wait)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if line != "ready\n" || stderr.Len() > 0 {
		return 0, fmt.Errorf("child: %q, stderr: %s", line, stderr.String())
	}
	for info, err := range l.List(ctx, "") {
		if err != nil {
			return 0, err
		}
		data, err := backend.Get(ctx, l, info.Name)
		if err != nil {
			return 0, err
		}
		if err := checkCrashObject(data); err != nil {
			return 0, fmt.Errorf("%s: %w", info.Name, err)
		}
		if info.Size != int64(len(data)) {
			return 0, fmt.Errorf("%s: listed with %d bytes, holds %d", info.Name, info.Size, len(data))
		}
	}
	swept, err := l.SweepTemp(ctx, "objs/", 0)
	if err != nil {
		return 0, err
	}
	err = filepath.WalkDir(l.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".") {
			err = fmt.Errorf("%s is left after the sweep", p)
		}
		return err
	})
	return swept, err
}

// TestLocalKilledPuts: a process killed (SIGKILL) at random moments while
// it writes, overwrites and deletes leaves every object absent or
// complete, and temporary files that SweepTemp removes. A kill tests
// atomicity and cleanup, not durability across a power cut (the page
// cache survives a kill); Faulty's crash model covers that at the
// interface. Ten directories are worked on at once, each by five children
// in turn, so that slow process starts (-race) overlap.
func TestLocalKilledPuts(t *testing.T) {
	testenv.Short(t, "starts 50 processes")
	t.Parallel()
	const dirs, kills = 10, 5
	child := childBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var swept, objects atomic.Int64
	var wg sync.WaitGroup
	for d := range dirs {
		l := newLocal(t)
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(d)))
			for i := range kills {
				n, err := killedPuts(child, l, r.Uint64(), r.IntN(12), time.Duration(r.IntN(3000))*time.Microsecond)
				if err != nil {
					t.Errorf("directory %d, kill %d: %v", d, i, err)
					return
				}
				swept.Add(int64(n))
			}
			infos, err := backend.ListAll(ctx, l, "")
			if err != nil {
				t.Error(err)
			}
			objects.Add(int64(len(infos)))
		})
	}
	wg.Wait()
	t.Logf("%d kills: %d objects left, %d temporary files swept", dirs*kills, objects.Load(), swept.Load())
}

// childBinary is the program crash tests run as a child: this test binary,
// or under -race, where a process takes 0.15 s of CPU to start, the same
// tests built without it (0.03 s), when the go command can build them.
func childBinary(t *testing.T) string {
	if !raceEnabled {
		return os.Args[0]
	}
	bin := filepath.Join(t.TempDir(), "backend.test")
	if out, err := exec.Command("go", "test", "-c", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Logf("build the child without -race: %v: %s; running this binary instead", err, out)
		return os.Args[0]
	}
	return bin
}
