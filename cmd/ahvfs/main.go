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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newApp(os.Stdin, os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	os.Exit(exitCode(err, os.Stderr))
}
