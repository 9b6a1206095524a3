package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/testtls"
)

// TestConfigProblems: every problem of a configuration is reported at
// once, each naming its key.
func TestConfigProblems(t *testing.T) {
	_, err := Parse("bad.toml", `
concurrency = -1
colour = "blue"
[log]
format = "xml"
[http]
listen = "127.0.0.1:0"
tls_cert = "/nonexistent/cert.pem"
[[cluster]]
name = "prod"
prism = "pc:9440"
user = "backup"
password_file = "/nonexistent/prism.pw"
[[cluster]]
name = "prod"
prism = "pc2:9440"
user = "b"
password_file = "/nonexistent/pw"
[[policy]]
name = "gold"
cluster = "nowhere"
every = "4x"
keep_within = "forever"
categories = ["Env"]
[[policy]]
name = "gold"
cluster = "prod"
vms = ["web["]
every = "1h"
cron = "* * * * *"
sync_to = "https://dr:8443"
[[policy]]
name = "silver"
cluster = "prod"
vms = ["*"]
cron = "61 * * * *"
window = "25:00-01:00"
`)
	if err == nil {
		t.Fatal("a bad configuration passed")
	}
	msg := err.Error()
	for _, want := range []string{
		"colour: unknown key", "concurrency: -1", "log.format", "http: tls_cert and tls_key go together", "http.tls_cert",
		`cluster[1].name: "prod" names two [[cluster]] tables`, "read password file: open /nonexistent/prism.pw", `policy "gold".cluster: "nowhere"`,
		`policy "gold": every: duration "4x"`, `policy "gold".keep_within`, `category "Env"`, `policy[1].name: "gold" names two [[policy]] tables`,
		`pattern "web["`, "every and cron: give one of them", "needs a [[target]] table", `cron "CRON_TZ=UTC 61 * * * *"`,
		`policy "silver".window`, "repository: missing",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("no problem mentioning %q in:\n%s", want, msg)
		}
	}
}

// TestConfigPool: an XCP-ng pool's table has no Prism keys, a known
// strategy and a password file; its policies select by name, not by
// category, and are not read over iSCSI.
func TestConfigPool(t *testing.T) {
	_, err := Parse("pool.toml", `
repository = "/tmp/repo"
[[cluster]]
name = "pool"
xapi = "https://xcp1"
prism = "pc:9440"
api = "v3"
instant_nfs = "10.0.0.5:2049"
strategy = "snapshot"
insecure = true
ca_cert = "/nonexistent/ca.pem"
[[cluster]]
name = "prod"
prism = "pc:9440"
strategy = "cbt"
[[policy]]
name = "xen"
cluster = "pool"
vms = ["*"]
categories = ["Env:prod"]
data_path = "iscsi"
every = "1h"
[[policy]]
name = "ahv"
cluster = "prod"
vms = ["*"]
data_path = "nbd"
every = "1h"
`)
	if err == nil {
		t.Fatal("a bad pool configuration passed")
	}
	msg := err.Error()
	for _, want := range []string{
		`cluster "pool".xapi: "https://xcp1": want xapi://HOST[:PORT]`, `cluster "pool".prism: an XCP-ng pool (xapi) has no prism`,
		`cluster "pool".api:`, `cluster "pool".instant_nfs:`, `cluster "pool".strategy: "snapshot"`, `cluster "pool".password_file: missing`,
		`policy "xen".categories: cluster pool is an XCP-ng pool`, `policy "xen".data_path: cluster pool is an XCP-ng pool`,
		`cluster "pool": insecure and ca_cert`, `cluster "prod".strategy: only for an XCP-ng pool`,
		`policy "ahv".data_path: nbd reads XCP-ng pools; cluster prod is a Prism`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("no problem mentioning %q in:\n%s", want, msg)
		}
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("pool.toml", fmt.Sprintf(`
repository = "/tmp/repo"
[[cluster]]
name = "pool"
xapi = "xapi://xcp1:8443"
password_file = %q
strategy = "xva"
[[policy]]
name = "xen"
vms = ["*"]
every = "1h"
`, pw))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := cfg.Cluster[0].XAPIURL(); u != "https://xcp1:8443" || cfg.Policy[0].Backup.Strategy != "xva" {
		t.Fatalf("pool %s, strategy %q", u, cfg.Policy[0].Backup.Strategy)
	}
}

