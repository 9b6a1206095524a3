package failover

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/dustin/go-humanize"
)

// Plan is a recovery plan file (docs/failover.md documents every key).
type Plan struct {
	// File is the plan's path (set by Load); Name its base name without
	// the extension, which names its state.
	File string `toml:"-"`
	Name string `toml:"-"`

	// SourceCluster and TargetCluster name [[cluster]] tables of the plan
	// (or of the daemon configuration given with it).
	SourceCluster string `toml:"source_cluster"`
	TargetCluster string `toml:"target_cluster"`
	// TargetAHVCluster is the AHV cluster (name or UUID) the VMs are
	// restored on when the target Prism manages several (default: the
	// restore's choice).
	TargetAHVCluster string `toml:"target_ahv_cluster"`
	// Repository is the DR copy failover restores from;
	// SourceRepository where a planned failover's final backup goes.
	Repository       string `toml:"repository"`
	PasswordFile     string `toml:"password_file"`
	SourceRepository string `toml:"source_repository"`
	// SourcePasswordFile unlocks the source repository (default
	// password_file).
	SourcePasswordFile string `toml:"source_password_file"`
	// ShutdownTimeout is how long a planned failover waits for a guest to
	// shut down before it powers the VM off hard (default 5m).
	ShutdownTimeout string `toml:"shutdown_timeout"`
	shutdownTimeout time.Duration
	// NetworkMap and TestNetworkMap map source subnets to DR subnets
	// ("vlan10=vlan20"), for real failovers and for tests.
	NetworkMap     []string `toml:"network_map"`
	TestNetworkMap []string `toml:"test_network_map"`
	// Parallel is how many VMs of a stage are restored at once (default
	// 4); the stage ends when all of them are up.
	Parallel int `toml:"parallel"`
	// TestSuffix is appended to the names of test copies (default
	// "-drtest"), so they never take a production VM's name.
	TestSuffix string `toml:"test_suffix"`
	// Container holds the restored disks (default: the cluster's).
	Container string `toml:"container"`
	// DataPath is how disks are written: auto (iSCSI), iscsi or rest.
	DataPath string `toml:"data_path"`
	// InstantNFS is the ahvfs NFS server exporting the DR repository's
	// tree (`ahvfs nfs-serve`), as the DR cluster reaches it
	// (HOST[:PORT]): test failovers then restore instantly, the VMs
	// reading their disks from it while they hydrate (v4.2 APIs).
	InstantNFS string         `toml:"instant_nfs"`
	Stage      []StageConfig  `toml:"stage"`
	VM         []VMOverride   `toml:"vm"`
	Cluster    []SiteConfig   `toml:"cluster"`
	Sites      map[string]int `toml:"-"` // name → index in Cluster

	netMap, testNetMap map[string]string
}

// defaultParallel is how many VMs of a stage are restored at once when
// the plan does not say.
const defaultParallel = 4

// SiteConfig is one Prism endpoint of the plan.
type SiteConfig struct {
	clusterjob.Site
}

// StageConfig is one stage: its VMs are powered on together, then the
// plan waits Delay before the next stage and runs Script (a shell command
// on this host; failing stops the plan).
type StageConfig struct {
	VMs    []string `toml:"vms"`
	Delay  string   `toml:"delay"`
	Script string   `toml:"script"`

	delay time.Duration
}

// VMOverride changes how one VM (name or glob) is restored.
type VMOverride struct {
	Name      string `toml:"name"`
	VCPUs     int    `toml:"vcpus"`
	Memory    string `toml:"memory"`
	Container string `toml:"container"`

	memory int64
}

// Load reads and checks a plan; every problem is reported at once. sites
// are [[cluster]] tables from elsewhere (the daemon configuration) that
// the plan may name; its own tables win.
func Load(file string, sites []clusterjob.Site) (*Plan, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("recovery plan: %w", err)
	}
	p, err := Parse(file, string(b), sites)
	if err != nil {
		return nil, err
	}
	if p.File, err = filepath.Abs(file); err != nil {
		return nil, err
	}
	return p, nil
}

