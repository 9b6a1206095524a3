package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// plan is everything validated before the first object is created.
type plan struct {
	rp       *engine.RestorePoint
	cfg      *clusterjob.VMConfig
	cluster  nutanix.ClusterInfo
	name     string
	disks    []clusterjob.DiskPlace
	nics     []nutanix.NICSpec
	nicNames []string
	keepMACs bool
	original *nutanix.VM // the VM --overwrite replaces
	dataPath string
	spec     nutanix.VMSpec
	warnings []string // what the VM could not carry over (from XCP-ng)
}

func makePlan(ctx context.Context, cl nutanix.Cluster, rp *engine.RestorePoint, o Options) (*plan, error) {
	cfg, err := clusterjob.ConfigOf(rp)
	if err != nil {
		return nil, err
	}
	p := &plan{rp: rp, cfg: cfg}
	var errs []error
	// Target cluster.
	clusters, err := cl.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range clusters {
		names = append(names, c.Name)
	}
	found := false
	switch {
	case o.TargetCluster != "":
		for _, c := range clusters {
			if c.Name == o.TargetCluster || c.UUID == o.TargetCluster {
				p.cluster, found = c, true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("target cluster %q not found (clusters: %s)", o.TargetCluster, strings.Join(names, ", ")))
		}
	default:
		for _, c := range clusters {
			if (cfg.ClusterUUID != "" && c.UUID == cfg.ClusterUUID) || (cfg.ClusterUUID == "" && cfg.ClusterName != "" && c.Name == cfg.ClusterName) {
				p.cluster, found = c, true
			}
		}
		if !found && len(clusters) == 1 {
			p.cluster, found = clusters[0], true
		}
		if !found {
			errs = append(errs, fmt.Errorf("the original cluster is unknown or gone: choose %s (clusters: %s)", o.key("--target-cluster"), strings.Join(names, ", ")))
		}
	}
	// Disks.
	p.disks, err = clusterjob.PlaceDisks(rp, o.Disks)
	if err != nil {
		errs = append(errs, err)
	} else if len(p.disks) == 0 {
		errs = append(errs, errors.New("the restore point has no disks"))
	} else if cfg.Hypervisor == clusterjob.HypervisorXen {
		p.disks = xenDisksOnSCSI(cfg, p.disks)
		p.warnings = xenToAHVWarnings(cfg)
	}
	// Original VM (overwrite, MAC policy, name clash).
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var origAnywhere bool
	for i := range vms {
		if cfg.UUID != "" && vms[i].UUID == cfg.UUID {
			origAnywhere = true
			if o.Overwrite && o.Replace == "" {
				p.original = &vms[i]
			}
		}
		if o.Overwrite && o.Replace != "" && vms[i].UUID == o.Replace {
			p.original = &vms[i]
		}
	}
	if o.Overwrite && o.Replace != "" && p.original == nil {
		errs = append(errs, fmt.Errorf("the VM %s to replace is not on the cluster", o.Replace))
	}
	p.name = o.Name
	if p.name == "" {
		p.name = cfg.Name
	}
	if o.Overwrite && o.Replace == "" && p.original == nil && found {
		// Restore points made by import have no UUID: match by name.
		for i := range vms {
			if vms[i].Name == cfg.Name && vms[i].ClusterUUID == p.cluster.UUID {
				if p.original != nil {
					errs = append(errs, fmt.Errorf("--overwrite: several VMs are named %q on %s", cfg.Name, p.cluster.Name))
					break
				}
				p.original = &vms[i]
			}
		}
	}
	if found {
		for _, v := range vms {
			if v.Name == p.name && v.ClusterUUID == p.cluster.UUID && (p.original == nil || v.UUID != p.original.UUID) {
				errs = append(errs, fmt.Errorf("a VM named %q already exists on %s: give --name, or --overwrite to replace the original", p.name, p.cluster.Name))
				break
			}
		}
	}
	p.keepMACs = !origAnywhere
	// Networks.
	subnets, err := cl.ListSubnets(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for i, n := range cfg.NICs {
		dst, key := "", ""
		for _, k := range []string{n.SubnetUUID, n.SubnetName} {
			if k == "" {
				continue
			}
			if v, ok := o.NetworkMap[k]; ok {
				dst, key = v, k
				used[k] = true
				break
			}
		}
		var match *nutanix.Subnet
		for j := range subnets {
			s := &subnets[j]
			if s.ClusterUUID != "" && found && s.ClusterUUID != p.cluster.UUID {
				continue
			}
			if key != "" {
				if s.UUID == dst || s.Name == dst {
					match = s
					break
				}
				continue
			}
			if (n.SubnetUUID != "" && s.UUID == n.SubnetUUID) || (match == nil && n.SubnetName != "" && s.Name == n.SubnetName) {
				match = s
			}
		}
		switch {
		case match == nil && key != "":
			errs = append(errs, fmt.Errorf("NIC %d: %s %s=%s: subnet %q not found on the target cluster", i, o.key("--network-map"), key, dst, dst))
		case match == nil:
			src := firstOf(n.SubnetName, n.SubnetUUID)
			errs = append(errs, fmt.Errorf("NIC %d: subnet %s not found on the target cluster: map it with %s %s=SUBNET", i, src, o.key("--network-map"), src))
		default:
			ns := nutanix.NICSpec{SubnetUUID: match.UUID, Model: n.Model}
			if p.keepMACs {
				ns.MAC = n.MAC
			}
			p.nics = append(p.nics, ns)
			p.nicNames = append(p.nicNames, match.Name)
		}
	}
	for k := range o.NetworkMap {
		if !used[k] {
			errs = append(errs, fmt.Errorf("%s %s: no NIC of the VM is on subnet %q", o.key("--network-map"), k, k))
		}
	}
	// Storage container.
	container := ""
	if o.Container != "" && found {
		c, err := findContainer(ctx, cl, p.cluster, o.Container, o.key("--container"))
		if err != nil {
			errs = append(errs, err)
		}
		container = c
	}
	// Data path.
	p.dataPath = DataPathISCSI
	switch o.DataPath {
	case DataPathREST, DataPathInstant:
		p.dataPath = o.DataPath
	}
	if p.dataPath == DataPathInstant {
		if err := checkInstant(ctx, cl); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// VM spec.
	sockets, cores := cfg.Sockets()
	if o.VCPUs > 0 {
		sockets, cores = o.VCPUs, 1
	}
	mem := cfg.MemoryBytes
	if o.MemoryBytes > 0 {
		mem = o.MemoryBytes
	}
	p.spec = nutanix.VMSpec{Name: p.name, ClusterUUID: p.cluster.UUID, NumSockets: sockets, CoresPerSocket: cores, MemoryBytes: mem,
		BootType: nutanix.BootType(cfg.BootType), MachineType: cfg.MachineType, NICs: p.nics,
		Description: "restored by ahvfs from " + rp.Name()}
	for _, d := range p.disks {
		p.spec.Disks = append(p.spec.Disks, nutanix.DiskSpec{Bus: d.Bus, Index: d.Index, SizeBytes: d.Disk.Size, ContainerUUID: container})
	}
	return p, nil
}

// findContainer resolves a storage container name or UUID on cluster c.
// A name must be unique on the cluster; a UUID must be one of its
// containers (containers the API reports without a cluster are accepted).
func findContainer(ctx context.Context, cl nutanix.Cluster, c nutanix.ClusterInfo, want, key string) (string, error) {
	ctrs, err := cl.ListStorageContainers(ctx)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", key, want, err)
	}
	var names, byName []string
	for _, x := range ctrs {
		if x.ClusterUUID != "" && x.ClusterUUID != c.UUID {
			continue
		}
		if x.UUID == want {
			return x.UUID, nil
		}
		if x.Name == want {
			byName = append(byName, x.UUID)
		}
		names = append(names, x.Name)
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return "", fmt.Errorf("%s %q: no such storage container on %s (containers: %s)", key, want, c.Name, strings.Join(names, ", "))
	}
	return "", fmt.Errorf("%s %q: %d storage containers of that name on %s: give the UUID (%s)", key, want, len(byName), c.Name, strings.Join(byName, ", "))
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
