package prismsim

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// Each simulated Prism Element cluster has one host. Its memory is
// in use by the VMs powered on there. Its storage containers are thin
// slices of one storage pool, as on a cluster without reservations: each
// reports the pool's capacity and free space, used by the blocks every
// VM and volume group disk file of the cluster holds on this machine
// (sparse files: a restore that writes 1 GiB of a 100 GiB disk uses 1 GiB).
const (
	defaultHostMemory        = 512 << 30
	defaultContainerCapacity = 8 << 40
)

// SetCapacity sets the memory of a cluster's host and the size of its
// storage pool (0 keeps a figure), so that tests can make a cluster too
// small for what they restore.
func (s *Sim) SetCapacity(clusterName string, memoryBytes, containerBytes int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.clusterByName(clusterName)
	if c == nil || c.PC {
		return fmt.Errorf("cluster %s: %w", clusterName, ErrNotFound)
	}
	if memoryBytes > 0 {
		c.MemoryBytes = memoryBytes
	}
	for _, ctr := range s.m.Containers {
		if ctr.ClusterUUID == c.UUID && containerBytes > 0 {
			ctr.CapacityBytes = containerBytes
		}
	}
	s.save()
	return nil
}

// AddContainer adds a storage container to a cluster's pool.
func (s *Sim) AddContainer(clusterName, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.clusterByName(clusterName)
	if c == nil || c.PC {
		return fmt.Errorf("cluster %s: %w", clusterName, ErrNotFound)
	}
	pool := s.m.containerFor(c.UUID)
	ctr := &container{UUID: simkit.NewUUID(), Name: name, ClusterUUID: c.UUID}
	if pool != nil {
		ctr.CapacityBytes = pool.CapacityBytes
	}
	s.m.Containers = append(s.m.Containers, ctr)
	s.save()
	return nil
}

// hostUUID is the UUID of the one host of cluster c, stable across runs.
func hostUUID(c *cluster) string {
	h := sha256.Sum256([]byte("host:" + c.UUID))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// memory returns the host memory of cluster c and the bytes the VMs
// powered on there use. Callers hold s.mu.
func (s *Sim) memory(c *cluster) (total, used int64) {
	total = c.MemoryBytes
	if total == 0 {
		total = defaultHostMemory
	}
	for _, v := range s.m.VMs {
		if v.ClusterUUID == c.UUID && v.PowerState == "ON" {
			used += v.MemoryMiB << 20
		}
	}
	return total, min(used, total)
}

// ppm is part/whole in parts per million.
func ppm(part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	return int64(float64(part) / float64(whole) * 1e6)
}

// space returns the capacity of a container's pool and the bytes the
// disk files of the pool's containers hold. Callers hold s.mu.
func (s *Sim) space(ctr *container) (capacity, used int64) {
	capacity = ctr.CapacityBytes
	if capacity == 0 {
		capacity = defaultContainerCapacity
	}
	allocated := func(rel string) int64 {
		fi, err := os.Stat(s.abs(rel))
		if err != nil {
			return 0
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return st.Blocks * 512
		}
		return fi.Size()
	}
	inPool := func(id string) bool {
		c := s.m.containerByUUID(id)
		return c != nil && c.ClusterUUID == ctr.ClusterUUID
	}
	for _, v := range s.m.VMs {
		for _, d := range v.Disks {
			if d.File != "" && inPool(d.ContainerUUID) {
				used += allocated(d.File)
			}
		}
	}
	for _, g := range s.m.VGs {
		for _, d := range g.Disks {
			if d.File != "" && inPool(d.ContainerUUID) {
				used += allocated(d.File)
			}
		}
	}
	return capacity, min(used, capacity)
}

// ---------- v2.0 ----------

// v2Host is a HostDTO: numbers at the top, stats as strings.
func (s *Sim) v2Host(c *cluster) obj {
	total, used := s.memory(c)
	return obj{"uuid": hostUUID(c), "name": c.Name + "-host-1", "cluster_uuid": c.UUID, "hypervisor_type": "kKvm",
		"memory_capacity_in_bytes": total, "cpu_capacity_in_hz": int64(16 * 3_200_000_000), "num_cpu_cores": 16,
		"num_cpu_sockets": 2, "num_cpu_threads": 32, "num_vms": s.vmsOn(c),
		"stats": obj{"hypervisor_memory_usage_ppm": strconv.FormatInt(ppm(used, total), 10), "hypervisor_cpu_usage_ppm": "100000"}}
}

// vmsOn counts the VMs of cluster c. Callers hold s.mu.
func (s *Sim) vmsOn(c *cluster) int {
	n := 0
	for _, v := range s.m.VMs {
		if v.ClusterUUID == c.UUID {
			n++
		}
	}
	return n
}

// v2ListHosts serves GET /hosts/: the host of every simulated PE cluster.
func (s *Sim) v2ListHosts(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ents []obj
	for _, c := range s.m.Clusters {
		if !c.PC {
			ents = append(ents, s.v2Host(c))
		}
	}
	simkit.WriteJSON(w, http.StatusOK, v2Collection(ents))
}

// v2ContainerUsage is a ContainerDTO's max_capacity and usage_stats (a
// map of strings, as v2.0 sends it).
func (s *Sim) v2ContainerUsage(ctr *container) obj {
	capacity, used := s.space(ctr)
	str := func(n int64) string { return strconv.FormatInt(n, 10) }
	return obj{"max_capacity": capacity, "usage_stats": obj{
		"storage.user_capacity_bytes": str(capacity), "storage.user_free_bytes": str(capacity - used), "storage.user_usage_bytes": str(used),
		"storage.capacity_bytes": str(capacity), "storage.free_bytes": str(capacity - used), "storage.usage_bytes": str(used)}}
}

// ---------- v3 ----------

func (s *Sim) v3Host(c *cluster) obj {
	total, _ := s.memory(c)
	t0 := time.Unix(1700000000, 0)
	name := c.Name + "-host-1"
	return obj{
		"metadata": v3Meta("host", hostUUID(c), 1, t0, t0),
		"spec":     obj{"name": name, "resources": obj{}},
		"status": obj{"name": name, "state": "COMPLETE",
			"cluster_reference": obj{"kind": "cluster", "uuid": c.UUID, "name": c.Name},
			"resources": obj{"memory_capacity_mib": total >> 20, "cpu_capacity_hz": int64(16 * 3_200_000_000), "num_cpu_cores": 16,
				"num_cpu_sockets": 2, "cpu_model": "Simulated CPU @ 3.20GHz", "host_type": "HYPER_CONVERGED"}},
	}
}

// v3ListHosts serves POST hosts/list (memory capacity only: v3 reports no
// usage).
func (s *Sim) v3ListHosts(w http.ResponseWriter, r *http.Request) {
	v3List(s, w, r, "host", func(listReq) []*cluster {
		var pe []*cluster
		for _, c := range s.m.Clusters {
			if !c.PC {
				pe = append(pe, c)
			}
		}
		return pe
	}, func(c *cluster, k string) string {
		if k == "cluster_name" {
			return c.Name
		}
		return ""
	}, s.v3Host)
}

// ---------- v4 ----------

func (s *Sim) v4Host(c *cluster) obj {
	total, _ := s.memory(c)
	return obj{"$objectType": "clustermgmt.v4.config.Host", "$reserved": reserved(), "extId": hostUUID(c),
		"hostName": c.Name + "-host-1", "hostType": "HYPER_CONVERGED", "memorySizeBytes": total, "numberOfCpuCores": 16,
		"numberOfCpuSockets": 2, "numberOfCpuThreads": 32, "cpuFrequencyHz": int64(3_200_000_000),
		"cluster": obj{"$objectType": "clustermgmt.v4.config.ClusterReference", "uuid": c.UUID, "name": c.Name}}
}

// v4ListHosts serves config/clusters/{clusterExtId}/hosts.
func (s *Sim) v4ListHosts(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "clusterExtId", "Cluster %s not found", s.m.clusterByUUID, func(c *cluster) {
		var hosts []*cluster
		if !c.PC {
			hosts = append(hosts, c)
		}
		v4List(s, w, r, hosts, nil, s.v4Host)
	})
}

