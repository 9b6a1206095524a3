package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Room is what a failover of the plan needs at the DR site beside what
// the site has free, per AHV cluster; the dry run prints it.
type Room struct {
	Clusters []ClusterRoom `json:"clusters"`
	// Notes say what could not be checked, and why.
	Notes []string `json:"notes,omitempty"`
}

// ClusterRoom is one DR AHV cluster: the memory of the VMs the failover
// powers on there, and the data of their disks.
type ClusterRoom struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
	VMs  int    `json:"vms"`
	// MemoryNeed is the VMs' memory (their overrides, else their restore
	// points' configuration). MemoryFree is the cluster's memory not in
	// use, nutanix.Unknown when the API does not say (then the check is
	// against MemoryTotal, itself Unknown when the hosts do not say).
	MemoryNeed  int64 `json:"memory_need"`
	MemoryFree  int64 `json:"memory_free"`
	MemoryTotal int64 `json:"memory_total"`
	// StorageNeed is the data of every disk restored on the cluster;
	// StorageFree the most free space any of its containers reports: they
	// are thin slices of one storage pool and all draw from it
	// (nutanix.Unknown: none reports any).
	StorageNeed int64 `json:"storage_need"`
	StorageFree int64 `json:"storage_free"`
	// Storage is the need per storage container.
	Storage []StorageRoom `json:"storage"`
}

// StorageRoom is the data restored into one storage container: Need is
// the bytes of the disks that hold data (a restore skips zero chunks), Free
// the container's free bytes (nutanix.Unknown: not reported). Container ""
// is the cluster's default, which the cluster picks: Free is then the most
// any of its containers has (Largest).
type StorageRoom struct {
	Container string `json:"container"`
	Largest   string `json:"largest,omitempty"`
	Need      int64  `json:"need"`
	Free      int64  `json:"free"`
}

