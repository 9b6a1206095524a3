package rptreetest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/rptree"
)

// VMNames are VM names that pass the engine's rules (up to 200 bytes of
// UTF-8 without control characters, not "." or "..", no '@') and yet
// cannot be directory names as they are, or look like an escape: slashes,
// '%', spaces, non-ASCII, 200-byte multi-byte names, and names whose
// escaped form is longer than 255 bytes (two of them differ only in their
// last byte).
var VMNames = []string{
	"db/01",
	"/leading/and/trailing/",
	"50%",
	"100%25",
	"%~0123456789abcdef",
	"%2E%2E",
	"with space",
	" leading and trailing spaces ",
	"Café Ünïcödé",
	"日本語サーバー",
	"rocket 🚀",
	"...",
	"latest",
	strings.Repeat("é", 100),        // 200 bytes
	strings.Repeat("日本", 33) + "ab", // 200 bytes
	strings.Repeat("/", 200),        // 600 bytes escaped
	strings.Repeat("%", 199) + "a",  // 598 bytes escaped
	strings.Repeat("%", 199) + "b",  // same prefix, other hash
	strings.Repeat("ü/", 66) + "xy", // 200 bytes, 332 escaped
}

// T0 is the time of the restore points RepoWithVMs makes.
var T0 = time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)

// RawDisk writes a 64 KiB disk image without a partition table or a
// filesystem (its tree shows disk-0/part-0/README.txt) and returns its
// path: the cheapest disk that still gives every restore point files.
func RawDisk(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "raw.img")
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// RepoWithVMs makes a repository holding one restore point at T0 of every
// VM in names, each with the disk image img, and returns its directory.
// The repository is closed.
func RepoWithVMs(t testing.TB, names []string, img string) string {
	t.Helper()
	dir := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10})
	r, err := engine.Open(context.Background(), dir, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer r.Close()
	for _, vm := range names {
		if _, err := enginetest.ImportFiles(context.Background(), r, vm, T0, img); err != nil {
			t.Fatalf("import VM %q: %v", vm, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// OpenTree opens the repository in dir read-only and its tree, both
// closed when the test ends.
func OpenTree(t testing.TB, dir string, o rptree.Options) (*rptree.Tree, *engine.Repository) {
	t.Helper()
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	tree, err := rptree.New(r, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	return tree, r
}
