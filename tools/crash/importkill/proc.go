package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// proc is a running ahvfs command (crashproc: its own process group).
type proc = crashproc.Proc

func (k *killer) start(r *repo, stdout io.Writer, args ...string) (*proc, error) {
	return crashproc.Start(k.o.Ahvfs, r.env, stdout, append(args, r.extra...)...)
}

// ahvfs runs a command to its end and checks its output for crashes.
// The error is the command's, with p for its output.
func (k *killer) ahvfs(ctx context.Context, at where, r *repo, stdout io.Writer, args ...string) (*proc, error) {
	p, err := k.start(r, stdout, args...)
	if err != nil {
		return &proc{Args: args}, err
	}
	err = p.Wait(ctx, cmdTimeout)
	if ctx.Err() == nil {
		k.scan(at, p)
	}
	return p, err
}

// scan fails the check when p printed a crash.
func (k *killer) scan(at where, p *proc) {
	if m := p.Crash(); m != "" {
		k.fail(at, fmt.Sprintf("%s printed %q", strings.Join(p.Args[:1], " "), m), p.Report())
	}
}
