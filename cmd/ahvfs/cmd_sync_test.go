package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testtls"
)

// serveProc is an `ahvfs serve` child process.
type serveProc struct {
	url    string
	cmd    *exec.Cmd
	stderr *enginetest.LogBuffer
}

// startServe runs ahvfs serve on repo (password file pw, may be empty) on
// 127.0.0.1 with the server certificate of ca, and waits for its URL.
func startServe(t *testing.T, repo, pw string, ca *testtls.CA, extra ...string) *serveProc {
	t.Helper()
	cert, key := ca.Server(t, "dr-server")
	args := append([]string{"serve", "--repo", repo, "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
		"--client-ca", ca.CertFile, "--log-level", "info"}, extra...)
	cmd := exec.Command(ahvfsBin, args...)
	cmd.Env = append(os.Environ(), "AHVFS_REPO_PASSWORD_FILE="+pw)
	p := &serveProc{cmd: cmd, stderr: &enginetest.LogBuffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("serve: %v: %s", err, p.stderr.String())
	}
	m := regexp.MustCompile(`https://[0-9.]+:[0-9]+`).FindString(line)
	if m == "" {
		t.Fatalf("serve printed %q", line)
	}
	p.url = m
	return p
}

func secretFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, body)
	return p
}

type syncJSON struct {
	RestorePoints *int   `json:"restore_points"`
	PagesSent     *int64 `json:"pages_sent"`
	ChunksSent    *int64 `json:"chunks_sent"`
	BytesSent     *int64 `json:"bytes_sent"`
	Seconds       *float64
	Synced        []string `json:"synced"`
}

