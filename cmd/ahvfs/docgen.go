package main

//go:generate go run . help-markdown --out ../../docs/cli.md

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// docs/cli.md, the command reference, is generated from the commands'
// own definitions by the hidden command `ahvfs help-markdown`; a test
// fails when the file is stale.

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:   "help-markdown",
			Usage:  "print the command reference (docs/cli.md) as Markdown",
			Hidden: true,
			Flags:  []cli.Flag{&cli.StringFlag{Name: "out", Usage: "write to `FILE` instead of stdout"}},
			Action: func(c *cli.Context) error {
				md := cliMarkdown(c.App)
				if p := c.String("out"); p != "" {
					return os.WriteFile(p, []byte(md), 0o644)
				}
				_, err := fmt.Fprint(c.App.Writer, md)
				return err
			},
		}
	})
}

// cliMarkdown renders the reference of app's visible commands and flags.
func cliMarkdown(app *cli.App) string {
	var b strings.Builder
	b.WriteString("# ahvfs command reference\n\n")
	b.WriteString("<!-- Generated from the command definitions by `go generate ./cmd/ahvfs`" +
		" (ahvfs help-markdown); do not edit. -->\n\n")
	fmt.Fprintf(&b, "%s. %s\n\n", capitalize(app.Usage), appDescription)
	b.WriteString("## Exit codes\n| code | meaning |\n|---|---|\n")
	for _, e := range exitCodeTable {
		fmt.Fprintf(&b, "| %d | %s |\n", e.Code, mdCell(e.Meaning))
	}
	b.WriteString("\n## Flags of every command\n")
	writeFlagTable(&b, commonFlags(), nil)
	b.WriteString("\n## Commands\n")
	for _, c := range app.Commands {
		writeCommand(&b, "ahvfs", c)
	}
	return b.String()
}

func writeCommand(b *strings.Builder, parent string, c *cli.Command) {
	if c.Hidden || c.Name == "help" { // help is added by urfave/cli when the app runs
		return
	}
	name := parent + " " + c.Name
	fmt.Fprintf(b, "\n### %s\n%s.\n", name, capitalize(strings.TrimSuffix(c.Usage, ".")))
	if c.Description != "" {
		fmt.Fprintf(b, "\n%s\n", c.Description)
	}
	if len(c.Subcommands) > 0 {
		for _, sub := range c.Subcommands {
			writeCommand(b, name, sub)
		}
		return
	}
	args := strings.TrimSpace(c.ArgsUsage)
	fmt.Fprintf(b, "\n```\n%s [flags]%s\n```\n", name, prefixSpace(args))
	common := map[string]bool{}
	for _, f := range commonFlags() {
		common[f.Names()[0]] = true
	}
	writeFlagTable(b, c.Flags, common)
}

// writeFlagTable writes the visible flags not in skip.
func writeFlagTable(b *strings.Builder, flags []cli.Flag, skip map[string]bool) {
	var rows []string
	for _, f := range flags {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok || skip[f.Names()[0]] {
			continue
		}
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		placeholder, usage := unquoteUsage(df.GetUsage())
		var names []string
		for _, n := range f.Names() {
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			n = dash + n
			if df.TakesValue() {
				n += " " + firstNonEmptyStr(placeholder, "VALUE")
			}
			names = append(names, "`"+n+"`")
		}
		def := ""
		if _, isBool := f.(*cli.BoolFlag); !isBool && df.TakesValue() {
			def = strings.Trim(df.GetDefaultText(), `"`)
		}
		if def == "0" { // an unset number: the usage says what it means
			def = ""
		}
		var env []string
		for _, e := range df.GetEnvVars() {
			env = append(env, "`"+e+"`")
		}
		req := ""
		if rf, ok := f.(cli.RequiredFlag); ok && rf.IsRequired() {
			req = " (required)"
		}
		if def != "" {
			def = "`" + def + "`"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s%s |", strings.Join(names, ", "), strings.Join(env, ", "), def, mdCell(usage), req))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n| flag | environment | default | meaning |\n|---|---|---|---|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

// unquoteUsage takes the placeholder out of a usage's backquotes, as the
// help does: "fixed chunk `SIZE`" is SIZE, "fixed chunk SIZE".
func unquoteUsage(usage string) (string, string) {
	i := strings.IndexByte(usage, '`')
	if i < 0 {
		return "", usage
	}
	j := strings.IndexByte(usage[i+1:], '`')
	if j < 0 {
		return "", usage
	}
	name := usage[i+1 : i+1+j]
	return name, usage[:i] + name + usage[i+2+j:]
}

func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func prefixSpace(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}
