package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/daemon"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/prismsim"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics, checks it with promtool and parses it.
func scrape(t *testing.T, d *daemon.Daemon) map[string]*dto.MetricFamily {
	t.Helper()
	h, _, err := d.Handler(daemon.HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cmd := exec.Command(testenv.Promtool(t), "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- metrics:\n%s", err, out, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the value of metric name with the given labels ("vm=app01").
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// TestMetrics: /metrics passes promtool, its figures are the
// repository's, an RPO breach flips the compliance metric and fires the
// webhook once, and a failed job fires it too.
func TestMetrics(t *testing.T) {
	e := newEnv(t, "app01")
	hooks := make(chan daemon.Event, 10)
	wh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev daemon.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook body: %v", err)
		}
		hooks <- ev
	}))
	defer wh.Close()
	cfg := e.config(fmt.Sprintf(`
[webhook]
url = %q
[[policy]]
name = "gold"
vms = ["app01"]
every = "1h"
rpo = "30m"
`, wh.URL))
	e.start(cfg)
	e.expect("backup/gold")
	fams := scrape(t, e.d)
	r := readRepo(t, e.repo)
	st, err := r.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rps, err := r.ListRestorePoints(context.Background(), "app01")
	if err != nil || len(rps) != 1 {
		t.Fatalf("restore points %v (%v)", rps, err)
	}
	r.Close()
	for name, want := range map[string]float64{
		"ahvfs_repository_stored_bytes":      float64(st.StoredBytes),
		"ahvfs_repository_logical_bytes":     float64(st.LogicalBytes),
		"ahvfs_repository_restore_points":    1,
		"ahvfs_repository_dedup_ratio":       st.DedupRatio,
		"ahvfs_repository_compression_ratio": st.Compression,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("%s = %v, the repository says %v", name, got, want)
		}
	}
	if got := value(t, fams, "ahvfs_restore_point_newest_timestamp_seconds", "vm=app01", "policy=gold"); got != float64(rps[0].Time.Unix()) {
		t.Errorf("newest restore point %v, the repository says %v", got, rps[0].Time.Unix())
	}
	if value(t, fams, "ahvfs_backup_last_result", "vm=app01") != 1 || value(t, fams, "ahvfs_rpo_compliant", "vm=app01") != 1 ||
		value(t, fams, "ahvfs_backup_last_success_timestamp_seconds", "vm=app01") == 0 {
		t.Error("a fresh good backup is not shown as a success within the RPO")
	}
	if value(t, fams, "ahvfs_jobs_total", "kind=backup", "result=ok") != 1 {
		t.Error("ahvfs_jobs_total does not count the backup")
	}

	// 31 minutes without a backup: over the 30-minute RPO.
	e.clock.Advance(31 * time.Minute)
	select {
	case ev := <-hooks:
		if ev.Event != "rpo_breach" || ev.VM != "app01" || ev.Policy != "gold" || ev.NewestRestorePoint == nil {
			t.Fatalf("webhook event %+v", ev)
		}
	case <-time.After(time.Minute):
		t.Fatal("no webhook for the RPO breach")
	}
	if value(t, scrape(t, e.d), "ahvfs_rpo_compliant", "vm=app01") != 0 {
		t.Error("compliance metric still 1 after the RPO passed")
	}
	e.clock.Advance(time.Minute)
	select {
	case ev := <-hooks:
		t.Fatalf("second webhook %+v for the same breach", ev)
	case <-time.After(300 * time.Millisecond):
	}

	// The next backup fails (its snapshot task fails): job_failed.
	if err := e.sim.SetFaults(prismsim.Faults{FailTasks: 100, FailOps: []string{"napshot"}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(28 * time.Minute)
	select {
	case j := <-e.jobs:
		if j.Result != engine.JobFailed || len(j.VMs) != 1 || j.VMs[0].Error == "" {
			t.Fatalf("backup under failing snapshot tasks: %+v", j)
		}
	case <-time.After(time.Minute):
		t.Fatal("the failing backup did not end")
	}
	select {
	case ev := <-hooks:
		if ev.Event != "job_failed" || ev.Job == nil || ev.Job.Result != engine.JobFailed {
			t.Fatalf("webhook event %+v", ev)
		}
	case <-time.After(time.Minute):
		t.Fatal("no webhook for the failed job")
	}
	fams = scrape(t, e.d)
	if value(t, fams, "ahvfs_backup_last_result", "vm=app01") != 0 || value(t, fams, "ahvfs_jobs_total", "kind=backup", "result=failed") != 1 {
		t.Error("the failed backup is not in the metrics")
	}
}
