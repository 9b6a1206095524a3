package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric descriptions (docs/daemon.md lists them; names are a contract:
// ../docs/cli.md, "Metrics").
var (
	vmLabels          = []string{"vm", "policy"}
	descLastSuccess   = prometheus.NewDesc("ahvfs_backup_last_success_timestamp_seconds", "End of the VM's last successful backup (Unix time).", vmLabels, nil)
	descLastResult    = prometheus.NewDesc("ahvfs_backup_last_result", "Result of the VM's last backup: 1 ok, 0 failed.", vmLabels, nil)
	descBytesRead     = prometheus.NewDesc("ahvfs_backup_last_read_bytes", "Bytes the VM's last backup read from the cluster.", vmLabels, nil)
	descBytesStored   = prometheus.NewDesc("ahvfs_backup_last_stored_bytes", "New bytes the VM's last backup stored in the repository.", vmLabels, nil)
	descDuration      = prometheus.NewDesc("ahvfs_backup_last_duration_seconds", "Duration of the VM's last backup.", vmLabels, nil)
	descNewest        = prometheus.NewDesc("ahvfs_restore_point_newest_timestamp_seconds", "Time of the VM's newest restore point (Unix time; 0: none).", vmLabels, nil)
	descCompliant     = prometheus.NewDesc("ahvfs_rpo_compliant", "1 when the VM's newest restore point is younger than its policy's RPO, else 0.", vmLabels, nil)
	descRPO           = prometheus.NewDesc("ahvfs_policy_rpo_seconds", "The policy's RPO.", []string{"policy"}, nil)
	descConflict      = prometheus.NewDesc("ahvfs_vm_policy_conflict", "1 for a VM selected by two policies (backed up by owner only).", []string{"vm", "owner", "policy"}, nil)
	descStored        = prometheus.NewDesc("ahvfs_repository_stored_bytes", "Bytes of the repository's pack files.", nil, nil)
	descParity        = prometheus.NewDesc("ahvfs_repository_parity_bytes", "Bytes of the repository's parity sidecars.", nil, nil)
	descLogical       = prometheus.NewDesc("ahvfs_repository_logical_bytes", "Sum of the disk sizes of all restore points.", nil, nil)
	descPoints        = prometheus.NewDesc("ahvfs_repository_restore_points", "Restore points in the repository.", nil, nil)
	descDedup         = prometheus.NewDesc("ahvfs_repository_dedup_ratio", "Referenced bytes over unique bytes.", nil, nil)
	descCompression   = prometheus.NewDesc("ahvfs_repository_compression_ratio", "Unique bytes over stored bytes.", nil, nil)
	descReclaimable   = prometheus.NewDesc("ahvfs_repository_gc_reclaimable_bytes", "Bytes ahvfs gc would free now.", nil, nil)
	descVerifyErrors  = prometheus.NewDesc("ahvfs_repository_verify_errors", "Damaged packs and problems the last scheduled verify found.", nil, nil)
	descVerifyLast    = prometheus.NewDesc("ahvfs_repository_verify_last_timestamp_seconds", "Start of the last scheduled verify (Unix time; 0: none since start).", nil, nil)
	descSyncLag       = prometheus.NewDesc("ahvfs_sync_lag_seconds", "Longest wait of a restore point for the target: since the last good sync of a VM with a newer point (since its oldest point when never synced); 0 in sync.", []string{"target"}, nil)
	descSyncLast      = prometheus.NewDesc("ahvfs_sync_last_success_timestamp_seconds", "Start of the last successful sync to the target (Unix time; 0: none).", []string{"target"}, nil)
	descQueue         = prometheus.NewDesc("ahvfs_jobs_queued", "Jobs waiting for a slot.", nil, nil)
	descRunning       = prometheus.NewDesc("ahvfs_jobs_running", "Jobs running.", nil, nil)
	descJobs          = prometheus.NewDesc("ahvfs_jobs_total", "Jobs ended since the daemon started, by kind and result.", []string{"kind", "result"}, nil)
	descUp            = prometheus.NewDesc("ahvfs_daemon_start_timestamp_seconds", "When the daemon started (Unix time).", nil, nil)
	descRepoReachable = prometheus.NewDesc("ahvfs_repository_stats_ok", "1 once the repository's figures were read.", nil, nil)
)

// collector turns the daemon's state into metrics at each scrape.
type collector struct{ d *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	now := d.clock.Now()
	cfg := d.config()
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, p := range cfg.Policy {
		gauge(descRPO, p.RPO.Seconds(), p.Name)
	}
	for _, k := range d.stats.vmKeys() {
		s := d.stats
		s.mu.Lock()
		v := *s.vms[k]
		newest := s.newest[k.vm]
		s.mu.Unlock()
		gauge(descLastSuccess, unix(v.lastSuccess), k.vm, k.policy)
		gauge(descLastResult, b2f(v.lastResult == "ok"), k.vm, k.policy)
		gauge(descBytesRead, float64(v.bytesRead), k.vm, k.policy)
		gauge(descBytesStored, float64(v.bytesStored), k.vm, k.policy)
		gauge(descDuration, v.seconds, k.vm, k.policy)
		gauge(descNewest, unix(newest), k.vm, k.policy)
		if p := cfg.policy(k.policy); p != nil {
			gauge(descCompliant, b2f(compliant(newest, p.RPO.Duration, now)), k.vm, k.policy)
		}
	}
	s := d.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.conflicts {
		gauge(descConflict, 1, k[0], k[1], k[2])
	}
	gauge(descRepoReachable, b2f(s.repoOK))
	if s.repoOK {
		gauge(descStored, float64(s.repo.StoredBytes))
		gauge(descParity, float64(s.repo.ParityBytes))
		gauge(descLogical, float64(s.repo.LogicalBytes))
		gauge(descPoints, float64(s.repo.RestorePoints))
		gauge(descDedup, s.repo.DedupRatio)
		gauge(descCompression, s.repo.Compression)
		gauge(descReclaimable, float64(s.reclaim))
	}
	gauge(descVerifyErrors, float64(s.verifyBad))
	gauge(descVerifyLast, unix(s.verifyAt))
	for name, vms := range syncedVMs(cfg, s.vms) {
		var last time.Time
		for _, vm := range vms {
			if t := s.synced[[2]string{name, vm}]; t.After(last) {
				last = t
			}
		}
		gauge(descSyncLast, unix(last), name)
		gauge(descSyncLag, s.syncLagLocked(name, vms, now).Seconds(), name)
	}
	gauge(descQueue, float64(s.queued))
	gauge(descRunning, float64(s.running))
	for k, n := range s.jobs {
		ch <- prometheus.MustNewConstMetric(descJobs, prometheus.CounterValue, float64(n), k[0], k[1])
	}
	gauge(descUp, unix(s.started))
}

// syncedVMs maps each DR target the policies name to the VMs they sync
// to it (those the state knows of).
func syncedVMs(cfg *Config, vms map[vmKey]*vmState) map[string][]string {
	out := map[string][]string{}
	for _, p := range cfg.Policy {
		if p.SyncTo == "" {
			continue
		}
		name := cfg.target(p.SyncTo).Name
		if _, ok := out[name]; !ok {
			out[name] = []string{}
		}
		for k := range vms {
			if k.policy == p.Name {
				out[name] = append(out[name], k.vm)
			}
		}
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// compliant: the newest restore point is no older than the RPO.
func compliant(newest time.Time, rpo time.Duration, now time.Time) bool {
	return !newest.IsZero() && now.Sub(newest) <= rpo
}

// Registry is the daemon's metrics, with the Go runtime's and the
// process's.
func (d *Daemon) Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
