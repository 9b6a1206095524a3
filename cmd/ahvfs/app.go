package main

import (
	"io"
	"log/slog"
	"os"
	"sort"

	"github.com/urfave/cli/v2"
)

// commands is filled by the init functions of the cmd_*.go files. Each entry
// builds a fresh command: urfave/cli flags keep state (values read from the
// environment) between runs, and tests run many apps in one process.
var commands []func() *cli.Command

// registerFunc adds a subcommand built by f. Each cmd_*.go file calls it
// from init, so adding a command never means editing a shared list.
func registerFunc(f func() *cli.Command) { commands = append(commands, f) }

// version is set by the linker (-X main.version=...).
var version = "dev"

// Flags every command accepts (cli.md).
func commonFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "repo", Usage: "repository `DIR`, or s3://BUCKET/PREFIX with --s3-endpoint", EnvVars: []string{"AHVFS_REPO"}},
		&cli.BoolFlag{Name: "json", Usage: "machine-readable output on stdout (one JSON document)"},
		&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "`LEVEL` of the log on stderr: debug, info, warn or error", EnvVars: []string{"AHVFS_LOG_LEVEL"}},
		&cli.DurationFlag{Name: "lock-wait", Usage: "how long a command that writes waits for another writer (a backup, a gc) to finish, `DURATION` such as 10m (default: fail at once, exit 4)", EnvVars: []string{"AHVFS_LOCK_WAIT"}},
	}, s3Flags()...)
}

// newApp builds the CLI with the given standard streams, so tests can run
// any command in-process and read what it printed.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	cmds := make([]*cli.Command, 0, len(commands))
	for _, build := range commands {
		c := build()
		prepareCommand(c)
		cmds = append(cmds, c)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return &cli.App{
		Name:                 "ahvfs",
		Usage:                "agentless backup for Nutanix AHV virtual machines",
		Description:          appDescription + "\n\n" + exitCodesText(),
		Version:              version,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		Commands:             cmds,
		EnableBashCompletion: true,
		// Errors are printed once, by exitCode, as a single line.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
		Action:         unknownCommand,
	}
}

// appDescription opens `ahvfs --help`, before the exit codes.
const appDescription = "Restore points are named VM@TIME (TIME in RFC 3339 UTC, or latest); disks are disk-N. " +
	"Sizes are accepted as bytes or with a unit (1MiB, 1.5GiB, 1048576). " +
	"Passwords are read from files or the environment, never from the command line: " +
	"--repo-password-file is the repository's, --password-file the cluster's."

// prepareCommand gives a command and all its subcommands the common flags
// and one-line usage errors.
func prepareCommand(c *cli.Command) {
	c.Flags = mergeFlags(c.Flags, commonFlags())
	c.OnUsageError = onUsageError
	if c.Action == nil && len(c.Subcommands) > 0 {
		c.Action = unknownCommand
	}
	for _, sub := range c.Subcommands {
		prepareCommand(sub)
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
