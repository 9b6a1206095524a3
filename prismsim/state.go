package prismsim

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// NGT is the Nutanix Guest Tools state a simulated VM reports.
type NGT string

// NGT states.
const (
	// NGTAbsent: tools not installed (the default).
	NGTAbsent NGT = "absent"
	// NGTInstalled: tools installed, enabled and reachable, but not VSS-capable
	// (a Linux guest without freeze scripts). Application-consistent requests
	// fall back to crash-consistent.
	NGTInstalled NGT = "installed"
	// NGTVSS: tools installed and VSS-capable; application-consistent
	// snapshots are honoured.
	NGTVSS NGT = "vss"
)

// Snapshot consistency types (v3 snapshot_type / v4 recoveryPointType).
const (
	CrashConsistent = "CRASH_CONSISTENT"
	AppConsistent   = "APPLICATION_CONSISTENT"
)

// model is the whole simulated cluster state. It is persisted as
// DIR/state.json after every mutation so a restarted simulator keeps its VMs,
// snapshots, images and volume groups. All access is under Sim.mu.
type model struct {
	Version        int                       `json:"version"`
	Seq            int64                     `json:"seq"`
	Clusters       []*cluster                `json:"clusters"`
	Containers     []*container              `json:"containers"`
	Subnets        []*subnet                 `json:"subnets"`
	VMs            map[string]*vm            `json:"vms"`
	Snapshots      map[string]*snapshot      `json:"snapshots"`
	RecoveryPoints map[string]*recoveryPoint `json:"recovery_points"`
	Images         map[string]*image         `json:"images"`
	VGs            map[string]*volumeGroup   `json:"volume_groups"`
	ISCSIClients   map[string]*iscsiClient   `json:"iscsi_clients"`
	Tasks          map[string]*task          `json:"tasks"`
	ExternalRepos  map[string]*externalRepo  `json:"external_repositories"`
	// Categories are the category values by v4 extId (categories.go).
	Categories map[string]*category `json:"categories"`
}

type cluster struct {
	UUID          string `json:"uuid"`
	Name          string `json:"name"`
	PC            bool   `json:"pc"`
	ClusterID     int64  `json:"cluster_id"`
	IncarnationID int64  `json:"incarnation_id"`
	// MemoryBytes is its host's memory (0: defaultHostMemory; capacity.go).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

type container struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	ClusterUUID string `json:"cluster_uuid"`
	// CapacityBytes is its size (0: defaultContainerCapacity; capacity.go).
	CapacityBytes int64 `json:"capacity_bytes,omitempty"`
}

type subnet struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	ClusterUUID string `json:"cluster_uuid"`
	VLAN        int    `json:"vlan"`
}

type vm struct {
	UUID           string    `json:"uuid"`
	Name           string    `json:"name"`
	Description    string    `json:"description,omitempty"`
	ClusterUUID    string    `json:"cluster_uuid"`
	Dir            string    `json:"dir"` // relative to the state dir: vms/<name>
	PowerState     string    `json:"power_state"`
	NumSockets     int       `json:"num_sockets"`
	VCPUsPerSocket int       `json:"vcpus_per_socket"`
	ThreadsPerCore int       `json:"threads_per_core"`
	MemoryMiB      int64     `json:"memory_mib"`
	MachineType    string    `json:"machine_type"`
	BootType       string    `json:"boot_type"`
	Disks          []*vmDisk `json:"disks"`
	NICs           []*vmNIC  `json:"nics"`
	NGT            NGT       `json:"ngt"`
	// GuestHung: the guest ignores shutdown requests (ACPI and NGT); only
	// a hard power-off stops it.
	GuestHung bool `json:"guest_hung,omitempty"`
	// Categories are the VM's categories, key → values.
	Categories     map[string][]string `json:"categories,omitempty"`
	SpecVersion    int64               `json:"spec_version"`
	State          string              `json:"state"` // PENDING until its create task ends, then COMPLETE
	GenerationUUID string              `json:"generation_uuid"`
	Created        time.Time           `json:"created"`
	Updated        time.Time           `json:"updated"`
}

type vmDisk struct {
	UUID          string `json:"uuid"`       // v3 disk uuid = v4 disk extId
	VDiskUUID     string `json:"vdisk_uuid"` // the NFS file name in .acropolis/vmdisk (differs, as on real clusters)
	Bus           string `json:"bus"`        // SCSI, IDE, PCI, SATA
	Index         int    `json:"index"`
	DeviceType    string `json:"device_type"` // DISK or CDROM
	Size          int64  `json:"size"`
	File          string `json:"file"` // relative to the state dir
	ContainerUUID string `json:"container_uuid"`
	SourceKind    string `json:"source_kind,omitempty"` // image, vm_disk, ...
	SourceUUID    string `json:"source_uuid,omitempty"`
	// External is the file on an external repository the disk reads
	// from until hydrated (nil: none, or hydration finished).
	External *diskExternal `json:"external,omitempty"`
}

type vmNIC struct {
	UUID       string `json:"uuid"`
	MAC        string `json:"mac"`
	SubnetUUID string `json:"subnet_uuid"`
	Model      string `json:"model"`
}