// TestConfigExample: the example in contrib/ parses once its files exist.
// TestConfigConsole: the console needs its users file, and HTTPS unless
// it listens on a loopback address; an audit log needs the console.
func TestConfigConsole(t *testing.T) {
	for _, tc := range []struct {
		http string
		want []string
	}{
		{"listen = \"0.0.0.0:9090\"\nusers = \"/nonexistent/users.json\"", []string{"http.users", "/nonexistent/users.json", "the console's sessions need HTTPS"}},
		{"listen = \"127.0.0.1:9090\"\naudit_log = \"/tmp/audit.log\"", []string{"http.audit_log: the console's audit log needs http.users"}},
		{"listen = \"127.0.0.1:9090\"\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.example.com\"]", []string{`http.trusted_proxies: "proxy.example.com", want an address or a CIDR prefix`}},
		{"listen = \"127.0.0.1:9090\"\nusers = \"/srv/etc/users.json\"\nexport_dir = \"/srv\"", []string{"http.export_dir: /srv holds the repository (/srv/r)", "/srv holds the users file"}},
	} {
		_, err := Parse("c.toml", "repository = \"/srv/r\"\n[http]\n"+tc.http+"\n")
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: no %q in %v", tc.http, want, err)
			}
		}
	}
	users := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(users, []byte(`{"version":1,"users":[]}`), 0o600)
	pw := filepath.Join(filepath.Dir(users), "prism.pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	c, err := Parse("c.toml", "repository = \"/srv/r\"\n[http]\nlisten = \"localhost:9090\"\nusers = \""+users+"\"\ntrusted_proxies = [\"127.0.0.1\", \"10.1.2.0/24\"]\n"+
		"[[cluster]]\nname = \"prod\"\nprism = \"pc:9440\"\nuser = \"b\"\npassword_file = \""+pw+"\"\n[[policy]]\nname = \"p\"\ncluster = \"prod\"\nvms = [\"*\"]\nevery = \"1h\"\n")
	if err != nil {
		t.Fatalf("console on loopback without TLS: %v", err)
	}
	if c.HTTP.AuditLog != filepath.Join(filepath.Dir(users), "audit.log") {
		t.Fatalf("audit log %q, want audit.log beside the users file", c.HTTP.AuditLog)
	}
	if got := fmt.Sprint(c.HTTP.proxies); got != "[127.0.0.1/32 10.1.2.0/24]" {
		t.Fatalf("trusted proxies %s", got)
	}
}

func TestConfigExample(t *testing.T) {
	b, err := os.ReadFile("../contrib/ahvfs.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := string(b)
	ca := testtls.NewCA(t, dir, "prism")
	text = strings.ReplaceAll(text, "/etc/ahvfs/prism-ca.pem", ca.CertFile)
	for _, f := range []string{"/etc/ahvfs/prism.pw", "/etc/ahvfs/dr-client.pem", "/etc/ahvfs/dr-client.key", "/etc/ahvfs/dr-ca.pem", "/etc/ahvfs/repo.pw"} {
		p := filepath.Join(dir, filepath.Base(f))
		os.WriteFile(p, []byte("x"), 0o600)
		text = strings.ReplaceAll(text, f, p)
	}
	cfg, err := Parse("ahvfs.toml", text)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Policy) < 2 || cfg.Policy[0].Schedule == nil || cfg.Policy[0].RPO.Duration == 0 {
		t.Fatalf("example parsed as %+v", cfg.Policy)
	}
}

