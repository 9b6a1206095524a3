package simkit

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Main is a simulator command's main: it calls run with the command's
// arguments and a context cancelled on SIGINT or SIGTERM, and exits with
// status 1, printing "name: error" to stderr, when run fails.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Logf returns a Logf function that prints a line "name: …" to w.
func Logf(w io.Writer, name string) func(format string, args ...any) {
	return func(format string, args ...any) { fmt.Fprintf(w, name+": "+format+"\n", args...) }
}

// StateDirOrTemp is dir, or when dir is empty a new temporary directory
// "name-*" (a simulator without --state).
func StateDirOrTemp(dir, name string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return os.MkdirTemp("", name+"-")
}

// VMFlag is the repeatable flag --vm NAME:FILE[,FILE...] (flag.Value):
// each value one VM whose disks are copies of the image files. SplitVM
// reads a value.
type VMFlag []string

// String implements flag.Value.
func (v *VMFlag) String() string { return strings.Join(*v, " ") }

// Set implements flag.Value: it adds a value, read later.
func (v *VMFlag) Set(s string) error { *v = append(*v, s); return nil }

// SplitVM splits a --vm value NAME:FILE[,FILE...] into the VM's name and
// its image files.
func SplitVM(v string) (name string, files []string, err error) {
	name, list, ok := strings.Cut(v, ":")
	if !ok || name == "" || list == "" {
		return "", nil, fmt.Errorf("--vm %q: want NAME:FILE[,FILE...]", v)
	}
	return name, strings.Split(list, ","), nil
}

// Contract is what a simulator command prints before it serves, one
// "Label: value" line each, the values aligned, for scripts and tests to
// find the simulator: URL, CA cert, User, Password file, State dir.
type Contract struct {
	URL, CAFile, User, PasswordFile, StateDir string
}

// Print writes the contract lines to w.
func (c Contract) Print(w io.Writer) {
	PrintField(w, "URL", c.URL)
	PrintField(w, "CA cert", c.CAFile)
	PrintField(w, "User", c.User)
	PrintField(w, "Password file", c.PasswordFile)
	PrintField(w, "State dir", c.StateDir)
}

// PrintField writes a line "Label: value" aligned with the contract lines.
func PrintField(w io.Writer, label, value string) {
	fmt.Fprintf(w, "%-14s %s\n", label+":", value)
}

// PrintVM writes a VM's line: its name, uuid and disk files.
func PrintVM(w io.Writer, name, uuid string, disks []string) {
	fmt.Fprintf(w, "VM %-12s %s  %s\n", name, uuid, strings.Join(disks, " "))
}