// TestSyncCommands: an encrypted repository is replicated to a DR copy
// made with init --copy-params-from, through ahvfs serve (append-only)
// and from a local path; the target verifies, keeps names, levels and
// locks, refuses a remote forget; a client of another CA is refused; no
// secret reaches any output.
func TestSyncCommands(t *testing.T) {
	tmp := t.TempDir()
	srcPW := secretFile(t, "src.pw", "source secret 8f3a")
	dstPW := secretFile(t, "dst.pw", "dr secret 77c1")
	src, dst, dst2 := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "dst2")
	mustCLI(t, "init", "--repo", src, "--encrypt", "--repo-password-file", srcPW)
	img := enginetest.Ext4Image(t, 64<<20, 11)
	mustCLI(t, "import", "--repo", src, "--repo-password-file", srcPW, "--vm", "web01", "--time", "2026-11-20T01:00:00Z", img)
	mustCLI(t, "lock", "--repo", src, "--repo-password-file", srcPW, "web01@2026-11-20T01:00:00Z", "--for", "30d")

	// A copy without --encrypt is refused: the source is encrypted.
	if _, errs, code := runCLI(t, "", "init", "--repo", dst, "--copy-params-from", src, "--peer-password-file", srcPW); code != exitUsage || !strings.Contains(errs, "--encrypt") {
		t.Fatalf("init --copy-params-from of an encrypted source without --encrypt: exit %d: %s", code, errs)
	}
	mustCLI(t, "init", "--repo", dst, "--copy-params-from", src, "--peer-password-file", srcPW, "--encrypt", "--repo-password-file", dstPW)

	ca := testtls.NewCA(t, tmp, "sites")
	srv := startServe(t, dst, dstPW, ca, "--append-only")
	cert, key := ca.Client(t, "prod-backup")
	client := []string{"--tls-cert", cert, "--tls-key", key, "--ca-cert", ca.CertFile}
	push := append([]string{"sync", "--repo", src, "--repo-password-file", srcPW, "--to", srv.url, "--json"}, client...)
	out := mustCLI(t, push...)
	var rep syncJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.RestorePoints == nil || rep.PagesSent == nil ||
		rep.ChunksSent == nil || rep.BytesSent == nil || rep.Seconds == nil {
		t.Fatalf("sync --json lacks a contract field: %v: %s", err, out)
	}
	if *rep.RestorePoints != 1 || *rep.ChunksSent == 0 || *rep.BytesSent == 0 {
		t.Fatalf("first sync: %s", out)
	}

	// An incremental at the source; the second sync sends about what it stored.
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 3<<20)
	for i := range junk {
		junk[i] = byte(i*131 + i>>9)
	}
	f.WriteAt(junk, 20<<20)
	f.Close()
	mustCLI(t, "import", "--repo", src, "--repo-password-file", srcPW, "--vm", "web01", "--time", "2026-11-21T01:00:00Z", img)
	var list []listEntry
	json.Unmarshal([]byte(mustCLI(t, "list", "--repo", src, "--repo-password-file", srcPW, "--json")), &list)
	if len(list) != 2 {
		t.Fatalf("source list: %+v", list)
	}
	stored := list[1].Stats.NewStoredBytes
	out = mustCLI(t, push...)
	rep = syncJSON{}
	json.Unmarshal([]byte(out), &rep)
	if *rep.RestorePoints != 1 || *rep.BytesSent > stored*12/10 {
		t.Fatalf("second sync sent %d bytes, the incremental stored %d: %s", *rep.BytesSent, stored, out)
	}
	// The DR copy, listed through the server, is the source's list.
	if got, want := mustCLI(t, append([]string{"list", "--repo", srv.url, "--json"}, client...)...),
		mustCLI(t, "list", "--repo", src, "--repo-password-file", srcPW, "--json"); got != want {
		t.Fatalf("list through the server:\n%s\nthe source's:\n%s", got, want)
	}

	// A remote forget is refused by the append-only server.
	_, errs, code := runCLI(t, "", append([]string{"forget", "--repo", srv.url, "web01@2026-11-20T01:00:00Z"}, client...)...)
	if code == 0 || !strings.Contains(errs, "append-only") {
		t.Fatalf("forget through an append-only server: exit %d: %s", code, errs)
	}
	// So is a remote prune, but for its dry run.
	_, errs, code = runCLI(t, "", append([]string{"prune", "--repo", srv.url, "--keep-last", "1"}, client...)...)
	if code == 0 || !strings.Contains(errs, "append-only") {
		t.Fatalf("prune through an append-only server: exit %d: %s", code, errs)
	}
	out, errs, code = runCLI(t, "", append([]string{"prune", "--repo", srv.url, "--keep-last", "1", "--dry-run", "--json"}, client...)...)
	var plan struct {
		Keep    []string            `json:"keep"`
		Reasons map[string][]string `json:"reasons"`
		DryRun  bool                `json:"dry_run"`
	}
	json.Unmarshal([]byte(out), &plan)
	if code != 0 || !plan.DryRun || len(plan.Keep) != 2 || !slices.Contains(plan.Reasons["web01@2026-11-20T01:00:00Z"], "locked") {
		t.Fatalf("prune --dry-run through an append-only server: exit %d: %s%s", code, out, errs)
	}
	// And gc (but for its dry run) and unlock.
	for _, args := range [][]string{{"gc"}, {"unlock"}} {
		_, errs, code = runCLI(t, "", append(append(args, "--repo", srv.url), client...)...)
		if code == 0 || !strings.Contains(errs, "append-only") {
			t.Fatalf("%s through an append-only server: exit %d: %s", args[0], code, errs)
		}
	}
	out, errs, code = runCLI(t, "", append([]string{"gc", "--repo", srv.url, "--dry-run", "--json"}, client...)...)
	var gcRep struct {
		DryRun bool `json:"dry_run"`
		Points int  `json:"restore_points"`
	}
	if err := json.Unmarshal([]byte(out), &gcRep); err != nil || code != 0 || !gcRep.DryRun || gcRep.Points != 2 {
		t.Fatalf("gc --dry-run through an append-only server: exit %d: %v %s%s", code, err, out, errs)
	}
	if _, errs, code = runCLI(t, "", append([]string{"unlock", "--all", "--repo", srv.url}, client...)...); code != 2 {
		t.Fatalf("unlock --all through a server: exit %d, want 2: %s", code, errs)
	}
	// A port probe (connect, close) is no warning; a client certificate of
	// another CA is refused, with one.
	if c, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "https://")); err == nil {
		c.Close()
	}
	other := testtls.NewCA(t, t.TempDir(), "elsewhere")
	ocert, okey := other.Client(t, "intruder")
	_, errs, code = runCLI(t, "", "sync", "--repo", src, "--repo-password-file", srcPW, "--to", srv.url, "--tls-cert", ocert, "--tls-key", okey, "--ca-cert", ca.CertFile)
	if code == 0 {
		t.Fatalf("sync with a certificate of another CA succeeded: %s", errs)
	}

	// The target: same points, levels and locks; verify --read-data passes.
	var dlist []listEntry
	json.Unmarshal([]byte(mustCLI(t, "list", "--repo", dst, "--repo-password-file", dstPW, "--json")), &dlist)
	if len(dlist) != 2 || dlist[0].Name != list[0].Name || dlist[1].Name != list[1].Name ||
		dlist[0].LockedUntil == "" || dlist[0].LockedUntil != list[0].LockedUntil || dlist[1].Level != list[1].Level {
		t.Fatalf("target list %+v\nsource list %+v", dlist, list)
	}
	mustCLI(t, "verify", "--repo", dst, "--repo-password-file", dstPW, "--read-data")
	for _, name := range []string{list[0].Name, list[1].Name} {
		a := mustCLI(t, "cat", "--repo", src, "--repo-password-file", srcPW, name, "disk-0")
		b := mustCLI(t, "cat", "--repo", dst, "--repo-password-file", dstPW, name, "disk-0")
		if a != b || len(a) != 64<<20 {
			t.Fatalf("%s: disk-0 differs on the target (%d, %d bytes)", name, len(a), len(b))
		}
	}

	// Pull from a local path into a second DR copy.
	mustCLI(t, "init", "--repo", dst2, "--copy-params-from", src, "--peer-password-file", srcPW, "--encrypt", "--repo-password-file", dstPW)
	out = mustCLI(t, "sync", "--repo", dst2, "--repo-password-file", dstPW, "--from", src, "--peer-password-file", srcPW, "--json", "--vm", "web*", "--since", "2026-11-21T00:00:00Z")
	rep = syncJSON{}
	json.Unmarshal([]byte(out), &rep)
	if *rep.RestorePoints != 1 || len(rep.Synced) != 1 || rep.Synced[0] != list[1].Name {
		t.Fatalf("pull --since: %s", out)
	}

	// A service manager's SIGTERM stops the server cleanly: exit 0.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, srv.stderr.String())
	}
	// No secret anywhere the user or a log would see.
	logs := srv.stderr.String()
	if !strings.Contains(logs, "prod-backup") || !strings.Contains(logs, "forget refused") ||
		!strings.Contains(logs, "TLS handshake error") || strings.Contains(logs, ": EOF") {
		t.Fatalf("server log lacks the client's name or the refusals, or warns of a port probe:\n%s", logs)
	}
	keyPEM, _ := os.ReadFile(key)
	for _, secret := range []string{"source secret 8f3a", "dr secret 77c1", strings.Split(string(keyPEM), "\n")[1]} {
		if strings.Contains(logs+out+errs, secret) {
			t.Fatalf("a secret appears in the output or the server log")
		}
	}
	if strings.Contains(strings.Join(srv.cmd.Args, " "), "secret") {
		t.Fatal("a secret is in the server's argv")
	}
}
