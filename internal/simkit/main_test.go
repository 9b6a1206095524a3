package simkit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// TestMainHelper is the command TestMainSignals runs: simkit.Main with a run
// chosen by SIMKIT_MAIN.
func TestMainHelper(t *testing.T) {
	mode := os.Getenv("SIMKIT_MAIN")
	if mode == "" {
		return // only as the command TestMainSignals runs
	}
	simkit.Main("sim", func(ctx context.Context, args []string, stdout, _ io.Writer) error {
		if mode == "fail" {
			return errors.New("no good")
		}
		fmt.Fprintln(stdout, "ready", args)
		<-ctx.Done()
		fmt.Fprintln(stdout, "stopped")
		return nil
	})
}

// TestMainSignals: a run that fails exits 1 with "name: error" on stderr; SIGINT
// and SIGTERM cancel run's context and the command exits 0.
func TestMainSignals(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainHelper$")
	cmd.Env = append(os.Environ(), "SIMKIT_MAIN=fail")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "sim: no good\n") {
		t.Errorf("failing run: %v: %q", err, out)
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainHelper$")
		cmd.Env = append(os.Environ(), "SIMKIT_MAIN=serve")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "ready [-test.run=") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%v: first line %q", sig, sc.Text())
		}
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() {
			var lines []string
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			err := cmd.Wait()
			if err == nil && (len(lines) == 0 || lines[0] != "stopped") {
				err = fmt.Errorf("output %q", lines)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: %v", sig, err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: still running", sig)
		}
	}
}
