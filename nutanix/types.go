package nutanix

import (
	"fmt"
	"time"
)

// The neutral model: what backup and restore jobs see, whichever API
// version produced it. UUIDs are v3 uuids or v4 extIds (the same values).

// BootType is how the VM firmware boots.
type BootType string

const (
	BootLegacy     BootType = "LEGACY"
	BootUEFI       BootType = "UEFI"
	BootSecureBoot BootType = "SECURE_BOOT"
)

// PowerState of a VM; also the transitions SetPowerState accepts.
type PowerState string

const (
	PowerOn  PowerState = "ON"
	PowerOff PowerState = "OFF"
)

// Consistency of a snapshot.
type Consistency string

const (
	CrashConsistent       Consistency = "CRASH_CONSISTENT"
	ApplicationConsistent Consistency = "APPLICATION_CONSISTENT"
)

// RegionKind tells whether a changed region holds data or reads as zeros.
type RegionKind string

const (
	RegionRegular RegionKind = "REGULAR"
	RegionZeroed  RegionKind = "ZEROED"
)

// VM is the inventory view of one AHV VM.
type VM struct {
	UUID           string
	Name           string
	Description    string
	ClusterUUID    string
	ClusterName    string
	VCPUs          int // NumSockets × CoresPerSocket
	NumSockets     int
	CoresPerSocket int
	ThreadsPerCore int
	MemoryBytes    int64
	BootType       BootType
	MachineType    string // PC, Q35, PSERIES
	PowerState     PowerState
	Disks          []Disk // in bus/index order, CD-ROMs and VG attachments included
	NICs           []NIC
	NGT            NGT
	// Categories are the Prism categories the VM carries, key → values
	// (Env → [prod]); nil when none (or, v4, when the categories could
	// not be listed).
	Categories map[string][]string `json:",omitempty"`
}

// BackupDisks returns the disks a backup reads: not CD-ROMs, not volume
// group attachments (those are reported, and backed up as VGs if at all).
func (v VM) BackupDisks() []Disk {
	var out []Disk
	for _, d := range v.Disks {
		if !d.IsCDROM && d.VolumeGroupUUID == "" {
			out = append(out, d)
		}
	}
	return out
}

// Disk is one device of a VM.
type Disk struct {
	UUID            string // VM disk uuid / v4 disk extId
	Bus             string // SCSI, IDE, PCI, SATA, SPAPR
	Index           int
	SizeBytes       int64
	IsCDROM         bool
	VolumeGroupUUID string // set when the device is a volume group attachment
	ContainerUUID   string // storage container holding the vDisk
	ImageUUID       string // the image it was cloned from, when known
	// External is the file on an external repository the disk reads
	// from until it is hydrated (v4.2 instant recovery); nil otherwise.
	External *ExternalDisk
	// Hydration is the disk's background copy from External; nil when
	// the disk has none (never had one, or it finished).
	Hydration *Hydration
}

// ExternalDisk is a VM disk's data source on an external repository: a
// raw image file, relative to the repository's export.
type ExternalDisk struct {
	RepositoryID string
	Path         string
	// Hydrate asks for background hydration into the disk's container.
	Hydrate bool
}

// Hydration is the progress of a disk's copy from its external source.
type Hydration struct {
	Status         string // IN_PROGRESS, FAILED, DISABLED (no "done": the info goes)
	RemainingBytes int64
}

// Address is the disk's "scsi.0"-style address.
func (d Disk) Address() string { return fmt.Sprintf("%s.%d", lower(d.Bus), d.Index) }

// NIC is one network interface.
type NIC struct {
	UUID        string
	SubnetUUID  string
	SubnetName  string
	MAC         string
	Model       string // VIRTIO, E1000, …
	IsConnected bool
}

// NGT is the Nutanix Guest Tools state of a VM.
type NGT struct {
	Installed  bool
	Enabled    bool
	Reachable  bool
	VSSCapable bool // application-consistent snapshots possible
	Version    string
}

// ClusterInfo is one Prism Element cluster (never the Prism Central entity).
type ClusterInfo struct {
	UUID           string
	Name           string
	ExternalIP     string
	DataServicesIP string // iSCSI discovery/login portal
	ISCSIPort      int    // 3260
	Version        string
}

// Portal returns "DSIP:3260", or "" if the cluster has no Data Services IP.
func (c ClusterInfo) Portal() string {
	if c.DataServicesIP == "" {
		return ""
	}
	return joinHostPort(c.DataServicesIP, c.ISCSIPort)
}

