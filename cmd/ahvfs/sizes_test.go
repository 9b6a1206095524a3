package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1048576", 1 << 20},
		{"1MiB", 1 << 20},
		{"1 MiB", 1 << 20},
		{" 1mib ", 1 << 20},
		{"4GiB", 4 << 30},
		{"1.5GiB", 3 << 29},
		{"1.2 GiB", 1288490188}, // as ibytes prints it: rounded down to a byte
		{".5KiB", 512},
		{"64KiB", 64 << 10},
		{"10MB", 10_000_000},
		{"1kB", 1000},
		{"512B", 512},
		{"7EiB", 7 << 60},
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := parseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, why string }{
		{"", "empty"},
		{"-1", "negative"},
		{"-1MiB", "negative"},
		{"junk", "want bytes"},
		{"1M", "ambiguous"},
		{"4G", "ambiguous"},
		{"1 furlong", "unknown unit"},
		{"1e6", "want bytes"},
		{"0x100", "want bytes"},
		{"1,5GiB", "want bytes"},
		{"1.2.3", "want bytes"},
		{"8EiB", "too large"},
		{"9223372036854775808", "too large"},
		{"99999999999999999999999TiB", "too large"},
		{"1MiB/s", "want bytes"},
	} {
		_, err := parseSize(c.in)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("parseSize(%q): %v; want a usage error saying %q", c.in, err, c.why)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"100MiB/s", 100 << 20},
		{"100 MiB/s", 100 << 20},
		{"100MiB", 100 << 20},
		{"1048576", 1 << 20},
		{"1048576/s", 1 << 20},
		{"10MB/s", 10_000_000},
		{"0", 0},
	} {
		got, err := parseRate(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "fast", "-1MiB/s", "100MiB/h", "100Mbit/s", "1/s/s"} {
		if _, err := parseRate(in); err == nil || !strings.Contains(err.Error(), "rate") {
			t.Errorf("parseRate(%q): %v; want an error", in, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1: "1", 1000: "1000", 1536: "1536", 1 << 20: "1MiB", 32 << 20: "32MiB", 3 << 29: "1536MiB", 1 << 62: "4EiB"} {
		got := formatSize(n)
		if got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := parseSize(got); err != nil || back != n {
			t.Errorf("parseSize(formatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

// sizeFlagUse is one size flag of one command, found by walking the app.
type sizeFlagUse struct {
	path []string // command path, "iscsi", "cat"
	cmd  *cli.Command
	flag *sizeFlag
}

func sizeFlagsOf(cmds []*cli.Command, parent []string) []sizeFlagUse {
	var out []sizeFlagUse
	for _, c := range cmds {
		path := append(append([]string{}, parent...), c.Name)
		for _, f := range c.Flags {
			if sf, ok := f.(*sizeFlag); ok {
				out = append(out, sizeFlagUse{path, c, sf})
			}
		}
		out = append(out, sizeFlagsOf(c.Subcommands, path)...)
	}
	return out
}

// TestEverySizeFlag walks every command of the app and feeds each flag of
// the size type 1MiB, 1048576, 1.5 KiB and junk through the real command
// line (the command's action replaced by one that reads the value), so a
// new size flag is covered without a new test.
func TestEverySizeFlag(t *testing.T) {
	found := map[string]bool{}
	for _, use := range sizeFlagsOf(newApp(nil, nil, nil).Commands, nil) {
		name := use.flag.Name
		found[strings.Join(use.path, " ")+" --"+name] = true
		help := use.flag.String()
		placeholder := regexp.MustCompile(`--` + regexp.QuoteMeta(name) + ` (SIZE|RATE)\b`)
		if !placeholder.MatchString(help) {
			t.Errorf("%s --%s: help %q shows no SIZE or RATE placeholder (put it in the usage's backquotes)", use.path, name, help)
		}
		rate := use.flag.Value.(*sizeValue).rate
		cases := []struct {
			value string
			want  int64
		}{{"1MiB", 1 << 20}, {"1048576", 1 << 20}, {"1.5 KiB", 1536}}
		if rate {
			cases = append(cases, struct {
				value string
				want  int64
			}{"1MiB/s", 1 << 20})
		}
		for _, c := range cases {
			got, errs, code := runWithSizeFlag(t, use, c.value)
			if code != 0 || got != c.want {
				t.Errorf("ahvfs %s --%s %q: exit %d, value %d, want %d (%s)", strings.Join(use.path, " "), name, c.value, code, got, c.want, errs)
			}
		}
		for _, bad := range []string{"junk", "-1MiB", "1M", "9999999EiB"} {
			_, errs, code := runWithSizeFlag(t, use, bad)
			if code != exitUsage || !strings.Contains(errs, "--"+name) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
				t.Errorf("ahvfs %s --%s %q: exit %d, stderr %q; want exit 2 and one line naming the flag", strings.Join(use.path, " "), name, bad, code, errs)
			}
		}
	}
	for _, want := range []string{"init --chunk-size", "init --pack-size", "iscsi cat --offset", "iscsi cat --length", "iscsi write --offset"} {
		if !found[want] {
			t.Errorf("%s is not a size flag (found %v)", want, found)
		}
	}
}

// runWithSizeFlag runs `ahvfs PATH --FLAG value` in-process with the
// command's action replaced, and returns the value the action read. Other
// required flags get a dummy value.
func runWithSizeFlag(t *testing.T, use sizeFlagUse, value string) (int64, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(strings.NewReader(""), &out, &errb)
	cmds, cmd := app.Commands, (*cli.Command)(nil)
	for _, name := range use.path {
		cmd = findCommand(cmds, name)
		cmds = cmd.Subcommands
	}
	got := int64(-1)
	cmd.Action = func(c *cli.Context) error { got = flagSize(c, use.flag.Name); return nil }
	args := append([]string{"ahvfs"}, use.path...)
	for _, f := range cmd.Flags {
		if rf, ok := f.(cli.RequiredFlag); ok && rf.IsRequired() && f.Names()[0] != use.flag.Name {
			args = append(args, "--"+f.Names()[0], "0")
		}
	}
	args = append(args, "--"+use.flag.Name, value)
	code := exitCode(app.RunContext(context.Background(), reorderArgs(app, args)), &errb)
	return got, errb.String(), code
}

// sizeName matches flag names and placeholders that hold a size.
var sizeName = regexp.MustCompile(`(^|-)(size|length|offset|memory|bwlimit|bytes)$`)

// pendingSizeFlags are size flags of files other engineers own that do not
// use sizeFlag yet; each should become newSizeFlag and leave this list.
var pendingSizeFlags = map[string]bool{}

// TestNoSizeFlagWithoutTheSizeType finds flags that look like sizes (by
// name or SIZE/RATE placeholder) but are not of the size type.
func TestNoSizeFlagWithoutTheSizeType(t *testing.T) {
	var walk func(cmds []*cli.Command, parent string)
	walk = func(cmds []*cli.Command, parent string) {
		for _, c := range cmds {
			path := strings.TrimSpace(parent + " " + c.Name)
			for _, f := range c.Flags {
				if _, ok := f.(*sizeFlag); ok {
					continue
				}
				df, _ := f.(cli.DocGenerationFlag)
				placeholder := ""
				if df != nil {
					placeholder, _ = unquoteUsage(df.GetUsage())
				}
				key := path + " --" + f.Names()[0]
				if (sizeName.MatchString(f.Names()[0]) || placeholder == "SIZE" || placeholder == "RATE") && !pendingSizeFlags[key] {
					t.Errorf("%s looks like a size but is %T: make it newSizeFlag (or newRateFlag)", key, f)
				}
			}
			walk(c.Subcommands, path)
		}
	}
	walk(newApp(nil, nil, nil).Commands, "")
}
