package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCLIDocIsCurrent regenerates docs/cli.md in-process and compares it
// with the file in the repository.
func TestCLIDocIsCurrent(t *testing.T) {
	want := cliMarkdown(newApp(nil, nil, nil))
	got, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatalf("%v: generate it with `go generate ./cmd/ahvfs`", err)
	}
	if string(got) == want {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("docs/cli.md is stale: regenerate it with `go generate ./cmd/ahvfs` "+
				"(or `go run ./cmd/ahvfs help-markdown --out docs/cli.md`)\nline %d:\n  file:      %q\n  generated: %q", i+1, g, w)
		}
	}
}

// TestHelpMarkdownCommand: the hidden command prints the same reference,
// which documents every visible command and the exit codes.
func TestHelpMarkdownCommand(t *testing.T) {
	out := mustCLI(t, "help-markdown")
	if out != cliMarkdown(newApp(nil, nil, nil)) {
		t.Fatal("help-markdown differs from cliMarkdown")
	}
	for _, c := range newApp(nil, nil, nil).Commands {
		if !c.Hidden && !strings.Contains(out, "\n### ahvfs "+c.Name+"\n") {
			t.Errorf("command %s is not documented", c.Name)
		}
	}
	for _, want := range []string{"| 2 | usage", "| 130 |", "`--chunk-size SIZE` |  | `1MiB` |", "`AHVFS_REPO_PASSWORD_FILE`"} {
		if !strings.Contains(out, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	if strings.Contains(out, "### ahvfs help-markdown") || strings.Contains(out, "--password-file FILE` | `AHVFS_REPO") {
		t.Error("the reference shows a hidden command or flag")
	}
}

// TestReadmeLinks: the README links only to files of the repository that
// exist, and opens with `make demo` and `make test`.
func TestReadmeLinks(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if strings.Contains(readme, "../") {
		t.Error("README points outside the repository (../)")
	}
	links := regexp.MustCompile(`\]\(([^)]+)\)`).FindAllStringSubmatch(readme, -1)
	if len(links) == 0 {
		t.Error("README links nothing (expected docs/cli.md at least)")
	}
	for _, m := range links {
		target := m[1]
		if strings.Contains(target, "://") {
			t.Errorf("README links outside the repository: %s", target)
			continue
		}
		if _, err := os.Stat(filepath.Join("../..", strings.SplitN(target, "#", 2)[0])); err != nil {
			t.Errorf("README links a missing file: %s", target)
		}
	}
	block := readme[strings.Index(readme, "```sh\n")+6:]
	lines := strings.SplitN(block, "\n", 3)
	if !strings.HasPrefix(lines[0], "make demo") || !strings.HasPrefix(lines[1], "make test") {
		t.Errorf("README's first commands are %q, %q; want make demo, make test", lines[0], lines[1])
	}
}