// Parse checks a plan's text; name labels its messages and names the plan.
func Parse(name, text string, sites []clusterjob.Site) (*Plan, error) {
	var p Plan
	md, err := toml.Decode(text, &p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, k := range md.Undecoded() {
		add("%s: unknown key", k)
	}
	p.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	p.Sites = map[string]int{}
	for i, s := range p.Cluster {
		if s.Name == "" {
			add("cluster[%d].name: missing", i)
			continue
		}
		if _, dup := p.Sites[s.Name]; dup {
			add("cluster[%d].name: %q names two [[cluster]] tables", i, s.Name)
		}
		p.Sites[s.Name] = i
		for _, err := range s.Check() {
			add("cluster %q: %v", s.Name, err)
		}
	}
	for _, s := range sites {
		if _, ok := p.Sites[s.Name]; !ok && s.Name != "" {
			p.Cluster = append(p.Cluster, SiteConfig{s})
			p.Sites[s.Name] = len(p.Cluster) - 1
		}
	}
	for _, k := range []struct{ key, name string }{{"source_cluster", p.SourceCluster}, {"target_cluster", p.TargetCluster}} {
		if _, ok := p.Sites[k.name]; !ok {
			add("%s: %q is not a [[cluster]] table of the plan (or of the daemon configuration given with --config)", k.key, k.name)
		}
	}
	if p.Repository == "" {
		add("repository: missing (the DR copy failover restores from)")
	}
	if p.PasswordFile != "" {
		if _, err := os.Stat(p.PasswordFile); err != nil {
			add("password_file: %v", err)
		}
	}
	if p.SourcePasswordFile != "" {
		if _, err := os.Stat(p.SourcePasswordFile); err != nil {
			add("source_password_file: %v", err)
		}
	}
	p.shutdownTimeout = 5 * time.Minute
	if p.ShutdownTimeout != "" {
		if p.shutdownTimeout, err = time.ParseDuration(p.ShutdownTimeout); err != nil || p.shutdownTimeout <= 0 {
			add("shutdown_timeout: %q: want a duration such as 5m", p.ShutdownTimeout)
		}
	}
	if p.TestSuffix == "" {
		p.TestSuffix = "-drtest"
	}
	switch {
	case p.Parallel == 0:
		p.Parallel = defaultParallel
	case p.Parallel < 0:
		add("parallel: %d: want how many VMs of a stage to restore at once (1 or more)", p.Parallel)
	}
	if p.netMap, err = parseMap(p.NetworkMap); err != nil {
		add("network_map: %v", err)
	}
	if p.testNetMap, err = parseMap(p.TestNetworkMap); err != nil {
		add("test_network_map: %v", err)
	}
	if p.InstantNFS != "" {
		if _, _, err := net.SplitHostPort(p.InstantNFS); err != nil && strings.Contains(p.InstantNFS, ":") {
			add("instant_nfs: %q: want HOST[:PORT]", p.InstantNFS)
		}
	}
	switch p.DataPath {
	case "", "auto", "iscsi", "rest":
	default:
		add("data_path: %q: want auto, iscsi or rest", p.DataPath)
	}
	if len(p.Stage) == 0 {
		add("stage: none; add a [[stage]] table with vms")
	}
	for i := range p.Stage {
		st := &p.Stage[i]
		if len(st.VMs) == 0 {
			add("stage[%d].vms: empty", i)
		}
		for _, g := range st.VMs {
			if _, err := path.Match(g, ""); err != nil {
				add("stage[%d]: pattern %q: %v", i, g, err)
			}
		}
		if st.Delay != "" {
			if st.delay, err = time.ParseDuration(st.Delay); err != nil || st.delay < 0 {
				add("stage[%d].delay: %q: want a duration such as 30s", i, st.Delay)
			}
		}
	}
	for i := range p.VM {
		o := &p.VM[i]
		if _, err := path.Match(o.Name, ""); err != nil || o.Name == "" {
			add("vm[%d].name: %q: want a VM name or glob", i, o.Name)
		}
		if o.Memory != "" {
			n, err := humanize.ParseBytes(o.Memory)
			if err != nil || n == 0 {
				add("vm[%d].memory: %q: want a size such as 8GiB", i, o.Memory)
			}
			o.memory = int64(n)
		}
		if o.VCPUs < 0 {
			add("vm[%d].vcpus: %d", i, o.VCPUs)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %d problem(s):\n%w", name, len(errs), errors.Join(errs...))
	}
	return &p, nil
}

// parseMap reads "SRC=DST" pairs.
func parseMap(pairs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q: want SOURCE=TARGET", kv)
		}
		m[k] = v
	}
	return m, nil
}

