package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// TestUserCommands: add (password from a file or stdin), list (text and
// JSON, never a hash), token (printed once, verifies), passwd, del (the
// user and its tokens go); the users file stays mode 0600.
func TestUserCommands(t *testing.T) {
	t.Setenv("AHVFS_USERS_FILE", "")
	t.Setenv("AHVFS_PASSWORD_FILE", "")
	ctx := context.Background()
	tmp := t.TempDir()
	users := filepath.Join(tmp, "etc", "users.json")
	pw, pw2 := filepath.Join(tmp, "pw"), filepath.Join(tmp, "pw2")
	writeFile(t, pw, "correct horse battery staple\n")
	writeFile(t, pw2, "another long passphrase\n")

	if _, errs, code := runCLI(t, "", "user", "list", "--users", users); code != 1 || !strings.Contains(errs, "ahvfs user add") {
		t.Fatalf("list without a users file: exit %d: %s", code, errs)
	}
	out := mustCLI(t, "user", "add", "alice", "--role", "admin", "--password-file", pw, "--users", users)
	if !strings.Contains(out, "added user alice (role admin, sees every VM)") {
		t.Fatalf("add: %s", out)
	}
	out, errs, code := runCLI(t, "another long passphrase\n", "user", "add", "--users", users, "rita", "--role", "restore-files",
		"--scope", "web*", "--scope", "category:Env:prod", "--password-file", "-")
	if code != 0 || !strings.Contains(out, "sees name:web*,category:Env:prod") {
		t.Fatalf("add with scopes, password on stdin: exit %d: %s %s", code, out, errs)
	}
	st, err := os.Stat(users)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v %v, want mode 0600", st.Mode(), err)
	}

	tokOut, errs, code := runCLI(t, "", "user", "token", "rita", "--label", "grafana", "--users", users)
	token := strings.TrimSpace(tokOut)
	if code != 0 || !regexp.MustCompile(`^ahvfs_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`).MatchString(token) || !strings.Contains(errs, "cannot be shown again") {
		t.Fatalf("token: exit %d: %q %s", code, tokOut, errs)
	}
	us, err := auth.Load(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	if u, _, ok := us.VerifyToken(token); !ok || u.Name != "rita" {
		t.Fatalf("the printed token does not verify as rita's")
	}
	if ok, _ := auth.CheckPassword(us.Lookup("rita").Password, []byte("another long passphrase")); !ok {
		t.Fatal("rita's password from stdin does not check")
	}
	file := mustReadFile(t, users)

	out = mustCLI(t, "user", "list", "--users", users)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !regexp.MustCompile(`^alice\s+admin\s+every VM\s+0\s+\d{4}-`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^rita\s+restore-files\s+name:web\*,category:Env:prod\s+1\s`).MatchString(lines[2]) {
		t.Fatalf("list:\n%s", out)
	}
	jsonOut := mustCLI(t, "user", "list", "--users", users, "--json")
	var listed []struct {
		Name   string   `json:"name"`
		Role   string   `json:"role"`
		Scopes []string `json:"scopes"`
		Tokens []struct {
			ID, Label string
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &listed); err != nil || len(listed) != 2 || listed[1].Name != "rita" ||
		len(listed[1].Scopes) != 2 || len(listed[1].Tokens) != 1 || listed[1].Tokens[0].Label != "grafana" {
		t.Fatalf("list --json: %v\n%s", err, jsonOut)
	}
	for _, o := range []string{out, jsonOut} {
		if strings.Contains(o, "argon2") || strings.Contains(o, "$") || strings.Contains(o, token[23:]) {
			t.Fatalf("list shows a hash or a secret:\n%s", o)
		}
	}
	for _, sha := range regexp.MustCompile(`"sha256": "([0-9a-f]+)"`).FindAllStringSubmatch(file, -1) {
		if strings.Contains(jsonOut, sha[1]) {
			t.Fatal("list --json shows a token's hash")
		}
	}

	// A second token, revoked alone: the first still works.
	second := strings.TrimSpace(mustCLI(t, "user", "token", "rita", "--users", users))
	us, _ = auth.Load(ctx, users)
	_, tok2, _ := us.VerifyToken(second)
	if out := mustCLI(t, "user", "revoke", "rita", tok2.ID, "--users", users); !strings.Contains(out, "revoked API token "+tok2.ID) {
		t.Fatalf("revoke: %s", out)
	}
	us, _ = auth.Load(ctx, users)
	if _, _, ok := us.VerifyToken(second); ok {
		t.Fatal("a revoked token still verifies")
	}
	if _, _, ok := us.VerifyToken(token); !ok {
		t.Fatal("revoking one token revoked another")
	}
	if _, errs, code := runCLI(t, "", "user", "revoke", "rita", tok2.ID, "--users", users); code == 0 || !strings.Contains(errs, "no API token") {
		t.Fatalf("revoking a token twice: exit %d %s", code, errs)
	}

	// A token for 90 days: its expiry is in the file and in list --json.
	third := strings.TrimSpace(mustCLI(t, "user", "token", "rita", "--for", "90d", "--users", users))
	us, _ = auth.Load(ctx, users)
	_, tok3, _ := us.VerifyToken(third)
	if tok3 == nil || tok3.Expires.Sub(tok3.Created.Truncate(time.Second)) != 90*24*time.Hour {
		t.Fatalf("a token --for 90d: %+v", tok3)
	}
	if out := mustCLI(t, "user", "list", "--json", "--users", users); !strings.Contains(out, `"expires": "`+tok3.Expires.Format(time.RFC3339)) {
		t.Fatalf("list --json without the expiry:\n%s", out)
	}
	if _, errs, code := runCLI(t, "", "user", "token", "rita", "--until", "2020-01-01T00:00:00Z", "--users", users); code != exitUsage || !strings.Contains(errs, "passed") {
		t.Fatalf("a token until a past time: exit %d %s", code, errs)
	}
	mustCLI(t, "user", "revoke", "rita", tok3.ID, "--users", users)

	mustCLI(t, "user", "passwd", "alice", "--password-file", pw2, "--users", users)
	us, _ = auth.Load(ctx, users)
	if ok, _ := auth.CheckPassword(us.Lookup("alice").Password, []byte("another long passphrase")); !ok {
		t.Fatal("passwd did not change alice's password")
	}
	out = mustCLI(t, "user", "del", "rita", "--users", users)
	if !strings.Contains(out, "removed user rita and its 1 API token") {
		t.Fatalf("del: %s", out)
	}
	us, _ = auth.Load(ctx, users)
	if us.Lookup("rita") != nil || len(us.Users) != 1 {
		t.Fatalf("rita is still there: %+v", us.Users)
	}
	if _, _, ok := us.VerifyToken(token); ok {
		t.Fatal("the token of a removed user verifies")
	}
	if st, err := os.Stat(users); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file after changes: %v %v, want mode 0600", st.Mode(), err)
	}

	// The environment names the file.
	t.Setenv("AHVFS_USERS_FILE", users)
	if out := mustCLI(t, "user", "list"); !strings.Contains(out, "alice") {
		t.Fatalf("list with $AHVFS_USERS_FILE: %s", out)
	}
}

