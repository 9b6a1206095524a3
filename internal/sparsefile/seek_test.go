package sparsefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ahvfs/ahvfs/internal/sparsefile"
	"github.com/ahvfs/ahvfs/internal/testenv"
)

// TestDataAndHole writes data at 1 MiB into an otherwise empty file and
// finds it, and the hole after it, by seeking.
func TestDataAndHole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const mib = 1 << 20
	if _, err := f.WriteAt(make([]byte, 4096), mib); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 * mib); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	d, err := sparsefile.Data(fd, 0)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		testenv.RequireOrSkip(t, false, "the temporary directory's file system has no SEEK_DATA")
	}
	if err != nil {
		t.Fatal(err)
	}
	// Writing zeros still allocates; the data starts where the write did
	// (or at 0 on a file system that reports the whole file as data).
	if d != mib && d != 0 {
		t.Fatalf("SEEK_DATA from 0 = %d, want %d", d, mib)
	}
	h, err := sparsefile.Hole(fd, mib)
	if err != nil {
		t.Fatal(err)
	}
	if h <= mib || h > 4*mib {
		t.Fatalf("SEEK_HOLE from %d = %d, want in (%d, %d]", mib, h, mib, 4*mib)
	}
	if _, err := sparsefile.Data(fd, 4*mib); !errors.Is(err, unix.ENXIO) {
		t.Fatalf("SEEK_DATA at the end: %v, want ENXIO", err)
	}
}
