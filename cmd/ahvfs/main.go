// Command ahvfs is the agentless backup tool for Nutanix AHV virtual machines.
//
// main stays thin: it builds the root context, cancelled on SIGINT/SIGTERM,
// runs the CLI and maps the error to an exit code. Each subcommand lives in
// its own cmd_*.go file and registers itself with register.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// AHVFS_CPUPROFILE=FILE writes a CPU profile (for tools/bench and
	// performance work).
	if p := os.Getenv("AHVFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	err := run(ctx, os.Stdin, os.Stdout, os.Stderr, os.Args)
	code := exitCode(err, os.Stderr)
	pprof.StopCPUProfile()
	os.Exit(code)
}
