package main

import (
	"context"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// run is the CLI entry point: it lets flags follow positional arguments
// (`ahvfs restore web01@latest --power-on`, as cli.md writes them), which
// urfave/cli v2 does not, then runs the app.
func run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, args []string) error {
	app := newApp(stdin, stdout, stderr)
	return app.RunContext(ctx, reorderArgs(app, args))
}

// reorderArgs moves the flags of the (sub)command named in args in front of
// its positional arguments. "--" ends flag parsing as usual.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	cmds := app.Commands
	var cmd *cli.Command
	for len(rest) > 0 {
		c := findCommand(cmds, rest[0])
		if c == nil {
			break
		}
		out = append(out, rest[0])
		rest = rest[1:]
		cmd, cmds = c, c.Subcommands
	}
	if cmd == nil {
		return args
	}
	var flags, positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue(cmd, name) && i+1 < len(rest) {
			flags = append(flags, rest[i+1])
			i++
		}
	}
	if !contains(positional, "--") && hasDashArg(positional) {
		positional = append([]string{"--"}, positional...)
	}
	return append(append(out, flags...), positional...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func contains(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}

func hasDashArg(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return true
		}
	}
	return false
}

// takesValue reports whether the command's flag name expects a value.
func takesValue(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if dv, ok := f.(cli.DocGenerationFlag); ok {
				return dv.TakesValue()
			}
			return true
		}
	}
	return false
}
