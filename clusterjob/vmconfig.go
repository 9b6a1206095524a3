package clusterjob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// VMConfigVersion is the version of the VM configuration record this code
// writes. Readers accept every version up to it; fields are only ever
// added, so a newer record is refused only when its version says so.
const VMConfigVersion = 1

// VMConfig is the VM's configuration at backup time: the record stored as
// a restore point's Config (docs/FORMAT.md, "VM configuration record").
// Backup writes it (NewVMConfig); restore, export and the restore-point
// tree read it (ConfigOf).
type VMConfig struct {
	Version        int          `json:"version"`
	UUID           string       `json:"uuid"`
	Name           string       `json:"name"`
	Description    string       `json:"description,omitempty"`
	ClusterUUID    string       `json:"cluster_uuid,omitempty"`
	ClusterName    string       `json:"cluster_name,omitempty"`
	NumSockets     int          `json:"num_sockets"`
	CoresPerSocket int          `json:"cores_per_socket"`
	ThreadsPerCore int          `json:"threads_per_core,omitempty"`
	VCPUs          int          `json:"vcpus"`
	MemoryBytes    int64        `json:"memory_bytes"`
	BootType       string       `json:"boot_type,omitempty"`    // LEGACY, UEFI, SECURE_BOOT
	MachineType    string       `json:"machine_type,omitempty"` // PC, Q35, PSERIES
	PowerState     string       `json:"power_state,omitempty"`
	Disks          []DiskConfig `json:"disks"`
	NICs           []NICConfig  `json:"nics"`
	NGT            NGTConfig    `json:"ngt"`
	// API is the Prism API family the backup used; SnapshotID the snapshot
	// the restore point was read from.
	API        string `json:"api,omitempty"`
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Hypervisor is where the VM ran: "" for AHV, HypervisorXen for an
	// XCP-ng / XenServer pool (API is then "xapi", disks are on bus "xvd"
	// with the VBD's userdevice as index, ContainerUUID is the SR's).
	Hypervisor string `json:"hypervisor,omitempty"`
	// Xen is what only a restore to XCP-ng uses (nil for AHV VMs).
	Xen *XenConfig `json:"xen,omitempty"`
}

// XenConfig is the part of an XCP-ng VM's record that has no AHV
// counterpart, kept so that a restore to XCP-ng recreates the VM as it was.
type XenConfig struct {
	DomainType       string            `json:"domain_type,omitempty"` // hvm, pv, pvh
	HVMBootPolicy    string            `json:"hvm_boot_policy,omitempty"`
	HVMBootParams    map[string]string `json:"hvm_boot_params,omitempty"`
	Platform         map[string]string `json:"platform,omitempty"`
	VCPUsMax         int64             `json:"vcpus_max,omitempty"`
	MemoryDynamicMin int64             `json:"memory_dynamic_min,omitempty"`
	MemoryDynamicMax int64             `json:"memory_dynamic_max,omitempty"`
	MemoryStaticMin  int64             `json:"memory_static_min,omitempty"`
	// Disks are the VM's disk VBDs in userdevice order.
	Disks []XenDisk `json:"disks,omitempty"`
	// NICs are its VIFs in device order.
	NICs []XenNIC `json:"nics,omitempty"`
	// Strategy is how the restore point was read: "cbt" or "xva".
	Strategy string `json:"strategy,omitempty"`
}

