// Command ahvfs is the agentless backup tool for Nutanix AHV virtual machines.
//
// main stays thin: it builds the root context, cancelled on SIGINT/SIGTERM,
// runs the CLI and maps the error to an exit code (exitcodes.go). Each
// subcommand lives in its own cmd_*.go file and registers itself with
// registerFunc.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signalContext(os.Stderr)
	defer stop()
	// AHVFS_CPUPROFILE=FILE writes a CPU profile (for tools/bench and
	// performance work).
	if p := os.Getenv("AHVFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	code := runMain(ctx, os.Stdin, os.Stdout, os.Stderr, os.Args)
	pprof.StopCPUProfile()
	// AHVFS_MEMPROFILE=FILE writes a heap profile at exit (its
	// alloc_space view shows what allocated the most).
	if p := os.Getenv("AHVFS_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	os.Exit(code)
}

// runMain runs the CLI and returns the process's exit code, having printed
// the error, if any, as one line on stderr. An error after ctx was
// cancelled by a signal is reported as an interruption (exit 130).
func runMain(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, args []string) int {
	err := run(ctx, stdin, stdout, stderr, args)
	var ie *interruptedError
	if err != nil && ctx.Err() != nil && !errors.As(err, &ie) {
		if errors.As(context.Cause(ctx), &ie) {
			err = &interruptedError{sig: ie.sig, err: err}
		}
	}
	return exitCode(err, stderr)
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM,
// with an *interruptedError as its cause, so that jobs stop and clean up.
// A second signal exits at once: what the job left behind is swept by the
// next job or `ahvfs cleanup`.
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		cancel(&interruptedError{sig: s})
		if s, ok = <-sigs; ok {
			fmt.Fprintf(stderr, "ahvfs: interrupted by %s again: exiting at once\n", (&interruptedError{sig: s}).signame())
			os.Exit(exitInterrupted)
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		cancel(nil)
	}
}
