package crashproc

import (
	"bufio"
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

// Proc is a running command in its own process group.
type Proc struct {
	Args   []string
	Cmd    *exec.Cmd
	Stdout bytes.Buffer // unless it goes elsewhere (see Start)
	Stderr bytes.Buffer
	Done   chan struct{} // closed when it has exited
	Err    error         // of Wait, once Done
	Took   time.Duration // once Done
}

// Start starts bin with args and env (nil: this process's). Its stdout goes
// to stdout when that is not nil, else to p.Stdout.
func Start(bin string, env []string, stdout io.Writer, args ...string) (*Proc, error) {
	p := &Proc{Args: args, Done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = env
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.Stdout, &p.Stderr
	if stdout != nil {
		p.Cmd.Stdout = stdout
	}
	t0 := time.Now()
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		p.Err = p.Cmd.Wait()
		p.Took = time.Since(t0)
		close(p.Done)
	}()
	return p, nil
}

// StartServer starts bin with args, a server that prints where it listens
// on its first line, and returns it with that line; the rest of its
// stdout is discarded. A server that exits before the line is killed and
// reported.
func StartServer(bin string, env []string, args ...string) (*Proc, string, error) {
	pr, pw := io.Pipe()
	p, err := Start(bin, env, pw, args...)
	if err != nil {
		return nil, "", err
	}
	go func() {
		<-p.Done
		pw.Close()
	}()
	// A server that prints nothing for a minute hangs: killed, the read
	// ends.
	hang := time.AfterFunc(time.Minute, p.Kill)
	lines := bufio.NewReader(pr)
	line, err := lines.ReadString('\n')
	hang.Stop()
	go io.Copy(io.Discard, lines)
	if err != nil {
		p.Kill()
		<-p.Done
		return nil, "", fmt.Errorf("%s printed no first line: %v\n%s", strings.Join(args, " "), err, p.Report())
	}
	return p, line, nil
}

// Wait waits for p to exit, at most timeout: then, or when ctx ends, it
// kills p and says so.
func (p *Proc) Wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.Done:
		return p.Err
	case <-ctx.Done():
		p.Kill()
		<-p.Done
		return ctx.Err()
	case <-t.C:
		p.Kill()
		<-p.Done
		return fmt.Errorf("hung: killed after %v", timeout)
	}
}

// Kill sends SIGKILL to p's process group.
func (p *Proc) Kill() { syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL) }

// KillAfter kills p after delay unless it exits first, and waits for it.
func (p *Proc) KillAfter(delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-p.Done:
	case <-t.C:
		p.Kill()
		<-p.Done
	}
}

// Killed reports whether SIGKILL ended p (rather than p its work).
func (p *Proc) Killed() bool {
	var ee *exec.ExitError
	if errors.As(p.Err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	return false
}

// crashRE finds what must never be printed: a panic or runtime crash, and
// the engine's word for a manifest it cannot decode.
var crashRE = regexp.MustCompile(`(?im)^panic: |^fatal error: |^goroutine \d+ \[|^SIGSEGV|malformed manifest`)

// Crash is the first crash p printed ("" when none). Its stdout is scanned
// unless it went elsewhere (a disk's bytes).
func (p *Proc) Crash() string {
	for _, b := range [][]byte{p.Stdout.Bytes(), p.Stderr.Bytes()} {
		if m := crashRE.Find(b); m != nil {
			return strings.TrimSpace(string(m))
		}
	}
	return ""
}

// Report is the command line, how it ended and its output (capped).
func (p *Proc) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ ahvfs %s\n", strings.Join(p.Args, " "))
	switch {
	case p.Done == nil:
	case p.Err != nil:
		fmt.Fprintf(&b, "exit: %v after %v\n", p.Err, p.Took.Round(time.Millisecond))
	default:
		fmt.Fprintf(&b, "exit: 0 after %v\n", p.Took.Round(time.Millisecond))
	}
	for _, s := range []struct {
		name string
		b    []byte
	}{{"stdout", p.Stdout.Bytes()}, {"stderr", p.Stderr.Bytes()}} {
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
