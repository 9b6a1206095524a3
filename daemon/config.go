package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine/retention"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/dustin/go-humanize"
)

// Config is the daemon's configuration file (docs/daemon.md documents
// every key; contrib/ahvfs.toml is an example). Load fills the parsed
// fields (those without a toml tag) and reports every problem at once.
type Config struct {
	// Repository is where restore points go: a directory or s3://BUCKET/PREFIX.
	Repository string `toml:"repository"`
	// PasswordFile opens an encrypted repository.
	PasswordFile string `toml:"password_file"`
	// S3Endpoint, S3CACert, S3CredentialsFile and CacheDir are the
	// object-storage settings of an s3:// repository (as the flags of the
	// same names).
	S3Endpoint        string `toml:"s3_endpoint"`
	S3CACert          string `toml:"s3_ca_cert"`
	S3CredentialsFile string `toml:"s3_credentials_file"`
	CacheDir          string `toml:"cache_dir"`
	// Concurrency is how many jobs run at once, all clusters together
	// (default 2).
	Concurrency int `toml:"concurrency"`
	// ShutdownTimeout is how long running jobs may go on after SIGTERM
	// before they are cancelled (default 5m).
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// Log sets the format (text or json) and level of the daemon's log.
	Log struct {
		Format string `toml:"format"`
		Level  string `toml:"level"`
	} `toml:"log"`
	HTTP    HTTPConfig      `toml:"http"`
	Webhook WebhookConfig   `toml:"webhook"`
	Verify  VerifyConfig    `toml:"verify"`
	Cluster []ClusterConfig `toml:"cluster"`
	Target  []TargetConfig  `toml:"target"`
	Policy  []PolicyConfig  `toml:"policy"`
}

// HTTPConfig is the listener of /metrics and /healthz.
type HTTPConfig struct {
	Listen string `toml:"listen"`
	// TLSCert and TLSKey serve HTTPS; ClientCA then requires client
	// certificates signed by it (mutual TLS).
	TLSCert  string `toml:"tls_cert"`
	TLSKey   string `toml:"tls_key"`
	ClientCA string `toml:"client_ca"`
	// BasicUser and BasicPasswordFile require HTTP basic authentication
	// (/healthz stays open).
	BasicUser         string `toml:"basic_user"`
	BasicPasswordFile string `toml:"basic_password_file"`
	// Users is the web console's users file (`ahvfs user add`); set, the
	// console's API is served under /api/v1/, over HTTPS unless the
	// listener is on a loopback address. AuditLog is where the console
	// records who did what (default: audit.log beside the users file).
	Users    string `toml:"users"`
	AuditLog string `toml:"audit_log"`
	// TrustedProxies are reverse proxies (addresses or CIDR prefixes)
	// in front of the console whose X-Forwarded-For names the client, for
	// the login limiter and the audit log. Default none.
	TrustedProxies []string `toml:"trusted_proxies"`
	proxies        []netip.Prefix
	// ExportDir is where the console's exports are written, to download
	// from their jobs (removed after exportKeep). Default none: the
	// console offers no export.
	ExportDir string `toml:"export_dir"`
}

// WebhookConfig: a JSON POST to URL when a job fails or a VM's newest
// restore point is older than its policy's RPO.
type WebhookConfig struct {
	URL string `toml:"url"`
	// CACert verifies an https URL signed by a private CA.
	CACert string `toml:"ca_cert"`
	// Timeout of one POST (default 10s).
	Timeout Duration `toml:"timeout"`
}

// VerifyConfig schedules `verify --read-data` of a share of the packs so
// that the whole repository is read every EveryDays days.
type VerifyConfig struct {
	EveryDays int `toml:"every_days"`
	// At is the time of day (UTC, HH:MM) the day's share is read.
	At string `toml:"at"`
}

// ClusterConfig is one Prism endpoint, or one XCP-ng / XenServer pool
// (XAPI), and the daemon's limit on it.
type ClusterConfig struct {
	clusterjob.Site
	// XAPI ("xapi://HOST[:PORT]", as backup's --source) makes the table
	// an XCP-ng pool instead of a Prism: its policies back up through
	// XAPI (user root by default; password_file, ca_cert and insecure as
	// for Prism). Restores from the console go to Prism clusters.
	XAPI string `toml:"xapi"`
	// Strategy is the pool's backup strategy: auto (default), cbt or xva.
	Strategy string `toml:"strategy"`
	// Concurrency is how many jobs run on this cluster at once (default 1).
	Concurrency int `toml:"concurrency"`
	// InstantNFS is the address (HOST:PORT) at which this cluster's hosts
	// reach an ahvfs NFS server of the repository (ahvfs nfs-serve): set,
	// the console offers instant restores to this cluster.
	InstantNFS string `toml:"instant_nfs"`
}

