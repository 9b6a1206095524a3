package nutanix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
)

// v3Base is the root of the intentful v3 API.
const v3Base = "/api/nutanix/v3"

// v3PageSize is the length of one v3 list page (PGC uses 100).
var v3PageSize = 100

// ---- wire types (only what ahvfs reads or writes; omit, never send null) ----

type v3Ref struct {
	Kind string `json:"kind,omitempty"`
	UUID string `json:"uuid,omitempty"`
	Name string `json:"name,omitempty"`
}

type v3Metadata struct {
	Kind        string `json:"kind"`
	UUID        string `json:"uuid,omitempty"`
	SpecVersion *int64 `json:"spec_version,omitempty"`
	Name        string `json:"name,omitempty"`
}

// v3ExecutionContext.TaskUUID is a string on create/update and a list in
// list responses (recorded pc.2024.3).
type v3ExecutionContext struct {
	TaskUUID stringOrList `json:"task_uuid"`
}

type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		if one != "" {
			*s = []string{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return nil // unknown shape: ignore rather than fail the whole entity
	}
	*s = many
	return nil
}

func (s stringOrList) first() string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

type v3Status struct {
	State            string              `json:"state"`
	ExecutionContext *v3ExecutionContext `json:"execution_context"`
	MessageList      []v3Message         `json:"message_list"`
}

// v3Accepted is the 202 answer of a create/update/delete.
type v3Accepted struct {
	Metadata v3Metadata `json:"metadata"`
	Status   v3Status   `json:"status"`
	TaskUUID string     `json:"task_uuid"` // some actions answer {"task_uuid": …}
}

func (a v3Accepted) task() string {
	if a.Status.ExecutionContext != nil {
		if t := a.Status.ExecutionContext.TaskUUID.first(); t != "" {
			return t
		}
	}
	return a.TaskUUID
}

type v3ListRequest struct {
	Kind   string `json:"kind"`
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	Filter string `json:"filter,omitempty"`
}

type v3ListResponse struct {
	Metadata struct {
		TotalMatches int `json:"total_matches"`
		Offset       int `json:"offset"`
		Length       int `json:"length"`
	} `json:"metadata"`
	Entities []json.RawMessage `json:"entities"`
}

