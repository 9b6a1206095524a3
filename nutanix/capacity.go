package nutanix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Where each API keeps a cluster's memory and its containers' free space
// (docs/research/nutanix-capacity.md has the sources):
//   - v2.0 (Prism Element): GET /hosts/ memory_capacity_in_bytes and
//     stats["hypervisor_memory_usage_ppm"]; GET /storage_containers/
//     usage_stats["storage.user_free_bytes"]. The stats maps hold strings.
//   - v3 alone (Prism Central without v2.0): hosts/list
//     status.resources.memory_capacity_mib; no usage, no containers.
//   - v4 clustermgmt: config/clusters/{id}/hosts memorySizeBytes;
//     stats/clusters/{id} aggregateHypervisorMemoryUsagePpm;
//     stats/storage-containers/{id} storageFreeBytes. Stats are series of
//     {timestamp, value} over a $startTime..$endTime window.

// statsWindow is how far back the v4 stats queries look for the newest
// sample (the cluster samples every 30 s or so).
const statsWindow = 15 * time.Minute

// ppmOf returns bytes × ppm / 1e6 without overflowing, for ppm in
// 0..1e6 (more, from a confused cluster, counts as all of it).
func ppmOf(bytes, ppm int64) int64 {
	ppm = min(max(ppm, 0), 1e6)
	return bytes/1e6*ppm + bytes%1e6*ppm/1e6
}

// statInt reads a v2 stats value: a decimal string (as v2.0 sends them) or
// a number. Nutanix sends -1 for a statistic it has no value for, so a
// negative value is no value.
func statInt(m map[string]json.RawMessage, key string) (int64, bool) {
	raw, ok := m[key]
	if !ok {
		return 0, false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// ---------- v2.0 and v3 ----------

type v2Host struct {
	UUID                  string                     `json:"uuid"`
	ClusterUUID           string                     `json:"cluster_uuid"`
	MemoryCapacityInBytes int64                      `json:"memory_capacity_in_bytes"`
	Stats                 map[string]json.RawMessage `json:"stats"`
}

type v3Host struct {
	Metadata struct {
		UUID string `json:"uuid"`
	} `json:"metadata"`
	Status struct {
		ClusterReference *v3Ref `json:"cluster_reference"`
		Resources        struct {
			MemoryCapacityMiB int64 `json:"memory_capacity_mib"`
		} `json:"resources"`
	} `json:"status"`
}

// ClusterCapacity reads the v2.0 hosts and containers when the endpoint
// serves v2.0 and lists the cluster's hosts there, else the v3 hosts
// alone (memory in use and containers unknown).
func (b *v3Backend) ClusterCapacity(ctx context.Context, clusterUUID string) (Capacity, error) {
	if b.v2base == "" {
		return b.v3Capacity(ctx, clusterUUID, "this endpoint does not serve v2.0")
	}
	out := Capacity{ClusterUUID: clusterUUID, MemoryUsedBytes: Unknown}
	var hosts v2List[v2Host]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/hosts/"), out: &hosts}); err != nil {
		return Capacity{}, fmt.Errorf("list hosts: %w", err)
	}
	var used int64
	n, silent := 0, 0
	for _, h := range hosts.Entities {
		if h.ClusterUUID != "" && h.ClusterUUID != clusterUUID {
			continue
		}
		n++
		out.MemoryBytes += h.MemoryCapacityInBytes
		if ppm, ok := statInt(h.Stats, "hypervisor_memory_usage_ppm"); ok {
			used += ppmOf(h.MemoryCapacityInBytes, ppm)
		} else {
			// A host that reports no use (in maintenance, upgrading) runs
			// no VM: none of its memory counts as free.
			used += h.MemoryCapacityInBytes
			silent++
		}
	}
	if n == 0 {
		// A Prism Central's v2.0 gateway may list only its own hosts.
		return b.v3Capacity(ctx, clusterUUID, "v2.0 lists no host of the cluster")
	}
	out.MemoryUsedBytes = used
	if silent > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("%d of %d hosts report no memory use: their memory counts as not free", silent, n))
	}
	var ctrs v2List[v2StorageContainer]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/storage_containers/"), out: &ctrs}); err != nil {
		return Capacity{}, fmt.Errorf("list storage containers: %w", err)
	}
	out.Containers = []ContainerSpace{}
	for _, c := range ctrs.Entities {
		if c.ClusterUUID != "" && c.ClusterUUID != clusterUUID {
			continue
		}
		cs := ContainerSpace{StorageContainer: c.neutral(), FreeBytes: Unknown}
		if free, ok := statInt(c.UsageStats, "storage.user_free_bytes"); ok {
			cs.FreeBytes = free
		} else {
			out.Notes = append(out.Notes, "storage container "+c.Name+" reports no free space")
		}
		out.Containers = append(out.Containers, cs)
	}
	return out, nil
}

