package backend_test

import (
	"testing"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/engine/backend/backendtest"
)

func newLocal(t *testing.T) *backend.Local {
	t.Helper()
	l, err := backend.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLocalConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return newLocal(t) })
}

func TestMemConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return backend.NewMem() })
}

// TestFaultyConformance: a Faulty without rules is the backend it wraps.
func TestFaultyConformance(t *testing.T) {
	t.Run("Local", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Backend { return backend.NewFaulty(newLocal(t)) })
	})
	t.Run("Mem", func(t *testing.T) {
		backendtest.Run(t, func(t *testing.T) backend.Backend { return backend.NewFaulty(backend.NewMem()) })
	})
}
