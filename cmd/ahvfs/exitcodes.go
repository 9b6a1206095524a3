package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/urfave/cli/v2"
)

// Exit codes, one per class of failure. Scripts rely on them: they are
// listed in `ahvfs --help` and docs/cli.md (both from exitCodeTable).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitNoRepo      = 3
	exitLocked      = 4
	exitPassword    = 5
	exitCluster     = 6
	exitSomeFailed  = 7
	exitNotBooted   = 8
	exitInterrupted = 130
)

// exitCodeTable documents the codes, in order.
var exitCodeTable = []struct {
	Code    int
	Meaning string
}{
	{exitOK, "success"},
	{exitError, "any other failure (the message says which)"},
	{exitUsage, "usage: unknown command or flag, bad flag value (size, time, name), missing argument, an image that is not a file or block device"},
	{exitNoRepo, "no repository at --repo (no config.json; create one with 'ahvfs init')"},
	{exitLocked, "the repository is locked by another writer (another job runs; wait for it)"},
	{exitPassword, "wrong or missing repository password (--repo-password-file, AHVFS_REPO_PASSWORD_FILE)"},
	{exitCluster, "the cluster (or another remote endpoint) cannot be reached, its TLS certificate is not trusted, or it refused the credentials"},
	{exitSomeFailed, "a job over several VMs finished, but some VMs failed (the report lists which)"},
	{exitNotBooted, "verify-boot ran, and the restore point did not boot (the report shows why and the console)"},
	{exitInterrupted, "interrupted by SIGINT or SIGTERM (a second signal exits at once)"},
}

// exitCodesText is the table as plain text, for the app's help.
func exitCodesText() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	for _, e := range exitCodeTable {
		fmt.Fprintf(&b, "  %3d  %s\n", e.Code, e.Meaning)
	}
	return strings.TrimRight(b.String(), "\n")
}

// usageError marks an error caused by how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// someFailedError is what a job over several VMs returns when it finished
// but some VMs failed: exit code 7.
type someFailedError struct{ n, total int }

// someFailed reports that n of total VMs failed.
func someFailed(n, total int) error { return &someFailedError{n: n, total: total} }

func (e *someFailedError) Error() string { return fmt.Sprintf("%d of %d VMs failed", e.n, e.total) }

// notBootedError is what verify-boot returns when the check ran and the
// guest did not come up: exit code 8.
type notBootedError struct{ rp, reason string }

func (e *notBootedError) Error() string {
	return fmt.Sprintf("restore point %s did not boot: %s", e.rp, e.reason)
}

// interruptedError is the cause of the root context's cancellation when
// a signal arrives; main reports a command's error under it.
type interruptedError struct {
	sig os.Signal
	err error // what the command returned, if anything
}

func (e *interruptedError) Error() string {
	if e.err == nil || errors.Is(e.err, context.Canceled) {
		return "interrupted by " + e.signame()
	}
	return "interrupted by " + e.signame() + ": " + e.err.Error()
}

func (e *interruptedError) signame() string {
	switch e.sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return e.sig.String()
}

func (e *interruptedError) Unwrap() error { return e.err }

// exitCode prints err as one line on stderr and returns its exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(stderr, "ahvfs: %s\n", msg)
	return exitCodeOf(err)
}

// exitCodeOf maps an error to its class's exit code (exitCodeTable).
func exitCodeOf(err error) int {
	var (
		intr *interruptedError
		some *someFailedError
		nb   *notBootedError
		ue   usageError
		ec   cli.ExitCoder
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &intr) || errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &some):
		return exitSomeFailed
	case errors.As(err, &nb):
		return exitNotBooted
	case errors.As(err, &ue) || errors.Is(err, engine.ErrInvalid) || isCLIUsage(err):
		return exitUsage
	case errors.Is(err, engine.ErrNotRepository):
		return exitNoRepo
	case errors.Is(err, engine.ErrLocked):
		return exitLocked
	case errors.Is(err, engine.ErrWrongPassword):
		return exitPassword
	case isClusterError(err):
		return exitCluster
	case errors.As(err, &ec) && ec.ExitCode() != 0:
		return ec.ExitCode()
	}
	return exitError
}

// isCLIUsage recognises urfave/cli's own usage errors, which have no type
// of their own (flag errors go through onUsageError and are usageErrors).
func isCLIUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "flag provided but not defined") || strings.HasPrefix(s, "Required flag") ||
		strings.HasPrefix(s, "No help topic for")
}

// isClusterError reports whether err means the cluster (or another remote
// endpoint: an iSCSI portal) could not be reached or refused us.
func isClusterError(err error) bool {
	if errors.Is(err, nutanix.ErrUnauthorized) || errors.Is(err, nutanix.ErrTLSVerify) || errors.Is(err, iscsi.ErrAuth) {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// onUsageError turns urfave/cli's flag parsing errors (unknown flag, bad
// value, missing value) into one-line usage errors, instead of printing
// the help on stdout.
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := strings.NewReplacer("for flag -", "for --", "flag provided but not defined: -", "unknown flag --",
		"flag needs an argument: -", "flag needs an argument: --").Replace(err.Error())
	return usagef("%s (see '%s --help')", msg, commandPath(c))
}

// unknownCommand is the action of the app and of commands with
// subcommands: help without arguments, a usage error with one (urfave/cli
// would answer an unknown command with exit code 3, no repository's).
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return usagef("unknown command %q (see '%s --help')", strings.TrimPrefix(commandPath(c)+" "+c.Args().First(), "ahvfs "), commandPath(c))
}

// commandPath is the full name of the command c runs, "ahvfs iscsi cat".
func commandPath(c *cli.Context) string {
	var names []string
	for _, cc := range c.Lineage() {
		if cc.Command != nil && cc.Command.Name != "" && (len(names) == 0 || names[0] != cc.Command.Name) {
			names = append([]string{cc.Command.Name}, names...)
		}
	}
	if len(names) == 0 || names[0] != "ahvfs" {
		names = append([]string{"ahvfs"}, names...)
	}
	return strings.Join(names, " ")
}