// TargetConfig is a DR target a policy syncs to: a repository directory,
// or an `ahvfs serve` URL reached over mutual TLS.
type TargetConfig struct {
	Name     string `toml:"name"`
	Location string `toml:"location"`
	TLSCert  string `toml:"tls_cert"`
	TLSKey   string `toml:"tls_key"`
	CACert   string `toml:"ca_cert"`
	// PasswordFile opens an encrypted target directory.
	PasswordFile string `toml:"password_file"`
	// BWLimit caps the bytes per second sent ("100MiB").
	BWLimit string `toml:"bwlimit"`

	BytesPerSecond int64 `toml:"-"`
}

// PolicyConfig is one protection policy.
type PolicyConfig struct {
	Name    string `toml:"name"`
	Cluster string `toml:"cluster"`
	// VMs (globs or UUIDs) and Categories (Key:Value, any of them) select
	// VMs at each run; Exclude (globs or UUIDs) removes some again.
	VMs        []string `toml:"vms"`
	Categories []string `toml:"categories"`
	Exclude    []string `toml:"exclude"`
	// Every (an RPO such as "4h" or "every 30m") or Cron ("30 1 * * *",
	// UTC) schedules the backups; Window ("22:00-06:00", UTC) confines
	// their starts. RPO is the age beyond which a VM's newest restore
	// point breaches the policy (default: the schedule's longest gap and
	// half of it again, at least 5 minutes more).
	Every  string   `toml:"every"`
	Cron   string   `toml:"cron"`
	Window string   `toml:"window"`
	RPO    Duration `toml:"rpo"`
	// FullEvery makes every Nth backup of a VM a full (1 in N); FullCron
	// makes the first backup after each of its times a full. Otherwise
	// incremental forever.
	FullEvery int    `toml:"full_every"`
	FullCron  string `toml:"full_cron"`
	// Consistency: crash, app or app-required; DataPath: auto, iscsi, rest.
	Consistency     string   `toml:"consistency"`
	DataPath        string   `toml:"data_path"`
	ExcludeDisks    []string `toml:"exclude_disks"`
	ConcurrentVMs   int      `toml:"concurrent_vms"`
	ConcurrentDisks int      `toml:"concurrent_disks"`
	BWLimit         string   `toml:"bwlimit"`
	// Retention after each backup (the prune flags); LockFor locks each
	// new restore point ("30d").
	KeepLast    int    `toml:"keep_last"`
	KeepHourly  int    `toml:"keep_hourly"`
	KeepDaily   int    `toml:"keep_daily"`
	KeepWeekly  int    `toml:"keep_weekly"`
	KeepMonthly int    `toml:"keep_monthly"`
	KeepYearly  int    `toml:"keep_yearly"`
	KeepWithin  string `toml:"keep_within"`
	LockFor     string `toml:"lock_for"`
	// SyncTo names a [[target]] (or is a repository directory) the
	// policy's VMs are synced to after each backup, or on SyncEvery /
	// SyncCron when set.
	SyncTo    string `toml:"sync_to"`
	SyncEvery string `toml:"sync_every"`
	SyncCron  string `toml:"sync_cron"`
	// PreSnapshot and PostSnapshot are shell hooks (see ahvfs backup).
	PreSnapshot  string `toml:"pre_snapshot"`
	PostSnapshot string `toml:"post_snapshot"`

	Schedule     Schedule           `toml:"-"`
	SyncSchedule Schedule           `toml:"-"` // nil: after each backup
	FullSchedule Schedule           `toml:"-"`
	Cats         []nutanix.Category `toml:"-"`
	Retention    retention.Policy   `toml:"-"`
	Lock         *retention.Span    `toml:"-"`
	BytesPerSec  int64              `toml:"-"`
	Backup       backup.Options     `toml:"-"` // the options every run starts from
}