// Subnet is a VM network.
type Subnet struct {
	UUID        string
	Name        string
	VLANID      int
	Type        string // VLAN, OVERLAY
	ClusterUUID string
}

// Snapshot is a point-in-time copy of a VM: a v3 vm_snapshot (PE) or a v4
// recovery point. It carries what later calls (changed regions, volume
// groups, delete) need, so it is stored by the job as is.
type Snapshot struct {
	ID          string // vm_snapshot uuid / recovery point extId
	Name        string
	VMUUID      string
	API         APIVersion // which API made it (IDs are not interchangeable)
	CreatedAt   time.Time
	ExpiresAt   time.Time   // zero: never
	Consistency Consistency // what the cluster actually delivered
	State       string      // COMPLETE, …
	// VMRecoveryPointID is the v4 VM recovery point inside the RP.
	VMRecoveryPointID string `json:",omitempty"`
	// ConsistencyGroupUUID is the v3 snapshot group (v2 clone source).
	ConsistencyGroupUUID string `json:",omitempty"`
	ClusterUUID          string `json:",omitempty"`
	Disks                []SnapshotDisk
}

// Disk returns the snapshot of the VM disk diskUUID.
func (s Snapshot) Disk(diskUUID string) (SnapshotDisk, bool) {
	for _, d := range s.Disks {
		if d.DiskUUID == diskUUID {
			return d, true
		}
	}
	return SnapshotDisk{}, false
}

// SnapshotDisk is one disk inside a snapshot.
type SnapshotDisk struct {
	DiskUUID string // the VM disk it is a copy of ("" if it could not be mapped)
	// ID is the v4 disk recovery point extId.
	ID string `json:",omitempty"`
	// FilePath and SnapshotFilePath are the v3 NFS paths of the live vDisk
	// and of its snapshot (input of data/changed_regions).
	FilePath         string `json:",omitempty"`
	SnapshotFilePath string `json:",omitempty"`
	SizeBytes        int64  `json:",omitempty"`
	ContainerUUID    string `json:",omitempty"`
	// v2 clone source (v2.0 snapshots only).
	NDFSFilePath string `json:",omitempty"`
}

// Region is a byte range of a disk reported by changed-region tracking.
type Region struct {
	Offset int64
	Length int64
	Kind   RegionKind
}

// End is Offset+Length.
func (r Region) End() int64 { return r.Offset + r.Length }

// RegionQuery asks for the regions of one disk of Snapshot: all allocated
// regions (a full backup) when Reference is nil, else the regions that
// differ from Reference (an incremental).
type RegionQuery struct {
	Snapshot  Snapshot
	DiskUUID  string
	Reference *Snapshot
	Offset    int64 // start of the window
	Length    int64 // 0: to the end of the disk
	BlockSize int64 // v4 only: 32768, 65536, 131072 or 262144; 0: server default
}

// VolumeGroup is a volume group, usually a temporary clone of a snapshot disk.
type VolumeGroup struct {
	UUID        string
	Name        string
	ClusterUUID string
	TargetIQN   string // iSCSI target name, when known
	Disks       []VolumeGroupDisk
}

// VolumeGroupSpec describes a volume group of blank disks (the restore's
// iSCSI target).
type VolumeGroupSpec struct {
	Name        string
	Description string
	ClusterUUID string // "": the cluster the server picks (one PE: that one)
	// ContainerUUID is the storage container of the disks; "": the
	// cluster's default, chosen by the server.
	ContainerUUID string
	DiskSizes     []int64 // one blank disk per size, in index (LUN) order
}

// StorageContainer is a storage container of a Prism Element cluster.
type StorageContainer struct {
	UUID        string
	Name        string
	ClusterUUID string
}

// Unknown is a Capacity figure the API did not give.
const Unknown = -1

// Capacity is the room a Prism Element cluster has for more VMs, as its
// API reports it at the time of the call.
type Capacity struct {
	ClusterUUID string
	// MemoryBytes is the physical memory of the cluster's hosts, summed;
	// Unknown when they do not say.
	MemoryBytes int64
	// MemoryUsedBytes is what the hypervisors use of it (the running VMs
	// and the controller VMs; all of a host that reports no use); Unknown
	// when the API does not say.
	MemoryUsedBytes int64
	// Containers are the cluster's storage containers and their free
	// space (FreeBytes Unknown when not reported); nil when the API has no
	// container figures at all (see Notes).
	Containers []ContainerSpace
	// Notes say which figures the API could not give, and why.
	Notes []string
}

