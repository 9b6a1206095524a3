package crashproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Checks collects a crash tool's failed checks, printing each to Out as
// it fails, and runs the commands whose output must show no crash.
type Checks struct {
	Out      io.Writer
	Failures []string
}

// Fail records a failed check at a trial (at), with a command's report
// when there is one.
func (c *Checks) Fail(at, what, report string) {
	line := at + ": " + what
	c.Failures = append(c.Failures, line)
	fmt.Fprintln(c.Out, "FAIL", line)
	if report != "" {
		fmt.Fprintln(c.Out, "  "+strings.ReplaceAll(report, "\n", "\n  "))
	}
}

// Scan fails the check when p printed a crash.
func (c *Checks) Scan(at string, p *Proc) {
	if m := p.Crash(); m != "" {
		c.Fail(at, fmt.Sprintf("%s printed %q", p.Args[0], m), p.Report())
	}
}

// Run runs bin with args to its end (longer than timeout is a hang, and
// an error), stdout to w (nil: kept in the Proc), and scans its output.
func (c *Checks) Run(ctx context.Context, bin, at string, w io.Writer, timeout time.Duration, args ...string) (*Proc, error) {
	p, err := Start(bin, nil, w, args...)
	if err != nil {
		return &Proc{Args: args}, err
	}
	err = p.Wait(ctx, timeout)
	c.Scan(at, p)
	if err != nil {
		return p, fmt.Errorf("ahvfs %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(p.Stderr.Bytes()))
	}
	return p, nil
}
