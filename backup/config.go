package backup

import (
	"github.com/ahvfs/ahvfs/iscsi"
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
)

// VMConfig is the VM's configuration at backup time, stored as the
// restore point's Config (JSON) for restore. See the package doc.
type VMConfig struct {
	Version        int          `json:"version"` // 1
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
	Model       string `json:"model,omitempty"`
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

// vmConfig builds the configuration; stored maps disk UUIDs to their disk-N.
func vmConfig(v nutanix.VM, api nutanix.APIVersion, stored map[string]int, excluded map[string]bool) VMConfig {
	c := VMConfig{Version: 1, UUID: v.UUID, Name: v.Name, Description: v.Description, ClusterUUID: v.ClusterUUID,
		ClusterName: v.ClusterName, NumSockets: v.NumSockets, CoresPerSocket: v.CoresPerSocket,
		ThreadsPerCore: v.ThreadsPerCore, VCPUs: v.VCPUs, MemoryBytes: v.MemoryBytes, BootType: string(v.BootType),
		MachineType: v.MachineType, PowerState: string(v.PowerState), API: string(api),
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

// DefaultInitiatorIQN is this host's initiator name: the InitiatorName of
// /etc/iscsi/initiatorname.iscsi when open-iscsi configured one, else
// "iqn.2026-11.io.ahvfs:<hostname>".
func DefaultInitiatorIQN() string { return iscsi.DefaultInitiatorIQN() }