// v3Capacity is the memory of the cluster's hosts from v3 hosts/list, the
// only figure v3 has; why says why v2.0 did not serve.
func (b *v3Backend) v3Capacity(ctx context.Context, clusterUUID, why string) (Capacity, error) {
	hosts, err := v3List(ctx, b, "host", "list hosts", func(h v3Host) (int64, bool) {
		ref := h.Status.ClusterReference
		return h.Status.Resources.MemoryCapacityMiB << 20, ref != nil && ref.UUID == clusterUUID
	})
	if err != nil {
		return Capacity{}, err
	}
	if len(hosts) == 0 {
		return Capacity{}, fmt.Errorf("cluster %s: no hosts listed: %w", clusterUUID, ErrNotFound)
	}
	out := Capacity{ClusterUUID: clusterUUID, MemoryUsedBytes: Unknown}
	for _, m := range hosts {
		out.MemoryBytes += m
	}
	out.Notes = append(out.Notes, "memory in use and storage container space are unknown (v3 reports neither, and "+why+")")
	return out, nil
}

// ---------- v4 ----------

type v4Host struct {
	ExtID           string `json:"extId"`
	MemorySizeBytes int64  `json:"memorySizeBytes"`
}

// v4Series is a v4 statistic: samples of {timestamp, value}.
type v4Series []struct {
	Timestamp time.Time `json:"timestamp"`
	Value     int64     `json:"value"`
}

// last returns the newest sample's value.
func (s v4Series) last() (int64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	newest := s[0]
	for _, x := range s[1:] {
		if x.Timestamp.After(newest.Timestamp) {
			newest = x
		}
	}
	return newest.Value, newest.Value >= 0
}

// stats reads a v4 stats entity over the last statsWindow.
func (b *v4Backend) stats(ctx context.Context, what, path string, out any) error {
	now := time.Now().UTC()
	q := url.Values{"$startTime": {now.Add(-statsWindow).Format(time.RFC3339)}, "$endTime": {now.Format(time.RFC3339)}}
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.p("clustermgmt", path), query: q, out: out}); err != nil {
		return fmt.Errorf("%s stats: %w", what, err)
	}
	return nil
}

// ClusterCapacity sums the cluster's hosts' memory, reads the share in use
// from the cluster's stats, and each container's free bytes from its
// stats. A statistic the cluster has no sample of is Unknown, with a note.
func (b *v4Backend) ClusterCapacity(ctx context.Context, clusterUUID string) (Capacity, error) {
	out := Capacity{ClusterUUID: clusterUUID, MemoryUsedBytes: Unknown}
	n := 0
	err := v4ListAll(ctx, b, b.p("clustermgmt", "/config/clusters/"+url.PathEscape(clusterUUID)+"/hosts"), nil, func(h v4Host) error {
		n++
		out.MemoryBytes += h.MemorySizeBytes
		return nil
	})
	if err != nil {
		return Capacity{}, fmt.Errorf("list hosts of cluster %s: %w", clusterUUID, err)
	}
	if n == 0 {
		return Capacity{}, fmt.Errorf("cluster %s: no hosts listed: %w", clusterUUID, ErrNotFound)
	}
	if out.MemoryBytes <= 0 {
		out.MemoryBytes = Unknown
		out.Notes = append(out.Notes, "the cluster's hosts report no memory size")
	}
	var cs v4Response[struct {
		Memory v4Series `json:"aggregateHypervisorMemoryUsagePpm"`
	}]
	if err := b.stats(ctx, "cluster "+clusterUUID, "/stats/clusters/"+url.PathEscape(clusterUUID), &cs); err != nil {
		return Capacity{}, err
	}
	if ppm, ok := cs.Data.Memory.last(); ok && out.MemoryBytes != Unknown {
		out.MemoryUsedBytes = ppmOf(out.MemoryBytes, ppm)
	} else if !ok {
		out.Notes = append(out.Notes, "the cluster's stats have no memory usage sample in the last "+statsWindow.String())
	}
	ctrs, err := b.ListStorageContainers(ctx)
	if err != nil {
		return Capacity{}, err
	}
	out.Containers = []ContainerSpace{}
	for _, c := range ctrs {
		if c.ClusterUUID != "" && c.ClusterUUID != clusterUUID {
			continue
		}
		var st v4Response[struct {
			Free v4Series `json:"storageFreeBytes"`
		}]
		space := ContainerSpace{StorageContainer: c, FreeBytes: Unknown}
		err := b.stats(ctx, "storage container "+c.Name, "/stats/storage-containers/"+url.PathEscape(c.UUID), &st)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Capacity{}, err
		}
		// A container without statistics yet (new) answers 404.
		if free, ok := st.Data.Free.last(); ok && err == nil {
			space.FreeBytes = free
		} else {
			out.Notes = append(out.Notes, "storage container "+c.Name+" reports no free space")
		}
		out.Containers = append(out.Containers, space)
	}
	return out, nil
}
