package restore_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

func dataDisk(t testing.TB, size int64, seed uint64) string {
	return enginetest.DataDisk(t, size, seed)
}

// copyFile copies src to a fresh temp file (images from enginetest must
// not be modified).
func copyFile(t testing.TB, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func importVM(t testing.TB, vm string, cfg any, files ...string) (*engine.Repository, *engine.RestorePoint) {
	return enginetest.ImportVM(t, vm, cfg, files...)
}
