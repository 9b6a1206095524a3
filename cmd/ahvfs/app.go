package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// commands is filled by the init functions of the cmd_*.go files. Each entry
// builds a fresh command: urfave/cli flags keep state (values read from the
// environment) between runs, and tests run many apps in one process.
var commands []func() *cli.Command

// registerFunc adds a subcommand built by f. Each cmd_*.go file calls it
// from init, so adding a command never means editing a shared list.
func registerFunc(f func() *cli.Command) { commands = append(commands, f) }

// register adds a subcommand defined once. Prefer registerFunc: flags of a
// command registered this way are shared between apps.
func register(c *cli.Command) {
	registerFunc(func() *cli.Command { cc := *c; return &cc })
}

// version is set by the linker (-X main.version=...).
var version = "dev"

// Flags every command accepts (cli.md).
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "repo", Usage: "repository directory", EnvVars: []string{"AHVFS_REPO"}},
		&cli.BoolFlag{Name: "json", Usage: "machine-readable output on stdout (one JSON document)"},
		&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error", EnvVars: []string{"AHVFS_LOG_LEVEL"}},
	}
}

// newApp builds the CLI with the given standard streams, so tests can run
// any command in-process and read what it printed.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	cmds := make([]*cli.Command, 0, len(commands))
	for _, build := range commands {
		c := build()
		addCommonFlags(c)
		cmds = append(cmds, c)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return &cli.App{
		Name:                 "ahvfs",
		Usage:                "agentless backup for Nutanix AHV virtual machines",
		Version:              version,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		Commands:             cmds,
		EnableBashCompletion: true,
		// Errors are printed once, by exitCode, as a single line.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// addCommonFlags gives a command and all its subcommands the common flags.
func addCommonFlags(c *cli.Command) {
	c.Flags = mergeFlags(c.Flags, commonFlags())
	for _, sub := range c.Subcommands {
		addCommonFlags(sub)
	}
}

// mergeFlags appends the common flags a command does not define itself.
func mergeFlags(own, common []cli.Flag) []cli.Flag {
	have := map[string]bool{}
	for _, f := range own {
		for _, n := range f.Names() {
			have[n] = true
		}
	}
	out := append([]cli.Flag{}, own...)
	for _, f := range common {
		if !have[f.Names()[0]] {
			out = append(out, f)
		}
	}
	return out
}

// cliEnv is what a command's run function needs from the CLI layer.
type cliEnv struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	JSON   bool
	Log    *slog.Logger
	// TTY reports whether stdout is a terminal (progress bars only then).
	TTY bool
}

func envFrom(c *cli.Context) *cliEnv {
	e := &cliEnv{
		Stdin:  c.App.Reader,
		Stdout: c.App.Writer,
		Stderr: c.App.ErrWriter,
		JSON:   c.Bool("json"),
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		level = slog.LevelWarn
	}
	e.Log = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: level}))
	if f, ok := e.Stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			e.TTY = true
		}
	}
	return e
}

// usageError marks an error caused by how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitCode prints err as one line on stderr and returns the process exit
// code: 0 success, 2 usage error, 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(stderr, "ahvfs: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "flag provided but not defined") ||
		strings.Contains(err.Error(), "Required flag") {
		return 2
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) && ec.ExitCode() != 0 {
		return ec.ExitCode()
	}
	return 1
}