// ContainerSpace is a storage container and the bytes still free in it
// (after the replication factor: what VMs can still write). Containers
// are thin slices of the cluster's storage pool: without a reservation
// each reports the pool's free space, which they all draw from.
type ContainerSpace struct {
	StorageContainer
	FreeBytes int64
}

// VolumeGroupDisk is one disk (LUN) of a volume group.
type VolumeGroupDisk struct {
	UUID      string
	Index     int
	SizeBytes int64
}

// ISCSITarget is where an attached initiator logs in.
type ISCSITarget struct {
	VolumeGroupUUID string
	TargetIQN       string // use SendTargets discovery when several virtual targets exist
	Portal          string // Data Services IP:3260
	ClientID        string // the iSCSI client's id on the cluster, when the API has one
}

// ImageType is DISK_IMAGE or ISO_IMAGE.
type ImageType string

const (
	DiskImage ImageType = "DISK_IMAGE"
	ISOImage  ImageType = "ISO_IMAGE"
)

// ImageSpec describes an image to create. With SourceURL the cluster
// fetches it; without, upload the bytes with UploadImage.
type ImageSpec struct {
	Name        string
	Description string
	Type        ImageType // default DISK_IMAGE
	SourceURL   string
	ClusterUUID string // initial placement, optional
}

// Image is an image in the image service.
type Image struct {
	UUID      string
	Name      string
	Type      ImageType
	SizeBytes int64
	State     string
}

// VMSpec describes a VM to create (restore).
type VMSpec struct {
	Name           string
	Description    string
	ClusterUUID    string
	NumSockets     int // default 1
	CoresPerSocket int // default 1
	MemoryBytes    int64
	BootType       BootType // default LEGACY
	MachineType    string   // default PC
	Disks          []DiskSpec
	NICs           []NICSpec
}

// DiskSpec is one disk of a VMSpec: blank (SizeBytes + ContainerUUID),
// cloned from an image (ImageUUID), cloned from a volume group disk
// (VolumeDiskUUID), or a CD-ROM. At most one source is set.
type DiskSpec struct {
	Bus       string // default SCSI
	Index     int
	SizeBytes int64 // with a source: at least the source's size (0: the source's)
	IsCDROM   bool
	ImageUUID string
	// VolumeDiskUUID clones a volume group disk into the new VM disk
	// (VolumeGroupDisk.UUID: v4 volume disk extId, v2 vmdisk_uuid). The
	// volume group stays and can be deleted once the VM exists.
	VolumeDiskUUID string
	// External backs the disk with a file on an external repository
	// (v4.2 instant recovery; SizeBytes 0 takes the file's size).
	External      *ExternalDisk
	ContainerUUID string
}

// NICSpec is one NIC of a VMSpec.
type NICSpec struct {
	SubnetUUID string
	MAC        string // empty: assigned by the cluster
	Model      string // default VIRTIO
}

// TaskStatus of a Prism task (v2, v3 and v4 values normalised to upper case).
type TaskStatus string

const (
	TaskQueued    TaskStatus = "QUEUED"
	TaskRunning   TaskStatus = "RUNNING"
	TaskSucceeded TaskStatus = "SUCCEEDED"
	TaskFailed    TaskStatus = "FAILED"
	TaskAborted   TaskStatus = "ABORTED"
	TaskCanceled  TaskStatus = "CANCELED"
	TaskCanceling TaskStatus = "CANCELING"
	TaskSuspended TaskStatus = "SUSPENDED"
)

// Terminal reports whether the task will not change any more.
func (s TaskStatus) Terminal() bool {
	switch s {
	case TaskSucceeded, TaskFailed, TaskAborted, TaskCanceled:
		return true
	}
	return false
}

// Task is a Prism task, normalised.
type Task struct {
	ID       string
	Status   TaskStatus
	Progress int
	// Entities are the uuids/extIds the task created or touched.
	Entities []TaskEntity
	// Details are v4 completionDetails (e.g. recoveryPointExtId).
	Details map[string]string
	Error   string
}

// TaskEntity is an entity referenced by a task.
type TaskEntity struct {
	Kind string // v3 kind / v2 entity_type / v4 rel, lower-cased
	UUID string
	Name string
}