// snapshot is a point-in-time copy of one VM's disks. It is the v3
// vm_snapshot, the v2 snapshot and the v4 VM recovery point at once.
type snapshot struct {
	UUID          string      `json:"uuid"`
	VMUUID        string      `json:"vm_uuid"`
	Name          string      `json:"name"`
	Type          string      `json:"type"`           // what was taken
	RequestedType string      `json:"requested_type"` // what was asked for
	GroupUUID     string      `json:"group_uuid"`     // consistency group
	LocationUUID  string      `json:"location_uuid"`  // location agnostic uuid
	SnapID        int64       `json:"snap_id"`
	State         string      `json:"state"` // PENDING, COMPLETE
	Created       time.Time   `json:"created"`
	ExpiryMsecs   int64       `json:"expiry_msecs,omitempty"`
	Disks         []*snapDisk `json:"disks"`
	VM            vm          `json:"vm"` // the VM configuration at snapshot time
	RPUUID        string      `json:"rp_uuid,omitempty"`
	API           string      `json:"api"` // v2, v3 or v4: who created it
}

type snapDisk struct {
	DiskUUID   string `json:"disk_uuid"`
	VDiskUUID  string `json:"vdisk_uuid"`
	DiskRPUUID string `json:"disk_rp_uuid"` // v4 diskRecoveryPointExtId
	Bus        string `json:"bus"`
	Index      int    `json:"index"`
	Size       int64  `json:"size"`
	File       string `json:"file"`
	SnapPath   string `json:"snap_path"` // snapshot_file_path
	LivePath   string `json:"live_path"` // file_path
	Container  string `json:"container"`
}

type recoveryPoint struct {
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Created   time.Time `json:"created"`
	Expiry    time.Time `json:"expiry,omitzero"`
	Snapshots []string  `json:"snapshots"` // VM recovery points, in request order
	State     string    `json:"state"`
	Version   int64     `json:"version"`
}

