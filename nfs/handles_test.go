package nfs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
)

func handlesTree(t testing.TB) *rptree.Tree {
	dir := rptreetest.RepoWithVMs(t, []string{"web01", "db/01"}, enginetest.Ext4Image(t, 8<<20, 2))
	tree, _ := rptreetest.OpenTree(t, dir, rptree.Options{})
	return tree
}

// TestHandles: a handle is resolved by a server that has not seen it (a
// restart) when it is at most handleDepth deep, and only by the server
// that made it when deeper; a handle of a vanished path or a foreign one
// is ErrStale.
func TestHandles(t *testing.T) {
	ctx := context.Background()
	tree := handlesTree(t)
	ts := rptreetest.T0.Format(time.RFC3339)
	made := newHandles(tree)
	for _, p := range []string{".", "web01", "web01/" + ts, "web01/" + ts + "/disk-0.raw", rptree.VMDirName("db/01") + "/latest"} {
		var comps []string
		if p != "." {
			comps = strings.Split(p, "/")
		}
		b := made.toHandle(comps)
		if len(b)%4 != 0 || len(b) > 64 {
			t.Fatalf("%s: a handle of %d bytes", p, len(b))
		}
		got, err := newHandles(tree).fromHandle(ctx, b)
		if err != nil || !slices.Equal(got, comps) && !(len(got) == 0 && len(comps) == 0) {
			t.Fatalf("%s: resolved by a fresh server to %q, %v", p, got, err)
		}
	}
	deep := []string{"web01", ts, "disk-0", "part-0", "a", "b", "c", "d"}
	b := made.toHandle(deep)
	if got, err := made.fromHandle(ctx, b); err != nil || !slices.Equal(got, deep) {
		t.Fatalf("a deep handle on its own server: %q, %v", got, err)
	}
	if _, err := newHandles(tree).fromHandle(ctx, b); !errors.Is(err, ErrStale) {
		t.Fatalf("a deep handle on a fresh server: %v, want ErrStale", err)
	}
	gone := made.toHandle([]string{"web01", "2001-01-01T00:00:00Z"})
	if _, err := newHandles(tree).fromHandle(ctx, gone); !errors.Is(err, ErrStale) {
		t.Fatalf("a handle of a missing restore point: %v, want ErrStale", err)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, 1, 0}, {1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7}} {
		if _, err := made.fromHandle(ctx, bad); !errors.Is(err, ErrStale) {
			t.Fatalf("handle %x: %v, want ErrStale", bad, err)
		}
	}
}

// FuzzFromHandle: any bytes give ErrStale (or the tree's own error), a
// path of the tree, or (deeper than handleDepth) a path this server made a
// handle for; never a panic.
func FuzzFromHandle(f *testing.F) {
	tree := handlesTree(f)
	h := newHandles(tree)
	f.Add(h.toHandle([]string{"web01"}))
	f.Add(h.toHandle([]string{"web01", rptreetest.T0.Format(time.RFC3339), "vm.json"}))
	f.Add(h.toHandle([]string{"a", "b", "c", "d", "e", "f", "g", "h"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		comps, err := h.fromHandle(context.Background(), b)
		if err != nil {
			return
		}
		p := "."
		if len(comps) > 0 {
			p = strings.Join(comps, "/")
		}
		if len(comps) > handleDepth {
			return // remembered, not looked up
		}
		if _, err := tree.Lstat(p); err != nil {
			t.Fatalf("handle %x resolved to %q, which the tree does not hold: %v", b, p, err)
		}
	})
}