// String is the room as the dry run prints it, one line per figure.
func (r Room) String() string {
	var b strings.Builder
	for _, c := range r.Clusters {
		fmt.Fprintf(&b, "DR cluster %s: %s %s %s of memory; %s free of %s\n", c.Name, vmCount(c.VMs), needs(c.VMs), size(c.MemoryNeed), size(c.MemoryFree), size(c.MemoryTotal))
		if c.Storage != nil {
			fmt.Fprintf(&b, "  their disks hold %s of data; the storage pool has %s free\n", size(c.StorageNeed), size(c.StorageFree))
		}
		for _, s := range c.Storage {
			name := "storage container " + s.Container
			if s.Container == "" {
				name = "the cluster's default container (the most room: " + firstOf(s.Largest, "none") + ")"
			}
			fmt.Fprintf(&b, "  %s: %s of data to restore; %s free\n", name, size(s.Need), size(s.Free))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

// needs is the verb after vmCount(n).
func needs(n int) string {
	if n == 1 {
		return "needs"
	}
	return "need"
}

// vmCount is "1 VM" or "N VMs".
func vmCount(n int) string {
	if n == 1 {
		return "1 VM"
	}
	return fmt.Sprintf("%d VMs", n)
}

// size prints a byte count, or "unknown".
func size(n int64) string {
	if n == nutanix.Unknown {
		return "unknown"
	}
	return humanize.IBytes(uint64(max(n, 0)))
}

// roomFor works out what the points need on the DR clusters and compares
// it with what each cluster reports free. A figure the cluster cannot
// give becomes a note, not a problem: the dry run says what it did not
// check. It returns the room and the problems.
func roomFor(ctx context.Context, cl nutanix.Cluster, r *engine.Repository, p *Plan, points []*engine.RestorePoint, clusters []nutanix.ClusterInfo, target string) (Room, []error) {
	var room Room
	var errs []error
	byUUID := map[string]*ClusterRoom{}
	var order []string
	type key struct{ cluster, container string }
	need := map[key]int64{}
	for _, rp := range points {
		cfg, err := clusterjob.ConfigOf(rp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := clusterOf(p, cfg, clusters, target)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rp.VM, err))
			continue
		}
		if c.UUID == "" {
			continue // target_ahv_cluster names no cluster: reported by Check
		}
		cr := byUUID[c.UUID]
		if cr == nil {
			cr = &ClusterRoom{Name: c.Name, UUID: c.UUID}
			byUUID[c.UUID] = cr
			order = append(order, c.UUID)
		}
		ov := p.override(rp.VM)
		cr.VMs++
		cr.MemoryNeed += firstPositive(ov.memory, cfg.MemoryBytes)
		var data int64
		for i := range rp.Disks {
			n, err := r.DataBytes(ctx, &rp.Disks[i])
			if err != nil {
				return room, append(errs, fmt.Errorf("%s: %w", rp.Name(), err))
			}
			data += n
		}
		need[key{c.UUID, firstOf(ov.Container, p.Container)}] += data
	}
	for _, id := range order {
		cr := byUUID[id]
		capa, err := cl.ClusterCapacity(ctx, id)
		if err != nil {
			room.Notes = append(room.Notes, fmt.Sprintf("DR cluster %s: capacity not checked: %v", cr.Name, err))
			room.Clusters = append(room.Clusters, *cr)
			continue
		}
		for _, n := range capa.Notes {
			room.Notes = append(room.Notes, "DR cluster "+cr.Name+": "+n)
		}
		cr.MemoryTotal, cr.MemoryFree = capa.MemoryBytes, nutanix.Unknown
		if capa.MemoryBytes != nutanix.Unknown && capa.MemoryUsedBytes != nutanix.Unknown {
			cr.MemoryFree = max(capa.MemoryBytes-capa.MemoryUsedBytes, 0)
		}
		switch {
		case cr.MemoryFree != nutanix.Unknown && cr.MemoryNeed > cr.MemoryFree:
			errs = append(errs, fmt.Errorf("DR cluster %s: the plan's %s %s %s of memory, and %s of its %s is free",
				cr.Name, vmCount(cr.VMs), needs(cr.VMs), size(cr.MemoryNeed), size(cr.MemoryFree), size(cr.MemoryTotal)))
		case cr.MemoryFree == nutanix.Unknown && cr.MemoryTotal != nutanix.Unknown && cr.MemoryNeed > cr.MemoryTotal:
			errs = append(errs, fmt.Errorf("DR cluster %s: the plan's %s %s %s of memory, more than its hosts have (%s)",
				cr.Name, vmCount(cr.VMs), needs(cr.VMs), size(cr.MemoryNeed), size(cr.MemoryTotal)))
		}
		var containers []string
		for k := range need {
			if k.cluster == id {
				containers = append(containers, k.container)
			}
		}
		slices.Sort(containers)
		cr.StorageFree = nutanix.Unknown
		for _, c := range capa.Containers {
			cr.StorageFree = max(cr.StorageFree, c.FreeBytes) // Unknown is -1
		}
		groupsFit := true
		for _, name := range containers {
			sr, err := storageRoom(cr.Name, capa, name, need[key{id, name}])
			if err != nil {
				errs, groupsFit = append(errs, err), false
			}
			cr.StorageNeed += sr.Need
			if capa.Containers != nil {
				cr.Storage = append(cr.Storage, sr)
			}
		}
		// Each group fits on its own; together they draw from one pool.
		if groupsFit && len(containers) > 1 && cr.StorageFree != nutanix.Unknown && cr.StorageNeed > cr.StorageFree {
			errs = append(errs, fmt.Errorf("DR cluster %s: the plan's disks hold %s of data in all, and its storage pool has %s free (its containers share it)",
				cr.Name, size(cr.StorageNeed), size(cr.StorageFree)))
		}
		room.Clusters = append(room.Clusters, *cr)
	}
	return room, errs
}

// storageRoom compares the data bound for container name ("": the
// cluster's default) with its free space: a named container's own, the
// default's the most any container reports.
func storageRoom(cluster string, capa nutanix.Capacity, name string, need int64) (StorageRoom, error) {
	sr := StorageRoom{Container: name, Need: need, Free: nutanix.Unknown}
	if capa.Containers == nil {
		return sr, nil // the note says why
	}
	if name == "" {
		for _, c := range capa.Containers {
			if c.FreeBytes != nutanix.Unknown && c.FreeBytes > sr.Free {
				sr.Free, sr.Largest = c.FreeBytes, c.Name
			}
		}
		if sr.Free != nutanix.Unknown && need > sr.Free {
			return sr, fmt.Errorf("DR cluster %s: the plan's disks hold %s of data for the default storage container; the one with the most room, %s, has %s free",
				cluster, size(need), sr.Largest, size(sr.Free))
		}
		return sr, nil
	}
	i := slices.IndexFunc(capa.Containers, func(c nutanix.ContainerSpace) bool { return c.Name == name || strings.EqualFold(c.UUID, name) })
	if i < 0 {
		return sr, fmt.Errorf("container %q: no such storage container on DR cluster %s", name, cluster)
	}
	sr.Free = capa.Containers[i].FreeBytes
	if sr.Free != nutanix.Unknown && need > sr.Free {
		return sr, fmt.Errorf("DR cluster %s: the disks bound for storage container %s hold %s of data, and it has %s free",
			cluster, name, size(need), size(sr.Free))
	}
	return sr, nil
}

// clusterOf is the DR AHV cluster a point is restored on, as the restore
// chooses it: target_ahv_cluster (target, its UUID), else the VM's own
// cluster when the DR site has it, else the only one.
func clusterOf(p *Plan, cfg *clusterjob.VMConfig, clusters []nutanix.ClusterInfo, target string) (nutanix.ClusterInfo, error) {
	if p.TargetAHVCluster != "" {
		i := slices.IndexFunc(clusters, func(c nutanix.ClusterInfo) bool { return c.UUID == target })
		if i < 0 {
			return nutanix.ClusterInfo{}, nil
		}
		return clusters[i], nil
	}
	for _, c := range clusters {
		if (cfg.ClusterUUID != "" && c.UUID == cfg.ClusterUUID) || (cfg.ClusterUUID == "" && cfg.ClusterName != "" && c.Name == cfg.ClusterName) {
			return c, nil
		}
	}
	if len(clusters) == 1 {
		return clusters[0], nil
	}
	return nutanix.ClusterInfo{}, errors.New("the DR site manages several AHV clusters and not the VM's own: set target_ahv_cluster")
}

func firstPositive(a, b int64) int64 {
	if a > 0 {
		return a
	}
	return b
}
