package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
)

var ahvfsBin string // built once by TestMain, for tests that kill a real process

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ahvfs-bin-*")
	if err != nil {
		panic(err)
	}
	ahvfsBin = filepath.Join(dir, "ahvfs")
	if out, err := exec.Command("go", "build", "-o", ahvfsBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	enginetest.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs ahvfs in-process with the given arguments and returns stdout,
// stderr and the exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(context.Background(), strings.NewReader(stdin), &out, &errb, append([]string{"ahvfs"}, args...))
	return out.String(), errb.String(), code
}

// mustCLI runs ahvfs in-process and fails the test on a non-zero exit.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("ahvfs %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}