// TestUserCommandErrors: a duplicate user, a bad role, a short password, a
// bad name or scope, a missing password file, an unknown user: clear
// one-line errors, usage errors exit 2, and the file is left as it was.
func TestUserCommandErrors(t *testing.T) {
	t.Setenv("AHVFS_USERS_FILE", "")
	t.Setenv("AHVFS_PASSWORD_FILE", "")
	tmp := t.TempDir()
	users := filepath.Join(tmp, "users.json")
	pw, short := filepath.Join(tmp, "pw"), filepath.Join(tmp, "short")
	writeFile(t, pw, "correct horse battery staple\n")
	writeFile(t, short, "hunter2\n")
	mustCLI(t, "user", "add", "alice", "--role", "operator", "--password-file", pw, "--users", users)
	before := mustReadFile(t, users)

	// Prism's password file in the environment is not a console password.
	t.Setenv("AHVFS_PASSWORD_FILE", pw)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"add", "alice", "--role", "admin", "--password-file", pw}, 1, "user exists"},
		{[]string{"add", "bob", "--role", "root", "--password-file", pw}, 2, `unknown role "root"`},
		{[]string{"add", "bob", "--password-file", pw}, 2, "--role"},
		{[]string{"add", "bob", "--role", "admin", "--password-file", short}, 1, "at least 12"},
		{[]string{"add", "bob", "--role", "admin"}, 2, "--password-file"},
		{[]string{"add", "bob", "--role", "admin", "--password-file", filepath.Join(tmp, "missing")}, 1, "read password file"},
		{[]string{"add", "bad name", "--role", "admin", "--password-file", pw}, 2, "spaces"},
		{[]string{"add", "bob", "--role", "admin", "--scope", "vm:x", "--password-file", pw}, 2, "--scope"},
		{[]string{"add", "--role", "admin", "--password-file", pw}, 2, "NAME"},
		{[]string{"passwd", "alice", "--password-file", short}, 1, "at least 12"},
		{[]string{"passwd", "bob", "--password-file", pw}, 1, "no such user"},
		{[]string{"del", "bob"}, 1, "no such user"},
		{[]string{"token", "bob"}, 1, "no such user"},
		{[]string{"list", "extra"}, 2, "unexpected argument"},
	} {
		args := append(append([]string{"user"}, tc.args...), "--users", users)
		out, errs, code := runCLI(t, "", args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 || out != "" {
			t.Errorf("ahvfs %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", strings.Join(args, " "), code, out, errs, tc.code, tc.want)
		}
	}
	if after := mustReadFile(t, users); after != before {
		t.Fatalf("a failed command changed the users file")
	}
}

func mustReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