// XenDisk is one disk VBD and its VDI.
type XenDisk struct {
	Userdevice string `json:"userdevice"`
	Bootable   bool   `json:"bootable,omitempty"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	VDIUUID    string `json:"vdi_uuid"`
	NameLabel  string `json:"name_label,omitempty"`
	SRUUID     string `json:"sr_uuid,omitempty"`
	SRName     string `json:"sr_name,omitempty"`
}

// XenNIC is one VIF.
type XenNIC struct {
	Device      string `json:"device"`
	NetworkUUID string `json:"network_uuid,omitempty"`
	NetworkName string `json:"network_name,omitempty"`
	MAC         string `json:"mac,omitempty"`
	MTU         int64  `json:"mtu,omitempty"`
}

// DiskConfig is one device of the VM, in bus/index order.
type DiskConfig struct {
	// Disk is N of the restore point's disk-N, -1 when the device was not
	// stored (CD-ROM, volume group attachment, excluded).
	Disk            int    `json:"disk"`
	Bus             string `json:"bus"` // scsi, ide, pci, sata, spapr
	Index           int    `json:"index"`
	SizeBytes       int64  `json:"size_bytes"`
	UUID            string `json:"uuid,omitempty"`
	IsCDROM         bool   `json:"is_cdrom,omitempty"`
	VolumeGroupUUID string `json:"volume_group_uuid,omitempty"`
	ContainerUUID   string `json:"container_uuid,omitempty"`
	ImageUUID       string `json:"image_uuid,omitempty"`
	Excluded        bool   `json:"excluded,omitempty"`
}

// NICConfig is one network interface.
type NICConfig struct {
	UUID        string `json:"uuid,omitempty"`
	SubnetUUID  string `json:"subnet_uuid,omitempty"`
	SubnetName  string `json:"subnet_name,omitempty"`
	MAC         string `json:"mac,omitempty"`
	Model       string `json:"model,omitempty"` // VIRTIO, E1000, ...
	IsConnected bool   `json:"is_connected"`
}

// NGTConfig is the guest tools state at backup time.
type NGTConfig struct {
	Installed  bool   `json:"installed"`
	Enabled    bool   `json:"enabled"`
	Reachable  bool   `json:"reachable"`
	VSSCapable bool   `json:"vss_capable"`
	Version    string `json:"version,omitempty"`
}

// Defaults of a restore point without configuration (made by import).
const (
	DefaultVCPUs       = 1
	DefaultMemoryBytes = 2 << 30
)

// NewVMConfig builds the record of v as read through api. stored maps the
// UUIDs of the disks stored in the restore point to their disk-N;
// excluded marks the disks left out on purpose.
func NewVMConfig(v nutanix.VM, api nutanix.APIVersion, stored map[string]int, excluded map[string]bool) VMConfig {
	c := VMConfig{Version: VMConfigVersion, UUID: v.UUID, Name: v.Name, Description: v.Description,
		ClusterUUID: v.ClusterUUID, ClusterName: v.ClusterName, NumSockets: v.NumSockets,
		CoresPerSocket: v.CoresPerSocket, ThreadsPerCore: v.ThreadsPerCore, VCPUs: v.VCPUs, MemoryBytes: v.MemoryBytes,
		BootType: string(v.BootType), MachineType: v.MachineType, PowerState: string(v.PowerState), API: string(api),
		NGT: NGTConfig{Installed: v.NGT.Installed, Enabled: v.NGT.Enabled, Reachable: v.NGT.Reachable,
			VSSCapable: v.NGT.VSSCapable, Version: v.NGT.Version},
		Disks: []DiskConfig{}, NICs: []NICConfig{}}
	for _, d := range v.Disks {
		n, ok := stored[d.UUID]
		if !ok {
			n = -1
		}
		c.Disks = append(c.Disks, DiskConfig{Disk: n, Bus: strings.ToLower(d.Bus), Index: d.Index, SizeBytes: d.SizeBytes,
			UUID: d.UUID, IsCDROM: d.IsCDROM, VolumeGroupUUID: d.VolumeGroupUUID, ContainerUUID: d.ContainerUUID,
			ImageUUID: d.ImageUUID, Excluded: excluded[d.UUID]})
	}
	for _, n := range v.NICs {
		c.NICs = append(c.NICs, NICConfig{UUID: n.UUID, SubnetUUID: n.SubnetUUID, SubnetName: n.SubnetName, MAC: n.MAC,
			Model: n.Model, IsConnected: n.IsConnected})
	}
	return c
}

// DecodeVMConfig decodes a configuration document. A record with a
// "version" key is decoded as the record (a newer version than this code
// knows is refused). A document without one — what `ahvfs import
// --config` may be given, such as a VM as the Prism client describes it —
// is matched leniently: keys case-insensitively, underscores ignored.
func DecodeVMConfig(raw []byte) (*VMConfig, error) {
	c := &VMConfig{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return c, nil
	}
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("VM configuration: %w", err)
	}
	if probe.Version != nil {
		if *probe.Version > VMConfigVersion {
			return nil, fmt.Errorf("VM configuration version %d is newer than this ahvfs reads (%d): upgrade ahvfs", *probe.Version, VMConfigVersion)
		}
		if err := json.Unmarshal(raw, c); err != nil {
			return nil, fmt.Errorf("VM configuration: %w", err)
		}
		return c, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("VM configuration: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("VM configuration: want a JSON object")
	}
	norm, _ := json.Marshal(foldKeys(v, vmConfigKeys))
	if err := json.Unmarshal(norm, c); err != nil {
		return nil, fmt.Errorf("VM configuration: %w", err)
	}
	return c, nil
}

// ConfigOf is the configuration of rp with the defaults applied: a restore
// point without one (import) gets DefaultVCPUs, DefaultMemoryBytes, legacy
// BIOS, machine type PC; missing CPU, memory or boot fields get them too.
// Name and UUID default to the restore point's VM.
func ConfigOf(rp *engine.RestorePoint) (*VMConfig, error) {
	c, err := DecodeVMConfig(rp.Config)
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", rp.Name(), err)
	}
	if c.Name == "" {
		c.Name = rp.VM
	}
	if c.UUID == "" {
		c.UUID = rp.VMUUID
	}
	if c.VCPUs == 0 && c.NumSockets == 0 {
		c.VCPUs = DefaultVCPUs
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	c.BootType = strings.ToUpper(c.BootType)
	if c.BootType == "" {
		c.BootType = "LEGACY"
	}
	c.MachineType = strings.ToUpper(c.MachineType)
	if c.MachineType == "" {
		c.MachineType = "PC"
	}
	for i := range c.NICs {
		c.NICs[i].Model = strings.ToUpper(c.NICs[i].Model)
	}
	return c, nil
}

// Sockets returns the socket and cores-per-socket counts (at least 1×1).
func (c *VMConfig) Sockets() (sockets, cores int) {
	sockets, cores = c.NumSockets, c.CoresPerSocket
	if cores < 1 {
		cores = 1
	}
	if sockets < 1 {
		sockets = max(1, c.VCPUs/cores)
	}
	return sockets, cores
}

// TotalVCPUs is sockets × cores.
func (c *VMConfig) TotalVCPUs() int {
	s, k := c.Sockets()
	return s * k
}

// vmConfigKeys maps folded JSON keys (lower case, no underscores) to the
// record's keys, for every struct in the record.
var vmConfigKeys = func() map[string]string {
	m := map[string]string{}
	for _, v := range []any{VMConfig{}, DiskConfig{}, NICConfig{}, NGTConfig{}} {
		b, _ := json.Marshal(v)
		var fields map[string]any
		json.Unmarshal(b, &fields)
		for k := range fields {
			m[fold(k)] = k
		}
	}
	// Keys the record leaves out when empty.
	for _, k := range []string{"description", "cluster_uuid", "cluster_name", "threads_per_core", "boot_type",
		"machine_type", "power_state", "api", "snapshot_id", "uuid", "is_cdrom", "volume_group_uuid",
		"container_uuid", "image_uuid", "excluded", "subnet_uuid", "subnet_name", "mac", "model", "version"} {
		m[fold(k)] = k
	}
	return m
}()

func fold(k string) string { return strings.ToLower(strings.ReplaceAll(k, "_", "")) }

// foldKeys renames the keys of every object in v to the record's keys
// where they match when folded; other keys are kept as they are.
func foldKeys(v any, keys map[string]string) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		names := make([]string, 0, len(t))
		for k := range t {
			names = append(names, k)
		}
		sort.Strings(names) // deterministic when two keys fold alike
		for _, k := range names {
			nk := k
			if r, ok := keys[fold(k)]; ok {
				nk = r
			}
			out[nk] = foldKeys(t[k], keys)
		}
		return out
	case []any:
		for i := range t {
			t[i] = foldKeys(t[i], keys)
		}
		return t
	}
	return v
}