// TestSchedules: intervals, cron lines, windows and the catch-up rule.
func TestSchedules(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	every, _ := parseSchedule("every 4h", "")
	if got := every.Next(at("2026-12-01T10:00:00Z")); !got.Equal(at("2026-12-01T14:00:00Z")) || every.Interval() != 4*time.Hour {
		t.Fatalf("every 4h: next %v interval %v", got, every.Interval())
	}
	nightly, _ := parseSchedule("", "30 1 * * *")
	if got := nightly.Next(at("2026-12-01T10:00:00Z")); !got.Equal(at("2026-12-02T01:30:00Z")) || nightly.Interval() != 24*time.Hour {
		t.Fatalf("cron 30 1: next %v interval %v", got, nightly.Interval())
	}
	weekdays, _ := parseSchedule("", "0 2 * * 1-5")
	if weekdays.Interval() != 72*time.Hour {
		t.Fatalf("weekday cron: interval %v, want 72h (Friday to Monday)", weekdays.Interval())
	}
	weekends, _ := parseSchedule("", "* * * * 6,0")
	if got := weekends.Interval(); got < 5*24*time.Hour {
		t.Fatalf("every minute of the weekend: interval %v, want the five days between", got)
	}
	monthly, _ := parseSchedule("", "0 3 1 * *")
	if got := monthly.Interval(); got != 31*24*time.Hour {
		t.Fatalf("monthly: interval %v, want 31 days", got)
	}
	w, err := parseWindow("22:00-06:00")
	if err != nil {
		t.Fatal(err)
	}
	hourly := windowed{every, w}
	if got := hourly.Next(at("2026-12-01T10:00:00Z")); !got.Equal(at("2026-12-01T22:00:00Z")) {
		t.Fatalf("windowed: %v, want the window's opening", got)
	}
	if got := hourly.Next(at("2026-12-01T23:00:00Z")); !got.Equal(at("2026-12-02T03:00:00Z")) {
		t.Fatalf("windowed inside the window: %v", got)
	}
	now := at("2026-12-01T12:00:00Z")
	if got := dueAt(every, time.Time{}, now); !got.Equal(now) {
		t.Fatalf("never-run interval policy due %v, want now", got)
	}
	if got := dueAt(every, at("2026-12-01T01:00:00Z"), now); !got.Equal(now) {
		t.Fatalf("missed run due %v, want now (once)", got)
	}
	if got := dueAt(hourly, at("2026-12-01T01:00:00Z"), now); !got.Equal(at("2026-12-01T22:00:00Z")) {
		t.Fatalf("missed run outside its window due %v, want the window's opening", got)
	}
	if got := dueAt(every, at("2026-12-01T10:00:00Z"), now); !got.Equal(at("2026-12-01T14:00:00Z")) {
		t.Fatalf("due %v", got)
	}
}

// TestInstantFromHistory: which VM an instant restore was made of comes
// back from the job history (a daemon restarted still shows a scoped
// user its instant restores), by the restored VM's UUID on its Prism, and
// goes once the restore is finished; a full restore is not one.
func TestInstantFromHistory(t *testing.T) {
	s := newState(time.Now())
	restored := "0f6e8c52-7f0c-4c1b-9a53-2b2d1c1e0a01"
	mk := func(kind string, notes ...string) engine.Job {
		return engine.Job{Kind: kind, Target: "prod4", Result: engine.JobOK, Notes: notes,
			VMs: []engine.JobVM{{VM: "db01", UUID: "db01-uuid", Result: engine.JobOK}}}
	}
	s.job(mk(KindRestore, "started by ops in the console", "restored as VM db01-full ("+restored[:35]+"2) on cluster-b"))
	s.job(mk(KindRestore, "started by ops in the console", "restored as VM db01-ir ("+restored+") on cluster-b",
		"runs from nfs://127.0.0.1:2049/ (external repository x) while it hydrates: finish it in the console once hydrated"))
	if vm, uuid := s.instantSource("prod4", restored); vm != "db01" || uuid != "db01-uuid" {
		t.Fatalf("instant restore %s: made of %q %q", restored, vm, uuid)
	}
	if vm, _ := s.instantSource("prod4", restored[:35]+"2"); vm != "" {
		t.Fatalf("a full restore counts as an instant one")
	}
	if vm, _ := s.instantSource("prod", restored); vm != "" {
		t.Fatalf("another Prism's VM of that UUID counts")
	}
	s.job(mk(KindInstantFinish, "started by ops in the console", "instant restore db01-ir ("+restored+") on prod4"))
	if vm, _ := s.instantSource("prod4", restored); vm != "" {
		t.Fatalf("a finished instant restore is still known")
	}
}