type image struct {
	UUID        string    `json:"uuid"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Type        string    `json:"type"`
	State       string    `json:"state"`
	Size        int64     `json:"size"`
	File        string    `json:"file,omitempty"`
	Uploaded    bool      `json:"uploaded"`
	SourceURI   string    `json:"source_uri,omitempty"`
	ClusterUUID string    `json:"cluster_uuid"`
	SpecVersion int64     `json:"spec_version"`
	Created     time.Time `json:"created"`
}

type volumeGroup struct {
	UUID         string    `json:"uuid"`
	Name         string    `json:"name"`
	Description  string    `json:"description,omitempty"`
	ClusterUUID  string    `json:"cluster_uuid"`
	TargetName   string    `json:"target_name"`
	UsageType    string    `json:"usage_type"`
	TargetSecret string    `json:"target_secret,omitempty"`
	Disks        []*vgDisk `json:"disks"`
	Clients      []string  `json:"clients"` // iscsiClient uuids
	Version      int64     `json:"version"`
	Created      time.Time `json:"created"`
	API          string    `json:"api"`
}

type vgDisk struct {
	UUID          string `json:"uuid"`
	Index         int    `json:"index"`
	Size          int64  `json:"size"`
	File          string `json:"file"`
	ContainerUUID string `json:"container_uuid"`
	SourceKind    string `json:"source_kind,omitempty"`
	SourceUUID    string `json:"source_uuid,omitempty"`
}

type iscsiClient struct {
	UUID   string `json:"uuid"`
	IQN    string `json:"iqn,omitempty"`
	IP     string `json:"ip,omitempty"`
	Secret string `json:"secret,omitempty"`
}

func newModel() *model {
	m := &model{
		Version:        1,
		VMs:            map[string]*vm{},
		Snapshots:      map[string]*snapshot{},
		RecoveryPoints: map[string]*recoveryPoint{},
		Images:         map[string]*image{},
		VGs:            map[string]*volumeGroup{},
		ISCSIClients:   map[string]*iscsiClient{},
		Tasks:          map[string]*task{},
		ExternalRepos:  map[string]*externalRepo{},
		Categories:     map[string]*category{},
	}
	m.Clusters = []*cluster{
		{UUID: simkit.NewUUID(), Name: "prism-central", PC: true, ClusterID: 1000, IncarnationID: time.Now().UnixMicro()},
		{UUID: simkit.NewUUID(), Name: "cluster-a", ClusterID: 1001, IncarnationID: time.Now().UnixMicro() + 1},
		{UUID: simkit.NewUUID(), Name: "cluster-b", ClusterID: 1002, IncarnationID: time.Now().UnixMicro() + 2},
	}
	for _, c := range m.Clusters[1:] {
		m.Containers = append(m.Containers, &container{UUID: simkit.NewUUID(), Name: "default", ClusterUUID: c.UUID})
		m.Subnets = append(m.Subnets,
			&subnet{UUID: simkit.NewUUID(), Name: "vlan10", ClusterUUID: c.UUID, VLAN: 10},
			&subnet{UUID: simkit.NewUUID(), Name: "vlan20", ClusterUUID: c.UUID, VLAN: 20})
	}
	return m
}

// Lookups. Callers hold Sim.mu.

// first returns the first element of xs that ok accepts, or nil.
func first[T any](xs []*T, ok func(*T) bool) *T {
	if i := slices.IndexFunc(xs, ok); i >= 0 {
		return xs[i]
	}
	return nil
}

func (m *model) clusterByUUID(id string) *cluster {
	return first(m.Clusters, func(c *cluster) bool { return c.UUID == id })
}

func (m *model) clusterByName(name string) *cluster {
	return first(m.Clusters, func(c *cluster) bool { return c.Name == name })
}

func (m *model) containerFor(clusterUUID string) *container {
	return first(m.Containers, func(c *container) bool { return c.ClusterUUID == clusterUUID })
}

func (m *model) containerByUUID(id string) *container {
	return first(m.Containers, func(c *container) bool { return c.UUID == id })
}

func (m *model) subnetByUUID(id string) *subnet {
	return first(m.Subnets, func(s *subnet) bool { return s.UUID == id })
}

func (m *model) subnetByName(clusterUUID, name string) *subnet {
	return first(m.Subnets, func(s *subnet) bool {
		return s.Name == name && (clusterUUID == "" || s.ClusterUUID == clusterUUID)
	})
}

// sortedByCreation returns the values of m oldest first, ties ordered by
// key (the uuid), so that every listing has one order.
func sortedByCreation[T any](m map[string]*T, created func(*T) time.Time) []*T {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if c := created(m[a]).Compare(created(m[b])); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func (m *model) sortedVMs() []*vm {
	return sortedByCreation(m.VMs, func(v *vm) time.Time { return v.Created })
}

func (m *model) sortedSnapshots() []*snapshot {
	return sortedByCreation(m.Snapshots, func(s *snapshot) time.Time { return s.Created })
}

func (m *model) sortedImages() []*image {
	return sortedByCreation(m.Images, func(i *image) time.Time { return i.Created })
}

func (m *model) sortedVGs() []*volumeGroup {
	return sortedByCreation(m.VGs, func(g *volumeGroup) time.Time { return g.Created })
}

func (m *model) sortedRPs() []*recoveryPoint {
	return sortedByCreation(m.RecoveryPoints, func(r *recoveryPoint) time.Time { return r.Created })
}

func (m *model) vmByName(name string) *vm {
	for _, v := range m.sortedVMs() {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// snapDiskByPath finds a snapshot disk by its snapshot_file_path.
func (m *model) snapDiskByPath(p string) (*snapshot, *snapDisk) {
	for _, s := range m.Snapshots {
		if s.State != "COMPLETE" {
			continue
		}
		for _, d := range s.Disks {
			if d.SnapPath == p {
				return s, d
			}
		}
	}
	return nil, nil
}

// completeSnapshot finds a snapshot whose create task has ended.
func (m *model) completeSnapshot(id string) *snapshot {
	if sn := m.Snapshots[id]; sn != nil && sn.State == "COMPLETE" {
		return sn
	}
	return nil
}

// completeRP finds a recovery point whose create task has ended.
func (m *model) completeRP(id string) *recoveryPoint {
	if rp := m.RecoveryPoints[id]; rp != nil && rp.State == "COMPLETE" {
		return rp
	}
	return nil
}

// diskRP finds a disk recovery point by its extId.
func (m *model) diskRP(id string) (*snapshot, *snapDisk) {
	for _, s := range m.Snapshots {
		for _, d := range s.Disks {
			if d.DiskRPUUID == id {
				return s, d
			}
		}
	}
	return nil, nil
}

// diskByUUID finds a live VM disk or a VG disk by uuid and returns its file.
func (m *model) diskFileByUUID(id string) (file string, size int64, ok bool) {
	for _, v := range m.VMs {
		for _, d := range v.Disks {
			if d.UUID == id || d.VDiskUUID == id {
				return d.File, d.Size, true
			}
		}
	}
	for _, g := range m.VGs {
		for _, d := range g.Disks {
			if d.UUID == id {
				return d.File, d.Size, true
			}
		}
	}
	return "", 0, false
}

func (m *model) next() int64 { m.Seq++; return m.Seq }

// save writes the model to DIR/state.json atomically. Caller holds Sim.mu.
func (s *Sim) save() {
	b, err := json.MarshalIndent(s.m, "", " ")
	if err != nil {
		s.logf("save state: %v", err)
		return
	}
	p := filepath.Join(s.dir, "state.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		s.logf("save state: %v", err)
		return
	}
	if err := os.Rename(tmp, p); err != nil {
		s.logf("save state: %v", err)
	}
}

func loadModel(dir string) (*model, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	m := newModel()
	m.Clusters, m.Containers, m.Subnets = nil, nil, nil
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, "state.json"), err)
	}
	if len(m.Clusters) != 3 {
		return nil, fmt.Errorf("state.json: want 3 clusters, have %d", len(m.Clusters))
	}
	return m, nil
}