// Duration is a TOML string such as "90s", "5m" or "1d".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration, with "d" for days.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	d.Duration = v
	return err
}

// parseDuration accepts Go durations and whole days ("2d", "1d12h").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "every "))
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		var n int
		if _, err := fmt.Sscanf(s[:i], "%d", &n); err != nil || fmt.Sprint(n) != s[:i] {
			return 0, fmt.Errorf("duration %q: want such as 90s, 30m, 4h or 1d", s)
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want such as 90s, 30m, 4h or 1d", s)
	}
	return days + v, nil
}

// Load reads and checks a configuration file. Every problem is reported,
// joined in one error, each naming its key.
func Load(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("daemon configuration: %w", err)
	}
	return Parse(file, string(b))
}

// Parse checks a configuration; name labels its messages.
func Parse(name, text string) (*Config, error) {
	var c Config
	md, err := toml.Decode(text, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &problems{}
	for _, k := range md.Undecoded() {
		p.add("%s: unknown key", k)
	}
	c.check(p)
	if err := p.err(); err != nil {
		return nil, fmt.Errorf("%s: %d problem(s):\n%w", name, len(p.list), err)
	}
	return &c, nil
}

type problems struct{ list []error }

func (p *problems) add(format string, args ...any) {
	p.list = append(p.list, fmt.Errorf(format, args...))
}

func (p *problems) err() error { return errors.Join(p.list...) }

// unique checks the name of the i-th table of a kind and returns the key
// its problems are reported under: `policy "gold"`, or `policy[1]` when
// the name is missing or taken.
func (p *problems) unique(kind string, i int, name string, seen map[string]bool) string {
	key := fmt.Sprintf("%s[%d]", kind, i)
	switch {
	case name == "":
		p.add("%s.name: missing", key)
	case seen[name]:
		p.add("%s.name: %q names two [[%s]] tables", key, name, kind)
	default:
		seen[name] = true
		key = fmt.Sprintf("%s %q", kind, name)
	}
	return key
}

// file reports a file a key names that cannot be read.
func (p *problems) file(key, f string) {
	if f == "" {
		return
	}
	if _, err := os.Stat(f); err != nil {
		p.add("%s: %v", key, err)
	}
}

func (c *Config) check(p *problems) {
	if c.Repository == "" {
		p.add("repository: missing (a directory or s3://BUCKET/PREFIX)")
	}
	if strings.HasPrefix(c.Repository, "s3://") && c.S3Endpoint == "" {
		p.add("s3_endpoint: an s3:// repository needs it")
	}
	p.file("password_file", c.PasswordFile)
	p.file("s3_ca_cert", c.S3CACert)
	p.file("s3_credentials_file", c.S3CredentialsFile)
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.Concurrency < 0 {
		p.add("concurrency: %d, want at least 1", c.Concurrency)
	}
	if c.ShutdownTimeout.Duration == 0 {
		c.ShutdownTimeout.Duration = 5 * time.Minute
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		p.add("log.format: %q, want text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		p.add("log.level: %q, want debug, info, warn or error", c.Log.Level)
	}
	h := &c.HTTP
	if (h.TLSCert == "") != (h.TLSKey == "") {
		p.add("http: tls_cert and tls_key go together")
	}
	if h.ClientCA != "" && h.TLSCert == "" {
		p.add("http.client_ca: needs tls_cert and tls_key (client certificates need TLS)")
	}
	if (h.BasicUser == "") != (h.BasicPasswordFile == "") {
		p.add("http: basic_user and basic_password_file go together")
	}
	p.file("http.tls_cert", h.TLSCert)
	p.file("http.tls_key", h.TLSKey)
	p.file("http.client_ca", h.ClientCA)
	p.file("http.basic_password_file", h.BasicPasswordFile)
	if h.Users != "" {
		p.file("http.users", h.Users)
		if h.TLSCert == "" && !loopback(h.Listen) {
			p.add("http.users: the console's sessions need HTTPS: set tls_cert and tls_key, or listen on a loopback address")
		}
		if h.AuditLog == "" {
			h.AuditLog = filepath.Join(filepath.Dir(h.Users), "audit.log")
		}
	} else if h.AuditLog != "" {
		p.add("http.audit_log: the console's audit log needs http.users")
	}
	if h.ExportDir != "" && h.Users == "" {
		p.add("http.export_dir: the console's exports need http.users")
	}
	if h.ExportDir != "" && !filepath.IsAbs(h.ExportDir) {
		p.add("http.export_dir: %q, want an absolute path", h.ExportDir)
	}
	// Old exports are removed from it: nothing else may live there.
	for _, held := range [][2]string{{"the repository", c.Repository}, {"the users file", h.Users}} {
		if h.ExportDir != "" && filepath.IsAbs(held[1]) && within(held[1], h.ExportDir) {
			p.add("http.export_dir: %s holds %s (%s): give exports a directory of their own", h.ExportDir, held[0], held[1])
		}
	}
	h.proxies = nil
	for _, tp := range h.TrustedProxies {
		pr, err := netip.ParsePrefix(tp)
		if err != nil {
			ip, ierr := netip.ParseAddr(tp)
			if ierr != nil {
				p.add("http.trusted_proxies: %q, want an address or a CIDR prefix (10.0.0.0/8)", tp)
				continue
			}
			pr = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		h.proxies = append(h.proxies, pr.Masked())
	}
	if u := c.Webhook.URL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		p.add("webhook.url: %q, want an http(s) URL", u)
	}
	p.file("webhook.ca_cert", c.Webhook.CACert)
	if c.Webhook.Timeout.Duration == 0 {
		c.Webhook.Timeout.Duration = 10 * time.Second
	}
	if c.Verify.EveryDays < 0 {
		p.add("verify.every_days: %d, want at least 1 (or leave it out)", c.Verify.EveryDays)
	}
	if c.Verify.At != "" {
		if _, err := parseClock(c.Verify.At); err != nil {
			p.add("verify.at: %v", err)
		}
	}
	clusters := map[string]bool{}
	for i := range c.Cluster {
		cl := &c.Cluster[i]
		key := p.unique("cluster", i, cl.Name, clusters)
		if cl.XAPI != "" {
			cl.checkPool(p, key)
		} else {
			if cl.Strategy != "" {
				p.add("%s.strategy: only for an XCP-ng pool (a table with xapi)", key)
			}
			for _, err := range cl.Site.Check() {
				p.add("%s: %v", key, err)
			}
		}
		if cl.Concurrency == 0 {
			cl.Concurrency = 1
		}
		if cl.Concurrency < 0 {
			p.add("%s.concurrency: %d, want at least 1", key, cl.Concurrency)
		}
	}
	targets := map[string]bool{}
	for i := range c.Target {
		t := &c.Target[i]
		key := p.unique("target", i, t.Name, targets)
		if t.Location == "" {
			p.add("%s.location: missing (a repository directory or https://HOST:PORT)", key)
		}
		if strings.HasPrefix(t.Location, "https://") && (t.TLSCert == "" || t.TLSKey == "" || t.CACert == "") {
			p.add("%s: an https:// target needs tls_cert, tls_key and ca_cert (mutual TLS)", key)
		}
		p.file(key+".tls_cert", t.TLSCert)
		p.file(key+".tls_key", t.TLSKey)
		p.file(key+".ca_cert", t.CACert)
		p.file(key+".password_file", t.PasswordFile)
		if t.BWLimit != "" {
			n, err := parseRate(t.BWLimit)
			if err != nil {
				p.add("%s.bwlimit: %v", key, err)
			}
			t.BytesPerSecond = n
		}
	}
	names := map[string]bool{}
	for i := range c.Policy {
		c.checkPolicy(p, i, clusters, targets, names)
	}
	if len(c.Policy) == 0 {
		p.add("policy: none; add a [[policy]] table")
	}
}

func (c *Config) checkPolicy(p *problems, i int, clusters, targets, names map[string]bool) {
	pc := &c.Policy[i]
	key := p.unique("policy", i, pc.Name, names)
	switch {
	case clusters[pc.Cluster]:
	case pc.Cluster == "" && len(c.Cluster) == 1:
		pc.Cluster = c.Cluster[0].Name
	default:
		p.add("%s.cluster: %q is not a [[cluster]] name", key, pc.Cluster)
	}
	cc := c.cluster(pc.Cluster)
	pool := cc.XAPI != ""
	if pool && len(pc.Categories) > 0 {
		p.add("%s.categories: cluster %s is an XCP-ng pool: select its VMs by name or UUID (vms), categories are Prism's", key, pc.Cluster)
	}
	if pool && backup.DataPath(pc.DataPath) == backup.PathISCSI {
		p.add("%s.data_path: cluster %s is an XCP-ng pool, read over nbd or rest, not iscsi", key, pc.Cluster)
	}
	if !pool && backup.DataPath(pc.DataPath) == backup.PathNBD {
		p.add("%s.data_path: nbd reads XCP-ng pools; cluster %s is a Prism (auto, iscsi or rest)", key, pc.Cluster)
	}
	if len(pc.VMs) == 0 && len(pc.Categories) == 0 {
		p.add("%s: selects no VM: give vms (globs; \"*\" for all) or categories", key)
	}
	for _, s := range pc.Categories {
		cat, err := nutanix.ParseCategory(s)
		if err != nil {
			p.add("%s.categories: %v", key, err)
			continue
		}
		pc.Cats = append(pc.Cats, cat)
	}
	var err error
	switch {
	case pc.Every != "" && pc.Cron != "":
		p.add("%s: every and cron: give one of them", key)
	case pc.Every == "" && pc.Cron == "":
		p.add("%s: no schedule: give every (\"4h\") or cron (\"30 1 * * *\")", key)
	default:
		if pc.Schedule, err = parseSchedule(pc.Every, pc.Cron); err != nil {
			p.add("%s: %v", key, err)
		}
	}
	if pc.Window != "" {
		w, err := parseWindow(pc.Window)
		if err != nil {
			p.add("%s.window: %v", key, err)
		} else if pc.Schedule != nil {
			pc.Schedule = windowed{pc.Schedule, w}
		}
	}
	if pc.RPO.Duration == 0 && pc.Schedule != nil {
		// The newest point of a VM is as old as the interval when the next
		// backup starts, and older by the time it takes: half an interval
		// more (at least 5 minutes) is the default slack.
		iv := pc.Schedule.Interval()
		pc.RPO.Duration = iv + max(iv/2, 5*time.Minute)
	}
	if pc.FullEvery < 0 {
		p.add("%s.full_every: %d, want at least 1", key, pc.FullEvery)
	}
	if pc.FullCron != "" {
		if pc.FullSchedule, err = parseSchedule("", pc.FullCron); err != nil {
			p.add("%s.full_cron: %v", key, err)
		}
	}
	rp := retention.Policy{Last: pc.KeepLast, Hourly: pc.KeepHourly, Daily: pc.KeepDaily, Weekly: pc.KeepWeekly,
		Monthly: pc.KeepMonthly, Yearly: pc.KeepYearly}
	if pc.KeepWithin != "" {
		if rp.Within, err = retention.ParseSpan(pc.KeepWithin); err != nil {
			p.add("%s.keep_within: %v", key, err)
		}
	}
	if err := rp.Validate(); err != nil {
		p.add("%s: retention: %v", key, err)
	}
	pc.Retention = rp
	if pc.LockFor != "" {
		span, err := retention.ParseSpan(pc.LockFor)
		if err != nil {
			p.add("%s.lock_for: %v", key, err)
		}
		pc.Lock = &span
	}
	if pc.SyncTo != "" && !targets[pc.SyncTo] && strings.Contains(pc.SyncTo, "://") {
		p.add("%s.sync_to: %q: a URL target needs a [[target]] table (with its TLS files); name it here", key, pc.SyncTo)
	}
	if (pc.SyncEvery != "" || pc.SyncCron != "") && pc.SyncTo == "" {
		p.add("%s: sync_every/sync_cron without sync_to", key)
	}
	if pc.SyncEvery != "" || pc.SyncCron != "" {
		if pc.SyncEvery != "" && pc.SyncCron != "" {
			p.add("%s: sync_every and sync_cron: give one of them", key)
		} else if pc.SyncSchedule, err = parseSchedule(pc.SyncEvery, pc.SyncCron); err != nil {
			p.add("%s: sync schedule: %v", key, err)
		}
	}
	if pc.BWLimit != "" {
		if pc.BytesPerSec, err = parseRate(pc.BWLimit); err != nil {
			p.add("%s.bwlimit: %v", key, err)
		}
	}
	o := backup.Options{VMs: pc.VMs, Exclude: pc.Exclude, ExcludeDisks: pc.ExcludeDisks, Consistency: backup.Consistency(pc.Consistency),
		DataPath: backup.DataPath(pc.DataPath), ConcurrentVMs: pc.ConcurrentVMs, ConcurrentDisks: pc.ConcurrentDisks,
		BandwidthLimit: pc.BytesPerSec}
	if pool {
		o.Strategy = backup.Strategy(cc.Strategy)
	}
	if pc.PreSnapshot != "" {
		o.PreSnapshot = backup.CommandHook("pre-snapshot", pc.PreSnapshot)
	}
	if pc.PostSnapshot != "" {
		o.PostSnapshot = backup.CommandHook("post-snapshot", pc.PostSnapshot)
	}
	if err := o.Validate(); err != nil {
		p.add("%s: %v", key, err)
	}
	pc.Backup = o
}

// parseRate reads "100MiB", "100MiB/s" or a number of bytes per second.
func parseRate(s string) (int64, error) {
	n, err := humanize.ParseBytes(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if err != nil || n > 1<<50 {
		return 0, fmt.Errorf("rate %q: want bytes per second such as 100MiB", s)
	}
	return int64(n), nil
}

// Policy returns the policy named name, or nil.
func (c *Config) policy(name string) *PolicyConfig {
	for i := range c.Policy {
		if c.Policy[i].Name == name {
			return &c.Policy[i]
		}
	}
	return nil
}

// target returns the target a policy's sync_to names: a [[target]], or a
// bare repository directory.
func (c *Config) target(name string) TargetConfig {
	for _, t := range c.Target {
		if t.Name == name {
			return t
		}
	}
	return TargetConfig{Name: name, Location: name}
}

// loopback reports whether a listen address (HOST:PORT) is on a loopback
// address ("localhost" counts; an empty host, every address, does not).
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// within reports whether path is dir or under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// checkPool checks the table of an XCP-ng pool: the XAPI URL, the keys
// of Prism it must not have, and its files.
func (cl *ClusterConfig) checkPool(p *problems, key string) {
	if _, err := cl.XAPIURL(); err != nil {
		p.add("%s.xapi: %v", key, err)
	}
	for _, k := range []struct {
		name string
		set  bool
	}{{"prism", cl.Prism != ""}, {"api", cl.API != "" && cl.API != "auto"}, {"iscsi_port", cl.ISCSIPort != 0},
		{"initiator_iqn", cl.InitiatorIQN != ""}, {"chap_user", cl.CHAPUser != ""}, {"chap_secret_file", cl.CHAPSecretFile != ""},
		{"instant_nfs", cl.InstantNFS != ""}} {
		if k.set {
			p.add("%s.%s: an XCP-ng pool (xapi) has no %s: that key is Prism's", key, k.name, k.name)
		}
	}
	switch backup.Strategy(cl.Strategy) {
	case "", backup.StrategyAuto, backup.StrategyCBT, backup.StrategyXVA:
	default:
		p.add("%s.strategy: %q, want auto, cbt or xva", key, cl.Strategy)
	}
	if cl.PasswordFile == "" {
		p.add("%s.password_file: missing (the pool's password)", key)
	}
	if cl.Insecure && cl.CACert != "" {
		p.add("%s: insecure and ca_cert: give one of them", key)
	}
	p.file(key+".password_file", cl.PasswordFile)
	p.file(key+".ca_cert", cl.CACert)
}

// XAPIOptions are the XAPI client options of a pool's table, its
// password read from password_file.
func (cl *ClusterConfig) XAPIOptions(log *slog.Logger) (xapi.Options, error) {
	ep, err := cl.XAPIURL()
	if err != nil {
		return xapi.Options{}, err
	}
	pw, err := os.ReadFile(cl.PasswordFile)
	if err != nil {
		return xapi.Options{}, fmt.Errorf("password: %w", err)
	}
	o := xapi.Options{URL: ep, User: cmp.Or(cl.User, "root"), Password: strings.TrimSpace(string(pw)), CAFile: cl.CACert,
		Insecure: cl.Insecure, Logger: log}
	return o, o.Validate()
}

// XAPIURL is the https:// URL of the pool's XAPI ("xapi://HOST[:PORT]"
// as configured).
func (cl *ClusterConfig) XAPIURL() (string, error) {
	u, err := url.Parse(cl.XAPI)
	if err != nil || u.Scheme != "xapi" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%q: want xapi://HOST[:PORT]", cl.XAPI)
	}
	return "https://" + u.Host, nil
}