type v3VM struct {
	Metadata v3Metadata `json:"metadata"`
	Spec     struct {
		Name             string        `json:"name"`
		Description      string        `json:"description"`
		ClusterReference *v3Ref        `json:"cluster_reference"`
		Resources        v3VMResources `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name             string        `json:"name"`
		Description      string        `json:"description"`
		State            string        `json:"state"`
		ClusterReference *v3Ref        `json:"cluster_reference"`
		Resources        v3VMResources `json:"resources"`
	} `json:"status"`
}

type v3VMResources struct {
	NumSockets        int           `json:"num_sockets,omitempty"`
	NumVcpusPerSocket int           `json:"num_vcpus_per_socket,omitempty"`
	NumThreadsPerCore int           `json:"num_threads_per_core,omitempty"`
	MemorySizeMib     int64         `json:"memory_size_mib,omitempty"`
	PowerState        string        `json:"power_state,omitempty"`
	MachineType       string        `json:"machine_type,omitempty"`
	BootConfig        *v3BootConfig `json:"boot_config,omitempty"`
	DiskList          []v3Disk      `json:"disk_list,omitempty"`
	NicList           []v3NIC       `json:"nic_list,omitempty"`
	GuestTools        *v3GuestTools `json:"guest_tools,omitempty"`
}

type v3BootConfig struct {
	BootType string `json:"boot_type,omitempty"`
}

type v3Disk struct {
	UUID                 string         `json:"uuid,omitempty"`
	DiskSizeBytes        int64          `json:"disk_size_bytes,omitempty"`
	DiskSizeMib          int64          `json:"disk_size_mib,omitempty"`
	DeviceProperties     *v3DeviceProps `json:"device_properties,omitempty"`
	DataSourceReference  *v3Ref         `json:"data_source_reference,omitempty"`
	VolumeGroupReference *v3Ref         `json:"volume_group_reference,omitempty"`
	StorageConfig        *v3DiskStorage `json:"storage_config,omitempty"`
}

type v3DeviceProps struct {
	DeviceType  string         `json:"device_type,omitempty"`
	DiskAddress *v3DiskAddress `json:"disk_address,omitempty"`
}

type v3DiskAddress struct {
	AdapterType string `json:"adapter_type"`
	DeviceIndex int    `json:"device_index"`
}

type v3DiskStorage struct {
	StorageContainerReference *v3Ref `json:"storage_container_reference,omitempty"`
}

type v3NIC struct {
	UUID            string `json:"uuid,omitempty"`
	MacAddress      string `json:"mac_address,omitempty"`
	SubnetReference *v3Ref `json:"subnet_reference,omitempty"`
	NicType         string `json:"nic_type,omitempty"`
	Model           string `json:"model,omitempty"`
	IsConnected     *bool  `json:"is_connected,omitempty"`
}

type v3GuestTools struct {
	NutanixGuestTools *struct {
		NgtState              string   `json:"ngt_state"`
		State                 string   `json:"state"`
		Version               string   `json:"version"`
		EnabledCapabilityList []string `json:"enabled_capability_list"`
		VssSnapshotCapable    *bool    `json:"vss_snapshot_capable"`
		IsReachable           *bool    `json:"is_reachable"`
	} `json:"nutanix_guest_tools"`
}

func (v v3VM) neutral() VM {
	r := v.Status.Resources
	if r.NumSockets == 0 && len(r.DiskList) == 0 { // no status yet (just created)
		r = v.Spec.Resources
	}
	out := VM{
		UUID:           v.Metadata.UUID,
		Name:           firstNonEmpty(v.Status.Name, v.Spec.Name),
		Description:    firstNonEmpty(v.Status.Description, v.Spec.Description),
		NumSockets:     r.NumSockets,
		CoresPerSocket: max(r.NumVcpusPerSocket, 1),
		ThreadsPerCore: r.NumThreadsPerCore,
		MemoryBytes:    r.MemorySizeMib << 20,
		MachineType:    r.MachineType,
		PowerState:     PowerState(strings.ToUpper(r.PowerState)),
		BootType:       BootLegacy,
	}
	out.VCPUs = out.NumSockets * out.CoresPerSocket
	if cr := firstRef(v.Status.ClusterReference, v.Spec.ClusterReference); cr != nil {
		out.ClusterUUID, out.ClusterName = cr.UUID, cr.Name
	}
	if r.BootConfig != nil && r.BootConfig.BootType != "" {
		out.BootType = BootType(strings.ToUpper(r.BootConfig.BootType))
	}
	for _, d := range r.DiskList {
		nd := Disk{UUID: d.UUID, SizeBytes: d.DiskSizeBytes}
		if nd.SizeBytes == 0 {
			nd.SizeBytes = d.DiskSizeMib << 20
		}
		if p := d.DeviceProperties; p != nil {
			nd.IsCDROM = strings.EqualFold(p.DeviceType, "CDROM")
			if p.DiskAddress != nil {
				nd.Bus, nd.Index = strings.ToUpper(p.DiskAddress.AdapterType), p.DiskAddress.DeviceIndex
			}
		}
		if d.VolumeGroupReference != nil {
			nd.VolumeGroupUUID = d.VolumeGroupReference.UUID
		}
		if d.StorageConfig != nil && d.StorageConfig.StorageContainerReference != nil {
			nd.ContainerUUID = d.StorageConfig.StorageContainerReference.UUID
		}
		if d.DataSourceReference != nil && d.DataSourceReference.Kind == "image" {
			nd.ImageUUID = d.DataSourceReference.UUID
		}
		out.Disks = append(out.Disks, nd)
	}
	sortDisks(out.Disks)
	for _, n := range r.NicList {
		nn := NIC{UUID: n.UUID, MAC: n.MacAddress, Model: strings.ToUpper(n.Model), IsConnected: n.IsConnected == nil || *n.IsConnected}
		if nn.Model == "" {
			nn.Model = "VIRTIO"
		}
		if n.SubnetReference != nil {
			nn.SubnetUUID, nn.SubnetName = n.SubnetReference.UUID, n.SubnetReference.Name
		}
		out.NICs = append(out.NICs, nn)
	}
	if g := r.GuestTools; g != nil && g.NutanixGuestTools != nil {
		n := g.NutanixGuestTools
		out.NGT.Installed = strings.EqualFold(n.NgtState, "INSTALLED")
		out.NGT.Enabled = strings.EqualFold(n.State, "ENABLED")
		out.NGT.Version = n.Version
		out.NGT.Reachable = n.IsReachable != nil && *n.IsReachable
		out.NGT.VSSCapable = n.VssSnapshotCapable != nil && *n.VssSnapshotCapable
		if n.VssSnapshotCapable == nil {
			for _, c := range n.EnabledCapabilityList {
				if c == "VSS_SNAPSHOT" {
					out.NGT.VSSCapable = true
				}
			}
		}
	}
	return out
}

type v3Cluster struct {
	Metadata v3Metadata `json:"metadata"`
	Status   struct {
		Name      string `json:"name"`
		Resources struct {
			Config struct {
				ServiceList []string `json:"service_list"`
				Build       struct {
					Version string `json:"version"`
				} `json:"build"`
			} `json:"config"`
			Network struct {
				ExternalIP             string `json:"external_ip"`
				ExternalDataServicesIP string `json:"external_data_services_ip"`
			} `json:"network"`
		} `json:"resources"`
	} `json:"status"`
}

func (c v3Cluster) isPrismCentral() bool {
	for _, s := range c.Status.Resources.Config.ServiceList {
		if strings.EqualFold(s, "PRISM_CENTRAL") {
			return true
		}
	}
	return false
}

type v3Subnet struct {
	Metadata v3Metadata `json:"metadata"`
	Spec     struct {
		Name             string `json:"name"`
		ClusterReference *v3Ref `json:"cluster_reference"`
		Resources        struct {
			SubnetType string `json:"subnet_type"`
			VlanID     int    `json:"vlan_id"`
		} `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name             string `json:"name"`
		ClusterReference *v3Ref `json:"cluster_reference"`
		Resources        struct {
			SubnetType string `json:"subnet_type"`
			VlanID     int    `json:"vlan_id"`
		} `json:"resources"`
	} `json:"status"`
}

