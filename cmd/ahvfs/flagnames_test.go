package main

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// pendingEnvMismatch are flags whose environment variables differ between
// commands in files other engineers own: backup and restore should build
// --initiator-iqn with initiatorIQNFlag().
var pendingEnvMismatch = map[string]bool{}

// TestOneNamePerConcept: an environment variable feeds one flag name
// everywhere, and a flag name reads the same environment variables in
// every command (init once read the repository password from
// --password-file, Prism's password elsewhere).
func TestOneNamePerConcept(t *testing.T) {
	envToFlags := map[string]map[string]bool{}
	flagEnv := map[string]map[string][]string{} // flag -> env list -> commands
	var walk func(cmds []*cli.Command, parent string)
	walk = func(cmds []*cli.Command, parent string) {
		for _, c := range cmds {
			path := strings.TrimSpace(parent + " " + c.Name)
			for _, f := range c.Flags {
				df, ok := f.(cli.DocGenerationFlag)
				if !ok {
					continue
				}
				if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
					continue
				}
				name := f.Names()[0]
				env := df.GetEnvVars()
				for _, e := range env {
					if envToFlags[e] == nil {
						envToFlags[e] = map[string]bool{}
					}
					envToFlags[e][name] = true
				}
				key := strings.Join(env, ",")
				if flagEnv[name] == nil {
					flagEnv[name] = map[string][]string{}
				}
				flagEnv[name][key] = append(flagEnv[name][key], path)
			}
			walk(c.Subcommands, path)
		}
	}
	walk(newApp(nil, nil, nil).Commands, "")
	for e, names := range envToFlags {
		if len(names) > 1 {
			t.Errorf("$%s feeds several flags: %v", e, keys(names))
		}
	}
	for name, byEnv := range flagEnv {
		if len(byEnv) > 1 && !pendingEnvMismatch[name] {
			t.Errorf("--%s reads different environment variables in different commands: %v", name, byEnv)
		}
	}
	if got := envToFlags["AHVFS_REPO_PASSWORD_FILE"]; len(got) != 1 || !got["repo-password-file"] {
		t.Errorf("AHVFS_REPO_PASSWORD_FILE feeds %v, want repo-password-file", keys(got))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestInitPasswordFileDeprecated: init --password-file still encrypts, with
// a warning naming the new flag; both flags at once must agree.
func TestInitPasswordFileDeprecated(t *testing.T) {
	t.Setenv("AHVFS_REPO_PASSWORD_FILE", "")
	tmp := t.TempDir()
	pw, other := tmp+"/pw", tmp+"/other"
	writeFile(t, pw, "s3cret\n")
	writeFile(t, other, "other\n")
	_, errs, code := runCLI(t, "", "init", "--repo", tmp+"/r", "--encrypt", "--password-file", pw)
	if code != 0 || !strings.Contains(errs, "deprecated") || !strings.Contains(errs, "--repo-password-file") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, errs, code := runCLI(t, "", "list", "--repo", tmp+"/r", "--repo-password-file", pw); code != 0 {
		t.Fatalf("the deprecated flag did not set the password: exit %d: %s", code, errs)
	}
	_, errs, code = runCLI(t, "", "init", "--repo", tmp+"/r2", "--encrypt", "--password-file", pw, "--repo-password-file", other)
	if code != exitUsage || !strings.Contains(errs, "give only --repo-password-file") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