// Failover modes.
const (
	ModeTest      = "test"      // copies renamed, on the test networks
	ModePlanned   = "planned"   // the source VMs shut down, backed up and synced last; no data lost
	ModeUnplanned = "unplanned" // the VMs themselves, on the production networks
)

// nameFor is a VM's name at the DR site in mode.
func (p *Plan) nameFor(mode, vm string) string {
	if mode == ModeTest {
		return vm + p.TestSuffix
	}
	return vm
}

// netMapKey is the plan key of mode's network map.
func netMapKey(mode string) string {
	if mode == ModeTest {
		return "test_network_map"
	}
	return "network_map"
}

// netMapFor is the network map of mode.
func (p *Plan) netMapFor(mode string) map[string]string {
	if mode == ModeTest {
		return p.testNetMap
	}
	return p.netMap
}

// vmNetMap is the network map one VM's restore takes in mode: the entries
// of the plan's map for the subnets its NICs are on (a restore refuses
// entries that name none of them). A test copy must not join a network
// its map leaves out: a NIC the test map does not map is an error.
func (p *Plan) vmNetMap(mode string, rp *engine.RestorePoint) (map[string]string, error) {
	strict := ""
	if mode == ModeTest {
		strict = "test_network_map"
	}
	return p.nicMap(p.netMapFor(mode), rp, strict)
}

// nicMap is the entries of all for the subnets rp's NICs are on. With
// strictKey, a NIC all does not map is an error naming that key.
func (p *Plan) nicMap(all map[string]string, rp *engine.RestorePoint, strictKey string) (map[string]string, error) {
	cfg, err := clusterjob.ConfigOf(rp)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, n := range cfg.NICs {
		hit := false
		for k, v := range all {
			if k == n.SubnetName || (n.SubnetUUID != "" && strings.EqualFold(k, n.SubnetUUID)) {
				out[k], hit = v, true
			}
		}
		if !hit && strictKey != "" {
			return nil, fmt.Errorf("NIC %d is on subnet %s, which %s does not map: the test copy would join that network", i, firstOf(n.SubnetName, n.SubnetUUID), strictKey)
		}
	}
	return out, nil
}

// invert maps each value of m back to its key (a failback's network map
// from network_map); two keys of one value make it ambiguous.
func invert(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if other, dup := out[v]; dup {
			return nil, fmt.Errorf("network_map maps both %s and %s to %s: a failback cannot tell which to go back to (map each to its own DR subnet)", other, k, v)
		}
		out[v] = k
	}
	return out, nil
}

// site is a [[cluster]] table by name.
func (p *Plan) site(name string) clusterjob.Site { return p.Cluster[p.Sites[name]].Site }

// override returns the override of a VM (the first that matches).
func (p *Plan) override(vm string) VMOverride {
	for _, o := range p.VM {
		if ok, _ := path.Match(o.Name, vm); ok {
			return o
		}
	}
	return VMOverride{}
}
