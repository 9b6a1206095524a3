package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
	"github.com/ahvfs/ahvfs/daemon"
)

// consoleClient is a browser-like client of the console: a cookie jar, and
// the session's CSRF token once logged in.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
	// bearer, when set, is sent instead of the session.
	bearer string
}

func (cc *consoleClient) call(method, path string, body any) (int, string) {
	cc.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, cc.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cc.csrf != "" {
		req.Header.Set("X-CSRF-Token", cc.csrf)
	}
	if cc.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+cc.bearer)
	}
	resp, err := cc.c.Do(req)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// login logs in and keeps the CSRF token.
func (cc *consoleClient) login(user string) {
	cc.t.Helper()
	code, body := cc.call("POST", "/api/v1/login", map[string]string{"user": user, "password": "correct horse battery"})
	var r struct {
		CSRF string `json:"csrf_token"`
	}
	if json.Unmarshal([]byte(body), &r); code != http.StatusOK || r.CSRF == "" {
		cc.t.Fatalf("login %s: %d %s", user, code, body)
	}
	cc.csrf = r.CSRF
}

// consoleUsers writes a users file: alice (admin, with an API token
// returned), ops (operator) and helpdesk (restore-files), both scoped to
// category Env:prod; every password is "correct horse battery".
func consoleUsers(t *testing.T, users string) string {
	t.Helper()
	var token string
	err := auth.Update(context.Background(), users, func(us *auth.Users) error {
		scope, err := auth.ParseScope("category:Env:prod")
		if err != nil {
			return err
		}
		for _, u := range []struct {
			name   string
			role   auth.Role
			scopes []auth.Selector
		}{{"alice", auth.RoleAdmin, nil}, {"ops", auth.RoleOperator, []auth.Selector{scope}},
			{"helpdesk", auth.RoleRestoreFiles, []auth.Selector{scope}}} {
			nu, err := auth.NewUser(u.name, u.role, u.scopes, []byte("correct horse battery"), time.Now())
			if err != nil {
				return err
			}
			if err := us.Add(nu); err != nil {
				return err
			}
		}
		token, err = us.AddToken("alice", "test", time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// consoleConfig is the environment's configuration with the console on
// loopback (plain HTTP, allowed there): the users file, exports (none:
// "") and the policies.
func (e *env) consoleConfig(users, exports, policies string) *daemon.Config {
	e.t.Helper()
	text := fmt.Sprintf("\n[http]\nlisten = \"127.0.0.1:0\"\nusers = %q\n", users)
	if exports != "" {
		text += fmt.Sprintf("export_dir = %q\n", exports)
	}
	return e.config(text + policies)
}

// serveHTTP serves the daemon's listener until the test ends and returns
// its address.
func serveHTTP(t *testing.T, e *env, h daemon.HTTPConfig) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- e.d.Serve(ctx, h, func(a string) { addr <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	return <-addr
}

// TestConsoleActions: the console's actions, with their roles and scopes.
// A restore-files user may start nothing (403, audited); a POST without
// the CSRF token is refused. An operator scoped to Env:prod cannot touch
// web01 (404), backs up db01 now and follows the job (queued or running,
// then ended with a new restore point), restores db01 to the simulator
// under a new name (byte-exact), exports it as qcow2 (downloaded from the
// job, byte-exact once converted back), and may not lock. The admin's token locks
// a restore point (then forget is refused: 409) and forgets another.
func TestConsoleActions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "web01", "db01")
	if err := e.sim.SetVMCategories(ctx, "db01", map[string][]string{"Env": {"prod"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	token := consoleUsers(t, users)
	cfg := e.consoleConfig(users, filepath.Join(dir, "exports"), `
[[policy]]
name = "gold"
vms = ["web01"]
every = "24h"
[[policy]]
name = "silver"
vms = ["db01"]
every = "24h"
sync_to = "dr"
`)
	e.start(cfg)
	first := e.expect("backup/gold", "backup/silver", "sync/silver")["backup/silver"]

	base := "http://" + serveHTTP(t, e, cfg.HTTP)
	client := func() *consoleClient {
		jar, _ := cookiejar.New(nil)
		return &consoleClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	}

	// The page and its assets, to anyone (they hold no data), with a
	// policy that keeps the page to itself.
	for _, p := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") {
			t.Fatalf("GET %s: %d, CSP %q", p, resp.StatusCode, csp)
		}
	}
	if resp, err := http.Get(base + "/ui/nothing.js"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /ui/nothing.js: %v %v", resp.StatusCode, err)
	}

	// helpdesk: browse and download only.
	hd := client()
	hd.login("helpdesk")
	at := strings.TrimPrefix(first.VMs[0].RestorePoint, "db01@")
	for _, p := range []string{"/api/v1/vms/db01/backup", "/api/v1/vms/db01/points/" + at + "/restore",
		"/api/v1/vms/db01/points/" + at + "/lock", "/api/v1/vms/db01/points/" + at + "/forget", "/api/v1/vms/db01/points/" + at + "/export"} {
		if code, body := hd.call("POST", p, map[string]any{}); code != http.StatusForbidden {
			t.Fatalf("helpdesk POST %s: %d %s", p, code, body)
		}
	}
	ops := client()
	ops.login("ops")
	csrf := ops.csrf
	ops.csrf = ""
	if code, _ := ops.call("POST", "/api/v1/vms/db01/backup", map[string]any{}); code != http.StatusForbidden {
		t.Fatalf("a backup without the CSRF token: %d", code)
	}
	ops.csrf = csrf
	if code, body := ops.call("POST", "/api/v1/vms/web01/backup", map[string]any{}); code != http.StatusNotFound || strings.Contains(body, "gold") {
		t.Fatalf("ops backs up web01 (not in its scope): %d %s", code, body)
	}
	if code, body := ops.call("POST", "/api/v1/vms/db01/backup", map[string]any{"level": "full"}); code != http.StatusBadRequest {
		t.Fatalf("a backup with an unknown field: %d %s", code, body)
	}

	// Back up now, and follow the job.
	code, body := ops.call("POST", "/api/v1/vms/db01/backup", map[string]any{})
	var started struct{ Job string }
	if json.Unmarshal([]byte(body), &started); code != http.StatusAccepted || started.Job == "" {
		t.Fatalf("ops backs up db01: %d %s", code, body)
	}
	code, body = ops.call("GET", "/api/v1/jobs/"+started.Job, nil)
	if code != http.StatusOK || !strings.Contains(body, `"db01"`) {
		t.Fatalf("the job as it starts: %d %s", code, body)
	}
	j := e.expect("backup/silver", "sync/silver")["backup/silver"]
	if j.ID != started.Job || j.Trigger != "console" || !slices.Contains(j.Notes, "started by ops in the console") ||
		len(j.VMs) != 1 || j.VMs[0].VM != "db01" || j.VMs[0].Level != "incremental" {
		t.Fatalf("the console's backup: %+v", j)
	}
	var job struct {
		Result string
		VMs    []struct {
			VM           string
			RestorePoint string `json:"restore_point"`
		} `json:"vms"`
	}
	code, body = ops.call("GET", "/api/v1/jobs/"+started.Job, nil)
	if json.Unmarshal([]byte(body), &job); code != http.StatusOK || job.Result != "ok" || len(job.VMs) != 1 ||
		job.VMs[0].RestorePoint != j.VMs[0].RestorePoint {
		t.Fatalf("the job once ended: %d %s", code, body)
	}
	// The same job through /jobs, for the operator's scope: db01 alone.
	if code, body := ops.call("GET", "/api/v1/jobs", nil); code != http.StatusOK || strings.Contains(body, "web01") || !strings.Contains(body, started.Job) {
		t.Fatalf("ops's jobs: %d %s", code, body)
	}

	// Both points are at DR, as the dashboard and the points say.
	code, body = ops.call("GET", "/api/v1/vms", nil)
	var vms struct {
		VMs []struct {
			Name     string
			DRTarget string  `json:"dr_target"`
			Lag      float64 `json:"dr_lag_seconds"`
		}
	}
	if json.Unmarshal([]byte(body), &vms); code != http.StatusOK || len(vms.VMs) != 1 || vms.VMs[0].DRTarget != "dr" || vms.VMs[0].Lag != 0 {
		t.Fatalf("ops's dashboard: %d %s", code, body)
	}
	code, body = ops.call("GET", "/api/v1/vms/db01/points", nil)
	if code != http.StatusOK || strings.Count(body, `"replicated":true`) != 2 {
		t.Fatalf("db01's points, both replicated: %d %s", code, body)
	}

	// Restore the first point under a new name; the disk comes back as
	// it was backed up.
	code, body = ops.call("POST", "/api/v1/vms/db01/points/"+at+"/restore", map[string]any{"name": "db01-restored", "power_on": true, "data_path": "rest"})
	if json.Unmarshal([]byte(body), &started); code != http.StatusAccepted {
		t.Fatalf("ops restores db01: %d %s", code, body)
	}
	if code, body := ops.call("POST", "/api/v1/vms/db01/points/2020-01-01T00:00:00Z/restore", map[string]any{}); code != http.StatusNotFound {
		t.Fatalf("restore of a point that is not there: %d %s", code, body)
	}
	if code, body := ops.call("POST", "/api/v1/vms/db01/points/"+at+"/restore", map[string]any{"cluster": "nowhere"}); code != http.StatusBadRequest {
		t.Fatalf("restore to a cluster not configured: %d %s", code, body)
	}
	rj := e.expect("restore/")["restore/"]
	if rj.ID != started.Job || len(rj.VMs) != 1 || rj.VMs[0].RestorePoint != "db01@"+at {
		t.Fatalf("the restore job: %+v", rj)
	}
	restored, ok := e.sim.VM("db01-restored")
	if !ok {
		t.Fatalf("no VM db01-restored on the cluster; job %+v", rj)
	}
	orig, _ := e.sim.VM("db01")
	want, _ := os.ReadFile(orig.Disks[0]) // unchanged since the first backup
	got, _ := os.ReadFile(restored.Disks[0])
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Fatalf("the restored disk differs from db01's (%d and %d bytes)", len(got), len(want))
	}
	// Export the first point as qcow2, and download its disk.
	if code, body := ops.call("POST", "/api/v1/vms/db01/points/"+at+"/export", map[string]any{"format": "vdi"}); code != http.StatusBadRequest {
		t.Fatalf("an export to an unknown format: %d %s", code, body)
	}
	code, body = ops.call("POST", "/api/v1/vms/db01/points/"+at+"/export", map[string]any{"format": "qcow2"})
	if json.Unmarshal([]byte(body), &started); code != http.StatusAccepted {
		t.Fatalf("ops exports db01: %d %s", code, body)
	}
	e.expect("export/")
	var ej struct{ Files []string }
	code, body = ops.call("GET", "/api/v1/jobs/"+started.Job, nil)
	if json.Unmarshal([]byte(body), &ej); code != http.StatusOK || !slices.Equal(ej.Files, []string{"db01.ovf", "db01.xml", "disk-0.qcow2"}) {
		t.Fatalf("the export job: %d %s", code, body)
	}
	code, qcow := ops.call("GET", "/api/v1/jobs/"+started.Job+"/files/disk-0.qcow2", nil)
	if code != http.StatusOK {
		t.Fatalf("download the exported disk: %d", code)
	}
	q := filepath.Join(dir, "got.qcow2")
	os.WriteFile(q, []byte(qcow), 0o600)
	raw := filepath.Join(dir, "got.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", q, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	if got, _ := os.ReadFile(raw); !bytes.Equal(got, want) {
		t.Fatalf("the exported disk differs from db01's (%d and %d bytes)", len(got), len(want))
	}
	if code, _ := ops.call("GET", "/api/v1/jobs/"+started.Job+"/files/..%2Fusers.json", nil); code != http.StatusNotFound {
		t.Fatalf("a file outside the export: %d", code)
	}
	if code, _ := hd.call("GET", "/api/v1/jobs/"+started.Job+"/files/disk-0.qcow2", nil); code != http.StatusForbidden {
		t.Fatalf("helpdesk (files, not whole disks) downloads the export of its VM: %d", code)
	}
	if code, body := hd.call("GET", "/api/v1/jobs/"+started.Job, nil); code != http.StatusOK || strings.Contains(body, "qcow2") {
		t.Fatalf("the export job for helpdesk names its files: %d %s", code, body)
	}

	if code, _ := ops.call("POST", "/api/v1/vms/db01/points/"+at+"/lock", map[string]any{"until": time.Now().Add(time.Hour)}); code != http.StatusForbidden {
		t.Fatalf("an operator locks: %d", code)
	}

	// The admin locks the first point, cannot forget it, forgets the
	// second.
	admin := client()
	admin.bearer = token
	until := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	if code, body := admin.call("POST", "/api/v1/vms/db01/points/"+at+"/lock", map[string]any{"until": until}); code != http.StatusOK {
		t.Fatalf("lock: %d %s", code, body)
	}
	e.expect("lock/")
	if code, body := admin.call("POST", "/api/v1/vms/db01/points/"+at+"/lock", map[string]any{"until": until.Add(-time.Hour)}); code != http.StatusConflict {
		t.Fatalf("a shorter lock: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/v1/vms/db01/points/"+at+"/forget", nil); code != http.StatusConflict || !strings.Contains(body, "lock") {
		t.Fatalf("forget a locked point: %d %s", code, body)
	}
	second := strings.TrimPrefix(j.VMs[0].RestorePoint, "db01@")
	if code, body := admin.call("POST", "/api/v1/vms/db01/points/"+second+"/forget", nil); code != http.StatusOK {
		t.Fatalf("forget: %d %s", code, body)
	}
	e.expect("forget/")
	code, body = admin.call("GET", "/api/v1/vms/db01/points", nil)
	var pts struct {
		Points []struct {
			Name        string
			LockedUntil time.Time `json:"locked_until"`
		}
	}
	if json.Unmarshal([]byte(body), &pts); code != http.StatusOK || len(pts.Points) != 1 || pts.Points[0].Name != "db01@"+at ||
		!pts.Points[0].LockedUntil.Equal(until) {
		t.Fatalf("db01's points after lock and forget: %d %s", code, body)
	}

	// Every refusal and every action is in the audit log.
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	for _, want := range []string{`"user":"helpdesk","action":"backup"`, `"user":"helpdesk","action":"restore"`,
		`"user":"ops","action":"backup","target":"vm db01","result":"ok"`, `"user":"ops","action":"restore","target":"db01@` + at + `","result":"ok"`,
		`"user":"alice","action":"forget"`, `"user":"ops","action":"lock"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("the audit log has no %s:\n%s", want, audit)
		}
	}
}