// statsWindow parses a stats request's required $startTime and $endTime
// and returns the sample time to report, or false (and answers 400) when
// they are missing or wrong. ok with sample false: no sample in the window.
func statsWindow(w http.ResponseWriter, r *http.Request) (at time.Time, sample, ok bool) {
	q := r.URL.Query()
	start, err1 := time.Parse(time.RFC3339, q.Get("$startTime"))
	end, err2 := time.Parse(time.RFC3339, q.Get("$endTime"))
	if err1 != nil || err2 != nil || !end.After(start) {
		v4Error(w, r, http.StatusBadRequest, "$startTime and $endTime are required (ISO-8601), with $startTime before $endTime")
		return time.Time{}, false, false
	}
	// The newest sample of the window: samples fall every 30 s, the last
	// one at or before the window's end (or now).
	at = time.Now().UTC()
	if end.Before(at) {
		at = end
	}
	at = at.Truncate(30 * time.Second)
	return at, !at.Before(start), true
}

// series is a v4 statistic with one sample at at, or none.
func series(at time.Time, sample bool, v int64) []obj {
	if !sample {
		return []obj{}
	}
	return []obj{{"$objectType": "common.v1.stats.TimeIntValuePair", "timestamp": ts(at), "value": v}}
}

// v4ClusterStats serves stats/clusters/{extId}.
func (s *Sim) v4ClusterStats(w http.ResponseWriter, r *http.Request) {
	at, sample, ok := statsWindow(w, r)
	if !ok {
		return
	}
	withPath(s, w, r, "extId", "Cluster %s not found", s.m.clusterByUUID, func(c *cluster) {
		total, used := s.memory(c)
		var capacity, usedBytes int64
		if ctr := s.m.containerFor(c.UUID); ctr != nil {
			capacity, usedBytes = s.space(ctr) // one pool
		}
		v4Get(w, r, "", obj{"$objectType": "clustermgmt.v4.stats.ClusterStats", "extId": c.UUID,
			"aggregateHypervisorMemoryUsagePpm": series(at, sample, ppm(used, total)),
			"hypervisorCpuUsagePpm":             series(at, sample, 100000),
			"storageCapacityBytes":              series(at, sample, capacity),
			"storageUsageBytes":                 series(at, sample, usedBytes)})
	})
}

// v4ContainerStats serves stats/storage-containers/{extId}.
func (s *Sim) v4ContainerStats(w http.ResponseWriter, r *http.Request) {
	at, sample, ok := statsWindow(w, r)
	if !ok {
		return
	}
	withPath(s, w, r, "extId", "Storage container %s not found", s.m.containerByUUID, func(ctr *container) {
		capacity, used := s.space(ctr)
		v4Get(w, r, "", obj{"$objectType": "clustermgmt.v4.stats.StorageContainerStats", "containerExtId": ctr.UUID,
			"storageCapacityBytes": series(at, sample, capacity),
			"storageFreeBytes":     series(at, sample, capacity-used),
			"storageUsageBytes":    series(at, sample, used)})
	})
}
