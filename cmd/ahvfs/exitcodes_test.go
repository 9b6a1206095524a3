package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/urfave/cli/v2"
)

func TestExitCodeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, 0},
		{errors.New("disk full"), 1},
		{usagef("bad"), 2},
		{fmt.Errorf("new restore point: %w", engine.ErrInvalid), 2},
		{fmt.Errorf("flag provided but not defined: -x"), 2},
		{fmt.Errorf("open: %w", engine.ErrNotRepository), 3},
		{fmt.Errorf("open: %w", engine.ErrLocked), 4},
		{fmt.Errorf("open: %w", engine.ErrWrongPassword), 5},
		{&hintedError{"wrong repository password", engine.ErrWrongPassword}, 5},
		{fmt.Errorf("probe: %w", nutanix.ErrUnauthorized), 6},
		{fmt.Errorf("probe: %w", nutanix.ErrTLSVerify), 6},
		{fmt.Errorf("get: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), 6},
		{fmt.Errorf("get: %w", &net.DNSError{Err: "no such host", Name: "pc.invalid"}), 6},
		{someFailed(1, 2), 7},
		{fmt.Errorf("backup: %w", someFailed(2, 5)), 7},
		{context.Canceled, 130},
		{&interruptedError{sig: syscall.SIGTERM, err: errors.New("read: EIO")}, 130},
		{cli.Exit("custom", 9), 9},
	} {
		var errb bytes.Buffer
		if got := exitCode(c.err, &errb); got != c.code {
			t.Errorf("%v: exit %d, want %d", c.err, got, c.code)
		}
		if c.err != nil && strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: message not one line: %q", c.err, errb.String())
		}
	}
	if s := someFailed(1, 2).Error(); s != "1 of 2 VMs failed" {
		t.Errorf("someFailed: %q", s)
	}
	if s := (&interruptedError{sig: os.Interrupt, err: context.Canceled}).Error(); s != "interrupted by SIGINT" {
		t.Errorf("interrupted: %q", s)
	}
}

// TestExitCodeClasses runs a command of each class of failure in-process.
func TestExitCodeClasses(t *testing.T) {
	for _, k := range []string{"AHVFS_REPO", "AHVFS_REPO_PASSWORD_FILE", "AHVFS_PASSWORD", "AHVFS_PASSWORD_FILE", "AHVFS_PRISM", "AHVFS_CA_CERT", "AHVFS_USER"} {
		t.Setenv(k, "")
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "img.raw")
	os.WriteFile(img, bytes.Repeat([]byte("ahvfs"), 100000), 0o644)
	repo := filepath.Join(tmp, "repo")
	mustCLI(t, "init", "--repo", repo, "--chunk-size", "64KiB")
	encRepo := filepath.Join(tmp, "enc")
	pw, wrong := filepath.Join(tmp, "pw"), filepath.Join(tmp, "wrong")
	os.WriteFile(pw, []byte("right\n"), 0o600)
	os.WriteFile(wrong, []byte("wrong\n"), 0o600)
	mustCLI(t, "init", "--repo", encRepo, "--encrypt", "--repo-password-file", pw)
	locked := filepath.Join(tmp, "locked")
	mustCLI(t, "init", "--repo", locked)
	holder, err := engine.Open(context.Background(), locked, engine.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	sim, err := prismsim.New(context.Background(), prismsim.Options{StateDir: t.TempDir(), TaskDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown flag", []string{"list", "--nope"}, 2, "unknown flag --nope"},
		{"unknown command", []string{"nosuch"}, 2, `unknown command "nosuch"`},
		{"unknown subcommand", []string{"iscsi", "nosuch"}, 2, `unknown command "iscsi nosuch"`},
		{"help on an unknown command", []string{"help", "nosuch"}, 2, "nosuch"},
		{"bad size", []string{"init", "--repo", filepath.Join(tmp, "r2"), "--pack-size", "big"}, 2, `invalid value "big" for --pack-size`},
		{"missing argument", []string{"import", "--repo", repo, "--vm", "a"}, 2, "name at least one image"},
		{"no repository", []string{"list", "--repo", t.TempDir()}, 3, "not an ahvfs repository"},
		{"locked", []string{"import", "--repo", locked, "--vm", "a", img}, 4, "locked"},
		{"missing password", []string{"list", "--repo", encRepo}, 5, "--repo-password-file"},
		{"wrong password", []string{"list", "--repo", encRepo, "--repo-password-file", wrong}, 5,
			"wrong repository password (check --repo-password-file or AHVFS_REPO_PASSWORD_FILE)"},
		{"cluster refuses the password", []string{"vms", "--prism", sim.URL(), "--ca-cert", sim.CAFile(), "--password-file", wrong}, 6, "401"},
		{"cluster certificate not trusted", []string{"vms", "--prism", sim.URL(), "--password-file", sim.PasswordFile()}, 6, "not trusted"},
		{"cluster unreachable", []string{"vms", "--prism", closedAddr, "--ca-cert", sim.CAFile(), "--password-file", sim.PasswordFile()}, 6, "connection refused"},
		{"other", []string{"cat", "--repo", repo, "nope@latest", "disk-0"}, 1, "not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := runCLI(t, "", c.args...)
			if code != c.code || !strings.Contains(errs, c.msg) || strings.Count(errs, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line with %q", code, errs, c.code, c.msg)
			}
		})
	}

	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(&interruptedError{sig: syscall.SIGTERM})
		var out, errb bytes.Buffer
		code := runMain(ctx, strings.NewReader(""), &out, &errb, []string{"ahvfs", "import", "--repo", repo, "--vm", "a", img})
		if code != exitInterrupted || !strings.HasSuffix(errb.String(), "interrupted by SIGTERM\n") || strings.Count(errb.String(), "\n") != 1 {
			t.Fatalf("exit %d, stderr %q", code, errb.String())
		}
		if out := mustCLI(t, "list", "--repo", repo); strings.Contains(out, "a ") {
			t.Fatalf("an interrupted import left a restore point:\n%s", out)
		}
	})
}
