package prismsim

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestSubtract(t *testing.T) {
	for _, c := range []struct {
		exts, cut, want []extent
	}{
		{[]extent{{0, 100}}, nil, []extent{{0, 100}}},
		{[]extent{{0, 100}}, []extent{{0, 100}}, nil},
		{[]extent{{0, 100}}, []extent{{10, 20}, {30, 40}}, []extent{{0, 10}, {20, 30}, {40, 100}}},
		{[]extent{{50, 60}, {0, 100}}, []extent{{0, 55}}, []extent{{55, 100}, {55, 60}}},
		{[]extent{{0, 10}, {20, 30}}, []extent{{5, 25}}, []extent{{0, 5}, {25, 30}}},
		{[]extent{{0, 10}}, []extent{{10, 20}}, []extent{{0, 10}}},
	} {
		got := subtract(append([]extent(nil), c.exts...), c.cut)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("subtract(%v, %v) = %v, want %v", c.exts, c.cut, got, c.want)
		}
	}
}

// TestComputeRegionsReflink checks changed regions from metadata on a real
// reflink filesystem: a snapshot made with copyDisk shares the disk's
// extents, the shared ranges are found, and after writes, a rewrite of
// identical bytes, zeros written, a punched hole, a preallocated range and
// growth, the regions are exactly the blocks written (ZEROED for the punched
// hole), with no block missing that a byte comparison finds.
func TestComputeRegionsReflink(t *testing.T) {
	dir := testenv.ReflinkDir(t, 1<<30)
	const size = 64 << 20
	cur, ref := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "snap.raw")
	rnd := rand.New(rand.NewPCG(7, 9))
	data := make([]byte, size)
	for i := 0; i < size; i += 1 << 20 {
		if i%(5<<20) != 0 { // every fifth MiB stays a hole
			fillRandom(rnd, data[i:i+1<<20])
		}
	}
	writeSparse(t, cur, data)
	if err := copyDisk(ref, cur, 0); err != nil {
		t.Fatal(err)
	}

	f, err := os.OpenFile(cur, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rf, err := os.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	m, ok, err := compareStorage(f, rf, 0, size)
	if err != nil || !ok {
		t.Fatalf("no FIEMAP on XFS: %v", err)
	}
	if n := total(m.shared); n < size*3/4 {
		t.Fatalf("a fresh reflink shares %d of %d bytes: FICLONE or FIEMAP not working", n, size)
	}

	// Guest writes: new data, identical bytes rewritten (CoW, same content),
	// a zeroed range, a punched hole, a preallocated range and growth.
	buf := make([]byte, 300<<10)
	fillRandom(rnd, buf)
	mustWriteAt(t, f, buf, 3<<20+4096)
	mustWriteAt(t, f, data[9<<20:10<<20], 9<<20)
	mustWriteAt(t, f, make([]byte, 128<<10), 17<<20)
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 33<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 40<<20, 2<<20); err != nil {
		t.Fatal(err)
	}
	mustWriteAt(t, f, buf[:4096], size+(1<<20))

	if m, _, err = compareStorage(f, rf, 0, size); err != nil {
		t.Fatal(err)
	}
	if n := total(m.shared); n < size/2 || n > size-2<<20 {
		t.Fatalf("after writes %d of %d bytes shared", n, size)
	}
	// The answer is the byte comparison, plus the ranges rewritten with
	// the bytes they held (identical data, zeros over zeros is not among
	// them): like a cluster, the simulator answers from metadata, and a
	// write is a change.
	a, b := readFile(t, cur), readFile(t, ref)
	rewritten := []extent{{9 << 20, 10 << 20}, {17 << 20, 17<<20 + 128<<10}}
	for _, bs := range []int64{64 << 10, 1 << 20} {
		got, err := ComputeRegions(cur, ref, 0, 0, bs)
		if err != nil {
			t.Fatal(err)
		}
		want := blockTypes(naiveRegions(a, b, bs), bs)
		for _, e := range rewritten {
			for o := e.off / bs * bs; o < e.end; o += bs {
				want[o] = Regular
			}
		}
		if g := blockTypes(got, bs); !reflect.DeepEqual(g, want) {
			t.Fatalf("bs %d: regions\n got %v\nwant %v", bs, g, want)
		}
	}
}

// blockTypes expands regions into block offset → type.
func blockTypes(rs []Region, bs int64) map[int64]string {
	m := map[int64]string{}
	for _, r := range rs {
		for o := r.Offset; o < r.Offset+r.Length; o += bs {
			m[o] = r.Type
		}
	}
	return m
}

func naiveRegions(a, b []byte, bs int64) []Region {
	out := []Region{}
	for o := int64(0); o < int64(len(a)); o += bs {
		x := a[o:min(o+bs, int64(len(a)))]
		var y []byte
		if o < int64(len(b)) {
			y = b[o:min(o+bs, int64(len(b)))]
		}
		y = append(y, make([]byte, len(x)-len(y))...)
		if bytes.Equal(x, y) {
			continue
		}
		typ := Regular
		if simkit.AllZero(x) {
			typ = Zeroed
		}
		if k := len(out); k > 0 && out[k-1].Type == typ && out[k-1].Offset+out[k-1].Length == o {
			out[k-1].Length += int64(len(x))
			continue
		}
		out = append(out, Region{o, int64(len(x)), typ})
	}
	return out
}

func fillRandom(r *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

func writeSparse(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(data); i += 1 << 20 {
		if !simkit.AllZero(data[i : i+1<<20]) {
			mustWriteAt(t, f, data[i:i+1<<20], int64(i))
		}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustWriteAt(t *testing.T, f *os.File, b []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func total(exts []extent) (n int64) {
	for _, e := range exts {
		n += e.end - e.off
	}
	return n
}
