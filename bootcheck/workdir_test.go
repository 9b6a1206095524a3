package bootcheck

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSweep: a check's directory is kept while the check holds it; once
// its lock is free, Sweep kills the process its pidfile names (when that
// process still names the directory) and removes it.
func TestSweep(t *testing.T) {
	base := t.TempDir()
	live, err := NewWorkDir(base)
	require.NoError(t, err)
	defer live.Close()
	dead, err := NewWorkDir(base)
	require.NoError(t, err)
	// A stray process of the dead check, its directory on its command line.
	stray := exec.Command("sh", "-c", "sleep 300", dead.Path)
	require.NoError(t, stray.Start())
	exited := make(chan error, 1)
	go func() { exited <- stray.Wait() }()
	require.NoError(t, os.WriteFile(filepath.Join(dead.Path, "qemu.pid"), []byte(fmt.Sprintln(stray.Process.Pid)), 0o600))
	dead.lock.Close() // as if its process had died: the directory stays, unlocked

	removed := Sweep(base)
	require.Equal(t, []string{dead.Path}, removed)
	select {
	case <-exited:
	case <-time.After(time.Minute):
		stray.Process.Kill()
		t.Fatal("Sweep left the dead check's process running")
	}
	require.DirExists(t, live.Path, "Sweep removed a running check's directory")
	require.NoDirExists(t, dead.Path)
}
