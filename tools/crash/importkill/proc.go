package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// proc is a running ahvfs command in its own process group.
type proc struct {
	args   []string
	cmd    *exec.Cmd
	stdout bytes.Buffer // unless it goes elsewhere (cat)
	stderr bytes.Buffer
	done   chan struct{}
	err    error         // of Wait, once done
	took   time.Duration // once done
}

func (k *killer) start(r *repo, stdout io.Writer, args ...string) (*proc, error) {
	p := &proc{args: args, done: make(chan struct{})}
	p.cmd = exec.Command(k.o.Ahvfs, append(args, r.extra...)...)
	p.cmd.Env = r.env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	t0 := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		p.took = time.Since(t0)
		close(p.done)
	}()
	return p, nil
}

// ahvfs runs a command to its end and checks its output for crashes.
// The error is the command's, with p for its output.
func (k *killer) ahvfs(ctx context.Context, at where, r *repo, stdout io.Writer, args ...string) (*proc, error) {
	p, err := k.start(r, stdout, args...)
	if err != nil {
		return &proc{args: args}, err
	}
	t := time.NewTimer(cmdTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		err = p.err
	case <-ctx.Done():
		p.kill()
		<-p.done
		err = ctx.Err()
	case <-t.C:
		p.kill()
		<-p.done
		err = fmt.Errorf("hung: killed after %v", cmdTimeout)
	}
	if ctx.Err() == nil {
		k.scan(at, p)
	}
	return p, err
}

// kill sends SIGKILL to p's process group.
func (p *proc) kill() { syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// killAfter kills p after delay unless it exits first, and waits for it.
func (p *proc) killAfter(delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
		<-p.done
	}
}

// killed reports whether SIGKILL ended p (rather than p its work).
func (p *proc) killed() bool {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	return false
}

// crashRE finds what must never be printed: a panic or runtime crash, and
// the engine's word for a manifest it cannot decode.
var crashRE = regexp.MustCompile(`(?im)^panic: |^fatal error: |^goroutine \d+ \[|^SIGSEGV|malformed manifest`)

// scan fails the check when p printed a crash. Its stdout is scanned
// unless it went elsewhere (a disk's bytes).
func (k *killer) scan(at where, p *proc) {
	for _, b := range [][]byte{p.stdout.Bytes(), p.stderr.Bytes()} {
		if m := crashRE.Find(b); m != nil {
			k.fail(at, fmt.Sprintf("%s printed %q", strings.Join(p.args[:1], " "), strings.TrimSpace(string(m))), p.report())
			return
		}
	}
}

// report is a command line, how it ended and its output (capped).
func (p *proc) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ ahvfs %s\n", strings.Join(p.args, " "))
	switch {
	case p.done == nil:
	case p.err != nil:
		fmt.Fprintf(&b, "exit: %v after %v\n", p.err, p.took.Round(time.Millisecond))
	default:
		fmt.Fprintf(&b, "exit: 0 after %v\n", p.took.Round(time.Millisecond))
	}
	for _, s := range []struct {
		name string
		b    []byte
	}{{"stdout", p.stdout.Bytes()}, {"stderr", p.stderr.Bytes()}} {
		if len(s.b) == 0 {
			continue
		}
		const max = 16 << 10
		out := s.b
		if len(out) > max {
			out = append(append([]byte(nil), out[:max]...), fmt.Sprintf("\n[... %d more bytes]", len(s.b)-max)...)
		}
		fmt.Fprintf(&b, "%s:\n%s\n", s.name, bytes.TrimRight(out, "\n"))
	}
	return strings.TrimRight(b.String(), "\n")
}