func (s v3Subnet) neutral() Subnet {
	out := Subnet{UUID: s.Metadata.UUID, Name: firstNonEmpty(s.Status.Name, s.Spec.Name),
		Type: firstNonEmpty(s.Status.Resources.SubnetType, s.Spec.Resources.SubnetType), VLANID: s.Status.Resources.VlanID}
	if out.VLANID == 0 {
		out.VLANID = s.Spec.Resources.VlanID
	}
	if cr := firstRef(s.Status.ClusterReference, s.Spec.ClusterReference); cr != nil {
		out.ClusterUUID = cr.UUID
	}
	return out
}

type v3VMSnapshot struct {
	Metadata v3Metadata `json:"metadata"`
	Spec     struct {
		Name                string `json:"name"`
		SnapshotType        string `json:"snapshot_type"`
		ExpirationTimeMsecs int64  `json:"expiration_time_msecs"`
		Resources           struct {
			EntityUUID string `json:"entity_uuid"`
		} `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name                 string `json:"name"`
		State                string `json:"state"`
		SnapshotType         string `json:"snapshot_type"`
		ConsistencyGroupUUID string `json:"consistency_group_uuid"`
		ExpirationTimeMsecs  int64  `json:"expiration_time_msecs"`
		CreationTimeUsecs    int64  `json:"creation_time_usecs"`
		Resources            struct {
			EntityUUID string `json:"entity_uuid"`
		} `json:"resources"`
		SnapshotFileList []v3SnapshotFile    `json:"snapshot_file_list"`
		MessageList      []v3Message         `json:"message_list"`
		ExecutionContext *v3ExecutionContext `json:"execution_context"`
	} `json:"status"`
}

type v3SnapshotFile struct {
	FilePath         string `json:"file_path"`
	SnapshotFilePath string `json:"snapshot_file_path"`
}

type v3Image struct {
	Metadata v3Metadata `json:"metadata"`
	Spec     struct {
		Name      string `json:"name"`
		Resources struct {
			ImageType string `json:"image_type"`
		} `json:"resources"`
	} `json:"spec"`
	Status struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		Resources struct {
			ImageType string `json:"image_type"`
			SizeBytes int64  `json:"size_bytes"`
		} `json:"resources"`
	} `json:"status"`
}

type v3ChangedRegionsQuery struct {
	SnapshotFilePath          string `json:"snapshot_file_path"`
	ReferenceSnapshotFilePath string `json:"reference_snapshot_file_path,omitempty"`
	StartOffset               int64  `json:"start_offset"`
	EndOffset                 int64  `json:"end_offset,omitempty"`
}

// V3ChangedRegions is the v3 data/changed_regions response.
type V3ChangedRegions struct {
	RegionList []struct {
		Offset int64  `json:"offset"`
		Length int64  `json:"length"`
		Type   string `json:"type"`
	} `json:"region_list"`
	NextOffset *int64 `json:"next_offset"`
	FileSize   int64  `json:"file_size"`
}

// ---- backend ----------------------------------------------------------------

// v3Backend implements Cluster with v3 (+ v2.0 for volume groups, cluster
// and, when vm_snapshots is missing, snapshots).
type v3Backend struct {
	r      *rest
	o      Options
	v2base string // "" when v2 is not served
	cbt    bool   // vm_snapshots + data/changed_regions served
}

var _ Cluster = (*v3Backend)(nil)

func (b *v3Backend) API() APIVersion { return APIV3 }

func (b *v3Backend) listAll(ctx context.Context, kind string, each func(json.RawMessage) error) error {
	offset := 0
	for {
		var page v3ListResponse
		_, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/" + kind + "s/list",
			in: v3ListRequest{Kind: kind, Offset: offset, Length: v3PageSize}, out: &page, retryable: true})
		if err != nil {
			return err
		}
		for _, e := range page.Entities {
			if err := each(e); err != nil {
				return err
			}
		}
		offset += len(page.Entities)
		if len(page.Entities) == 0 || offset >= page.Metadata.TotalMatches {
			return nil
		}
	}
}

func (b *v3Backend) ListVMs(ctx context.Context) ([]VM, error) {
	var out []VM
	err := b.listAll(ctx, "vm", func(raw json.RawMessage) error {
		var v v3VM
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode vm: %w", err)
		}
		out = append(out, v.neutral())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	return out, nil
}

func (b *v3Backend) GetVM(ctx context.Context, uuid string) (VM, error) {
	var v v3VM
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/vms/" + url.PathEscape(uuid), out: &v}); err != nil {
		return VM{}, fmt.Errorf("get VM %s: %w", uuid, err)
	}
	return v.neutral(), nil
}

func (b *v3Backend) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	var out []ClusterInfo
	err := b.listAll(ctx, "cluster", func(raw json.RawMessage) error {
		var c v3Cluster
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("decode cluster: %w", err)
		}
		if c.isPrismCentral() {
			return nil
		}
		out = append(out, ClusterInfo{UUID: c.Metadata.UUID, Name: c.Status.Name,
			ExternalIP: c.Status.Resources.Network.ExternalIP, DataServicesIP: c.Status.Resources.Network.ExternalDataServicesIP,
			ISCSIPort: 3260, Version: c.Status.Resources.Config.Build.Version})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	// Fill a missing Data Services IP from v2 (PE-direct).
	for i := range out {
		if out[i].DataServicesIP == "" && b.v2base != "" {
			if c2, err := b.v2Cluster(ctx); err == nil && (c2.UUID == out[i].UUID || len(out) == 1) {
				out[i].DataServicesIP = c2.DataServicesIP
			}
		}
	}
	return out, nil
}

func (b *v3Backend) ListSubnets(ctx context.Context) ([]Subnet, error) {
	var out []Subnet
	err := b.listAll(ctx, "subnet", func(raw json.RawMessage) error {
		var s v3Subnet
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("decode subnet: %w", err)
		}
		out = append(out, s.neutral())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list subnets: %w", err)
	}
	return out, nil
}

// ---- snapshots ----

func (b *v3Backend) CreateSnapshot(ctx context.Context, vmUUID, name string, appConsistent bool) (Snapshot, error) {
	if !b.cbt {
		return b.v2CreateSnapshot(ctx, vmUUID, name)
	}
	typ := CrashConsistent
	if appConsistent {
		typ = ApplicationConsistent
	}
	body := map[string]any{
		"api_version": "3.0",
		// a client-chosen uuid makes a retried POST create one snapshot
		"metadata": map[string]any{"kind": "vm_snapshot", "uuid": newUUID()},
		"spec": map[string]any{
			"name":          name,
			"snapshot_type": string(typ),
			"resources":     map[string]any{"entity_uuid": vmUUID},
		},
	}
	op := fmt.Sprintf("snapshot VM %s", vmUUID)
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/vm_snapshots", in: body, out: &acc, retryable: true}); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", op, err)
	}
	id := acc.Metadata.UUID
	if tid := acc.task(); tid != "" {
		t, err := b.WaitTask(ctx, tid)
		if err != nil {
			return Snapshot{}, fmt.Errorf("%s: %w", op, err)
		}
		if id == "" {
			id = t.entity("vm_snapshot", "snapshot")
		}
	}
	if id == "" {
		id = body["metadata"].(map[string]any)["uuid"].(string)
	}
	return b.waitV3Snapshot(ctx, id, typ)
}

// waitV3Snapshot polls GET vm_snapshots/{id} until COMPLETE with its file
// list (field-observed: the list can lag the state).
func (b *v3Backend) waitV3Snapshot(ctx context.Context, id string, requested Consistency) (Snapshot, error) {
	var last v3VMSnapshot
	_, err := pollTask(ctx, b.o, "snapshot "+id, id, func(ctx context.Context, id string) (Task, error) {
		var s v3VMSnapshot
		if _, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/vm_snapshots/" + url.PathEscape(id), out: &s}); err != nil {
			if errors.Is(err, ErrNotFound) { // not visible yet
				return Task{ID: id, Status: TaskRunning}, nil
			}
			return Task{}, err
		}
		last = s
		switch st := strings.ToUpper(s.Status.State); {
		case st == "ERROR" || st == "FAILED":
			msg := ""
			if len(s.Status.MessageList) > 0 {
				msg = s.Status.MessageList[0].Message
			}
			return Task{ID: id, Status: TaskFailed, Error: msg}, nil
		case st == "COMPLETE" && len(s.Status.SnapshotFileList) > 0:
			return Task{ID: id, Status: TaskSucceeded}, nil
		}
		return Task{ID: id, Status: TaskRunning}, nil
	})
	if err != nil {
		return Snapshot{}, err
	}
	snap := b.neutralSnapshot(last, requested)
	if err := b.mapSnapshotDisks(ctx, &snap, last.Status.SnapshotFileList); err != nil {
		return snap, err
	}
	return snap, nil
}

func (b *v3Backend) neutralSnapshot(s v3VMSnapshot, requested Consistency) Snapshot {
	out := Snapshot{
		ID:                   firstNonEmpty(s.Metadata.UUID),
		Name:                 firstNonEmpty(s.Status.Name, s.Spec.Name),
		VMUUID:               firstNonEmpty(s.Status.Resources.EntityUUID, s.Spec.Resources.EntityUUID),
		API:                  APIV3,
		State:                s.Status.State,
		ConsistencyGroupUUID: s.Status.ConsistencyGroupUUID,
		Consistency:          Consistency(strings.ToUpper(firstNonEmpty(s.Status.SnapshotType, s.Spec.SnapshotType, string(requested)))),
	}
	if ms := max(s.Status.ExpirationTimeMsecs, s.Spec.ExpirationTimeMsecs); ms > 0 {
		out.ExpiresAt = time.UnixMilli(ms).UTC()
	}
	if s.Status.CreationTimeUsecs > 0 {
		out.CreatedAt = time.UnixMicro(s.Status.CreationTimeUsecs).UTC()
	}
	return out
}

// mapSnapshotDisks correlates snapshot files with the VM's disks: by the
// vDisk UUID at the end of the path, then through v2 virtual_disks
// (vDisk UUID ≠ VM disk UUID on some AOS, §2.4).
func (b *v3Backend) mapSnapshotDisks(ctx context.Context, snap *Snapshot, files []v3SnapshotFile) error {
	var disks []Disk
	if snap.VMUUID != "" {
		vm, err := b.GetVM(ctx, snap.VMUUID)
		if err == nil {
			disks = vm.BackupDisks()
			snap.ClusterUUID = vm.ClusterUUID
		}
	}
	byUUID := map[string]Disk{}
	for _, d := range disks {
		byUUID[d.UUID] = d
	}
	for _, f := range files {
		sd := SnapshotDisk{FilePath: f.FilePath, SnapshotFilePath: f.SnapshotFilePath}
		vdisk := path.Base(firstNonEmpty(f.FilePath, f.SnapshotFilePath))
		if d, ok := byUUID[vdisk]; ok {
			sd.DiskUUID, sd.SizeBytes, sd.ContainerUUID = d.UUID, d.SizeBytes, d.ContainerUUID
		} else if b.v2base != "" {
			if addr, vmUUID, err := b.v2VirtualDiskAddress(ctx, vdisk); err == nil && vmUUID == snap.VMUUID {
				for _, d := range disks {
					if strings.EqualFold(d.Address(), addr) {
						sd.DiskUUID, sd.SizeBytes, sd.ContainerUUID = d.UUID, d.SizeBytes, d.ContainerUUID
					}
				}
			}
		}
		snap.Disks = append(snap.Disks, sd)
	}
	return nil
}

func (b *v3Backend) GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	if !b.cbt {
		return b.v2GetSnapshot(ctx, id)
	}
	var s v3VMSnapshot
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/vm_snapshots/" + url.PathEscape(id), out: &s}); err != nil {
		return Snapshot{}, fmt.Errorf("get snapshot %s: %w", id, err)
	}
	snap := b.neutralSnapshot(s, "")
	if err := b.mapSnapshotDisks(ctx, &snap, s.Status.SnapshotFileList); err != nil {
		return snap, err
	}
	return snap, nil
}

func (b *v3Backend) ListSnapshots(ctx context.Context, vmUUID string) ([]Snapshot, error) {
	if !b.cbt {
		return b.v2ListSnapshots(ctx, vmUUID)
	}
	var out []Snapshot
	err := b.listAll(ctx, "vm_snapshot", func(raw json.RawMessage) error {
		var s v3VMSnapshot
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("decode vm_snapshot: %w", err)
		}
		snap := b.neutralSnapshot(s, "")
		if vmUUID != "" && snap.VMUUID != vmUUID {
			return nil
		}
		for _, f := range s.Status.SnapshotFileList {
			snap.Disks = append(snap.Disks, SnapshotDisk{FilePath: f.FilePath, SnapshotFilePath: f.SnapshotFilePath})
		}
		out = append(out, snap)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

func (b *v3Backend) DeleteSnapshot(ctx context.Context, id string) error {
	if !b.cbt {
		return b.v2DeleteSnapshot(ctx, id)
	}
	return b.deleteEntity(ctx, "vm_snapshots", id, "delete snapshot "+id)
}

// deleteEntity deletes a v3 entity and waits for its task; 404 is success.
func (b *v3Backend) deleteEntity(ctx context.Context, kindPath, id, op string) error {
	var acc v3Accepted
	_, err := b.r.do(ctx, request{method: http.MethodDelete, path: v3Base + "/" + kindPath + "/" + url.PathEscape(id), out: &acc})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if tid := acc.task(); tid != "" {
		if _, err := b.WaitTask(ctx, tid); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// ChangedRegions walks data/changed_regions (v3, PE only).
func (b *v3Backend) ChangedRegions(ctx context.Context, q RegionQuery, fn func(Region) error) error {
	if !b.cbt || q.Snapshot.API != APIV3 {
		return fmt.Errorf("changed regions of %s snapshot %s: %w", q.Snapshot.API, q.Snapshot.ID, ErrUnsupported)
	}
	sd, ok := q.Snapshot.Disk(q.DiskUUID)
	if !ok || sd.SnapshotFilePath == "" {
		return fmt.Errorf("changed regions: disk %s is not in snapshot %s: %w", q.DiskUUID, q.Snapshot.ID, ErrNotFound)
	}
	query := v3ChangedRegionsQuery{SnapshotFilePath: sd.SnapshotFilePath, StartOffset: q.Offset}
	if q.Reference != nil {
		rd, ok := q.Reference.Disk(q.DiskUUID)
		if !ok || rd.SnapshotFilePath == "" {
			return fmt.Errorf("changed regions: disk %s is not in reference snapshot %s: %w", q.DiskUUID, q.Reference.ID, ErrNotFound)
		}
		query.ReferenceSnapshotFilePath = rd.SnapshotFilePath
	}
	end := int64(0)
	if q.Length > 0 {
		end = q.Offset + q.Length
		query.EndOffset = end
	}
	w := regionWalker{start: q.Offset, end: end, fn: fn}
	for {
		var raw json.RawMessage
		_, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/data/changed_regions", in: query, out: &raw, retryable: true})
		if err != nil {
			return fmt.Errorf("changed regions of disk %s at %d: %w", q.DiskUUID, query.StartOffset, err)
		}
		page, err := DecodeV3ChangedRegions(raw)
		if err != nil {
			return err
		}
		done, err := w.take(page)
		if err != nil || done {
			return err
		}
		query.StartOffset = page.NextOffset
	}
}

// ---- VMs (restore) ----

func (b *v3Backend) CreateVM(ctx context.Context, spec VMSpec) (string, error) {
	res := map[string]any{
		"num_sockets":          max(spec.NumSockets, 1),
		"num_vcpus_per_socket": max(spec.CoresPerSocket, 1),
		"memory_size_mib":      (spec.MemoryBytes + 1<<20 - 1) >> 20,
		"power_state":          "OFF",
		"machine_type":         firstNonEmpty(spec.MachineType, "PC"),
		"boot_config":          map[string]any{"boot_type": string(firstNonEmpty(string(spec.BootType), string(BootLegacy)))},
	}
	var disks []map[string]any
	for _, d := range spec.Disks {
		dev := "DISK"
		if d.IsCDROM {
			dev = "CDROM"
		}
		m := map[string]any{"device_properties": map[string]any{"device_type": dev,
			"disk_address": map[string]any{"adapter_type": firstNonEmpty(strings.ToUpper(d.Bus), "SCSI"), "device_index": d.Index}}}
		if d.SizeBytes > 0 {
			m["disk_size_bytes"] = d.SizeBytes
			m["disk_size_mib"] = (d.SizeBytes + 1<<20 - 1) >> 20
		}
		switch {
		case d.ImageUUID != "" && d.VolumeDiskUUID != "":
			return "", fmt.Errorf("create VM %s: disk %s.%d: both an image and a volume disk source", spec.Name, d.Bus, d.Index)
		case d.ImageUUID != "":
			m["data_source_reference"] = map[string]any{"kind": "image", "uuid": d.ImageUUID}
		case d.VolumeDiskUUID != "":
			// A VG disk is an acropolis vmdisk: clone it by its vmdisk_uuid
			// (v2 vm_disk_clone.disk_address.vmdisk_uuid, §3.8).
			m["data_source_reference"] = map[string]any{"kind": "vm_disk", "uuid": d.VolumeDiskUUID}
		}
		if d.ContainerUUID != "" {
			m["storage_config"] = map[string]any{"storage_container_reference": map[string]any{"kind": "storage_container", "uuid": d.ContainerUUID}}
		}
		disks = append(disks, m)
	}
	if len(disks) > 0 {
		res["disk_list"] = disks
	}
	var nics []map[string]any
	for _, n := range spec.NICs {
		m := map[string]any{"subnet_reference": map[string]any{"kind": "subnet", "uuid": n.SubnetUUID}, "model": firstNonEmpty(strings.ToUpper(n.Model), "VIRTIO")}
		if n.MAC != "" {
			m["mac_address"] = n.MAC
		}
		nics = append(nics, m)
	}
	if len(nics) > 0 {
		res["nic_list"] = nics
	}
	s := map[string]any{"name": spec.Name, "resources": res}
	if spec.Description != "" {
		s["description"] = spec.Description
	}
	if spec.ClusterUUID != "" {
		s["cluster_reference"] = map[string]any{"kind": "cluster", "uuid": spec.ClusterUUID}
	}
	id := newUUID()
	body := map[string]any{"api_version": "3.1", "metadata": map[string]any{"kind": "vm", "uuid": id}, "spec": s}
	op := "create VM " + spec.Name
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/vms", in: body, out: &acc, retryable: true}); err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if acc.Metadata.UUID != "" {
		id = acc.Metadata.UUID
	}
	if t, err := b.WaitTask(ctx, acc.task()); err != nil {
		return id, fmt.Errorf("%s: %w", op, err)
	} else if acc.Metadata.UUID == "" {
		if e := t.entity("vm"); e != "" {
			id = e
		}
	}
	return id, nil
}

func (b *v3Backend) SetPowerState(ctx context.Context, vmUUID string, state PowerState) error {
	op := fmt.Sprintf("power %s VM %s", state, vmUUID)
	p := v3Base + "/vms/" + url.PathEscape(vmUUID)
	var raw map[string]any
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: p, out: &raw}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if cur := dig(raw, "status", "resources", "power_state"); strings.EqualFold(fmt.Sprint(cur), string(state)) {
		return nil
	}
	spec, _ := raw["spec"].(map[string]any)
	res, _ := spec["resources"].(map[string]any)
	if res == nil {
		return fmt.Errorf("%s: VM has no spec.resources", op)
	}
	res["power_state"] = string(state)
	delete(raw, "status")
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPut, path: p, in: raw, out: &acc}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := b.WaitTask(ctx, acc.task()); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (b *v3Backend) DeleteVM(ctx context.Context, uuid string) error {
	return b.deleteEntity(ctx, "vms", uuid, "delete VM "+uuid)
}

// ---- images ----

func (b *v3Backend) CreateImage(ctx context.Context, spec ImageSpec) (Image, error) {
	res := map[string]any{"image_type": string(firstNonEmpty(string(spec.Type), string(DiskImage)))}
	if spec.SourceURL != "" {
		res["source_uri"] = spec.SourceURL
	}
	if spec.ClusterUUID != "" {
		res["initial_placement_ref_list"] = []map[string]any{{"kind": "cluster", "uuid": spec.ClusterUUID}}
	}
	s := map[string]any{"name": spec.Name, "resources": res}
	if spec.Description != "" {
		s["description"] = spec.Description
	}
	id := newUUID()
	body := map[string]any{"api_version": "3.1", "metadata": map[string]any{"kind": "image", "uuid": id}, "spec": s}
	op := "create image " + spec.Name
	var acc v3Accepted
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/images", in: body, out: &acc, retryable: true}); err != nil {
		return Image{}, fmt.Errorf("%s: %w", op, err)
	}
	if acc.Metadata.UUID != "" {
		id = acc.Metadata.UUID
	}
	if tid := acc.task(); tid != "" {
		t, err := b.WaitTask(ctx, tid)
		if err != nil {
			return Image{}, fmt.Errorf("%s: %w", op, err)
		}
		if acc.Metadata.UUID == "" {
			id = firstNonEmpty(t.entity("image"), id)
		}
	}
	return b.GetImage(ctx, id)
}

func (b *v3Backend) GetImage(ctx context.Context, uuid string) (Image, error) {
	var im v3Image
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/images/" + url.PathEscape(uuid), out: &im}); err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", uuid, err)
	}
	return Image{UUID: firstNonEmpty(im.Metadata.UUID, uuid), Name: firstNonEmpty(im.Status.Name, im.Spec.Name),
		Type:      ImageType(firstNonEmpty(im.Status.Resources.ImageType, im.Spec.Resources.ImageType)),
		SizeBytes: im.Status.Resources.SizeBytes, State: im.Status.State}, nil
}

// ListImages pages through images/list and keeps those named name (the
// filter is applied here: FIQL cannot quote every name).
func (b *v3Backend) ListImages(ctx context.Context, name string) ([]Image, error) {
	var out []Image
	err := b.listAll(ctx, "image", func(raw json.RawMessage) error {
		var im v3Image
		if err := json.Unmarshal(raw, &im); err != nil {
			return fmt.Errorf("decode image: %w", err)
		}
		n := firstNonEmpty(im.Status.Name, im.Spec.Name)
		if name == "" || n == name {
			out = append(out, Image{UUID: im.Metadata.UUID, Name: n,
				Type:      ImageType(firstNonEmpty(im.Status.Resources.ImageType, im.Spec.Resources.ImageType)),
				SizeBytes: im.Status.Resources.SizeBytes, State: im.Status.State})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}

func (b *v3Backend) UploadImage(ctx context.Context, uuid string, r io.Reader, size int64) error {
	return v3UploadImage(ctx, b.r, b.WaitTask, uuid, r, size)
}

func (b *v3Backend) DownloadImage(ctx context.Context, uuid string, offset, length int64) (io.ReadCloser, error) {
	return downloadRange(ctx, b.r, v3Base+"/images/"+url.PathEscape(uuid)+"/file", offset, length)
}

func (b *v3Backend) DeleteImage(ctx context.Context, uuid string) error {
	return b.deleteEntity(ctx, "images", uuid, "delete image "+uuid)
}

// ---- tasks ----

func (b *v3Backend) WaitTask(ctx context.Context, taskID string) (Task, error) {
	return pollTask(ctx, b.o, "task", taskID, b.getTask)
}

// getTask reads a task from v3, falling back to v2 (tasks of v2 calls).
func (b *v3Backend) getTask(ctx context.Context, id string) (Task, error) {
	var t v3Task
	_, err := b.r.do(ctx, request{method: http.MethodGet, path: v3Base + "/tasks/" + url.PathEscape(id), out: &t})
	if err == nil {
		if t.UUID == "" {
			t.UUID = id
		}
		return t.neutral(), nil
	}
	if errors.Is(err, ErrNotFound) && b.v2base != "" {
		return b.v2GetTask(ctx, id)
	}
	return Task{}, err
}

// ---- helpers ----

func firstNonEmpty[S ~string](ss ...S) S {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstRef(rs ...*v3Ref) *v3Ref {
	for _, r := range rs {
		if r != nil && r.UUID != "" {
			return r
		}
	}
	return nil
}

func dig(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func lower(s string) string { return strings.ToLower(s) }

var busOrder = map[string]int{"SCSI": 0, "SATA": 1, "IDE": 2, "PCI": 3, "SPAPR": 4}

// sortDisks orders disks by bus, then index (the "disk-N" order of cli.md).
func sortDisks(ds []Disk) {
	sort.SliceStable(ds, func(i, j int) bool {
		bi, bj := busOrder[ds[i].Bus], busOrder[ds[j].Bus]
		if bi != bj {
			return bi < bj
		}
		return ds[i].Index < ds[j].Index
	})
}

func joinHostPort(host string, port int) string {
	if port == 0 {
		port = 3260
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}
