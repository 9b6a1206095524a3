package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/urfave/cli/v2"
)

// simForCLI starts a simulator with two VMs and a stand-in iSCSI portal
// (a TCP listener on the Data Services IP); it returns the simulator and
// the portal's port. closePortal takes the portal down.
// clearSiteEnv empties the environment variables that name a cluster, its
// credentials and a repository, so a test's flags are all that count.
func clearSiteEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AHVFS_PASSWORD", "AHVFS_PASSWORD_FILE", "AHVFS_PRISM", "AHVFS_CA_CERT", "AHVFS_USER", "AHVFS_REPO", "AHVFS_SOURCE"} {
		t.Setenv(k, "")
	}
}

func simForCLI(t *testing.T) (s *prismsim.Sim, port int, closePortal func()) {
	t.Helper()
	clearSiteEnv(t)
	s, err := prismsim.New(context.Background(), prismsim.Options{StateDir: t.TempDir(), TaskDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i, name := range []string{"web01", "db01"} {
		disk := filepath.Join(t.TempDir(), "d.raw")
		if err := os.WriteFile(disk, make([]byte, (i+1)<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		ngt := prismsim.NGTAbsent
		if name == "db01" {
			ngt = prismsim.NGTVSS
		}
		if _, err := s.AddVM(context.Background(), name, []string{disk}, prismsim.VMOptions{NGT: ngt, Move: true}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.DataServicesIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s, ln.Addr().(*net.TCPAddr).Port, func() { ln.Close() }
}

func simArgs(s *prismsim.Sim, port int, extra ...string) []string {
	return append([]string{"--prism", s.URL(), "--password-file", s.PasswordFile(), "--ca-cert", s.CAFile(),
		"--iscsi-port", strconv.Itoa(port), "--timeout", "2s"}, extra...)
}

func TestHealthCheckReady(t *testing.T) {
	s, port, _ := simForCLI(t)
	for _, api := range []string{"auto", "v3", "v4"} {
		out, errs, code := runCLI(t, "", append([]string{"health-check"}, simArgs(s, port, "--api", api)...)...)
		if code != 0 {
			t.Fatalf("--api %s: exit %d\n%s%s", api, code, out, errs)
		}
		for _, want := range []string{"✓ tls", "✓ credentials", "✓ api", "✓ clusters", "✓ dsip", "✓ iscsi", "✓ permissions", "ready"} {
			if !strings.Contains(out, want) {
				t.Errorf("--api %s: output lacks %q:\n%s", api, want, out)
			}
		}
		if strings.Contains(out, "✗") {
			t.Errorf("--api %s: a failed check in a ready report:\n%s", api, out)
		}
	}
	out, _, code := runCLI(t, "", append([]string{"health-check", "--json"}, simArgs(s, port)...)...)
	var rep healthReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.Ready || rep.API != "v4" || len(rep.Checks) < 7 {
		t.Fatalf("--json: exit %d %+v\n%s", code, rep, out)
	}
}

func TestHealthCheckFailures(t *testing.T) {
	s, port, closePortal := simForCLI(t)
	wrongPW := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(wrongPW, []byte("not-the-password\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string // in the one-line error on stderr
		exit int
	}{
		{"no CA", []string{"--prism", s.URL(), "--password-file", s.PasswordFile(), "--iscsi-port", strconv.Itoa(port)},
			"TLS certificate of " + strings.TrimPrefix(s.URL(), "https://") + " is not trusted", exitCluster},
		{"wrong password", []string{"--prism", s.URL(), "--password-file", wrongPW, "--ca-cert", s.CAFile(), "--iscsi-port", strconv.Itoa(port)},
			"credentials: Prism refused user \"admin\"", exitCluster},
		{"no password", []string{"--prism", s.URL(), "--ca-cert", s.CAFile()}, "no password", 2},
		{"no endpoint", []string{"--password-file", s.PasswordFile()}, "no Prism endpoint", 2},
		{"bad api", append(simArgs(s, port), "--api", "v5"), "unknown API version", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := runCLI(t, "", append([]string{"health-check"}, tc.args...)...)
			if code != tc.exit || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 && tc.exit == 2 {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)\nstdout:\n%s", code, tc.exit, errs, tc.want, out)
			}
			if tc.exit == 1 && !strings.Contains(out, "✗") {
				t.Errorf("no ✗ line in the checklist:\n%s", out)
			}
		})
	}
	t.Run("insecure warns but works", func(t *testing.T) {
		out, errs, code := runCLI(t, "", "health-check", "--prism", s.URL(), "--password-file", s.PasswordFile(), "--insecure",
			"--iscsi-port", strconv.Itoa(port))
		if code != 0 || !strings.Contains(errs, "TLS certificate verification is disabled") || !strings.Contains(out, "! tls") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
	})
	t.Run("iSCSI portal down", func(t *testing.T) {
		closePortal()
		out, errs, code := runCLI(t, "", append([]string{"health-check"}, simArgs(s, port)...)...)
		if code != 1 || !strings.Contains(errs, "iSCSI portal") || !strings.Contains(errs, "unreachable") || !strings.Contains(out, "✗ iscsi") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
	})
}

func TestVMs(t *testing.T) {
	s, port, _ := simForCLI(t)
	args := simArgs(s, port)[:6] // --prism, --password-file, --ca-cert
	out := mustCLI(t, append([]string{"vms"}, args...)...)
	for _, want := range []string{"NAME", "DISKS", "NGT", "web01", "db01", "scsi.0 1.0 MiB", "scsi.0 2.0 MiB", "vss", "absent"} {
		if !strings.Contains(out, want) {
			t.Errorf("vms output lacks %q:\n%s", want, out)
		}
	}
	out = mustCLI(t, append([]string{"vms", "--vm", "web*", "--json", "--api", "v3"}, args...)...)
	var vms []map[string]any
	if err := json.Unmarshal([]byte(out), &vms); err != nil || len(vms) != 1 || vms[0]["Name"] != "web01" {
		t.Fatalf("--vm web* --json: %v %s", err, out)
	}
	_, errs, code := runCLI(t, "", append([]string{"vms", "--vm", "nomatch*"}, args...)...)
	if code != 1 || !strings.Contains(errs, "no VM matches") {
		t.Fatalf("no match: exit %d %s", code, errs)
	}
	// the hook for the repository's last restore point
	lastRestorePointHook = func(context.Context, *cli.Context, *cliEnv) (func(nutanix.VM) string, error) {
		return func(v nutanix.VM) string { return v.Name + "@2026-11-22T01:30:00Z" }, nil
	}
	defer func() { lastRestorePointHook = nil }()
	out = mustCLI(t, append([]string{"vms"}, args...)...)
	if !strings.Contains(out, "LAST RESTORE POINT") || !strings.Contains(out, "web01@2026-11-22T01:30:00Z") {
		t.Errorf("hook column missing:\n%s", out)
	}
}
