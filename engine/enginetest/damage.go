package enginetest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// PackFiles lists the pack files of the repository in dir, largest first.
func PackFiles(t testing.TB, dir string) []string {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*.pack"))
	if len(packs) == 0 {
		t.Fatalf("no pack files in %s", dir)
	}
	sort.SliceStable(packs, func(i, j int) bool {
		a, _ := os.Stat(packs[i])
		b, _ := os.Stat(packs[j])
		return a.Size() > b.Size()
	})
	return packs
}

// XorAt damages the file at path: it XORs mask into its bytes from off.
func XorAt(t testing.TB, path string, off int64, mask []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, len(mask))
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= mask[i]
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
