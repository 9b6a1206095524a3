package nutanix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// v2 base paths: the /api/nutanix alias first, then the PrismGateway one.
var v2Bases = []string{"/api/nutanix/v2.0", "/PrismGateway/services/rest/v2.0"}

type v2ClusterDTO struct {
	UUID                                 string `json:"uuid"`
	ClusterUUID                          string `json:"cluster_uuid"`
	Name                                 string `json:"name"`
	Version                              string `json:"version"`
	ClusterExternalIPAddress             string `json:"cluster_external_ipaddress"`
	ClusterExternalDataServicesIPAddress string `json:"cluster_external_data_services_ipaddress"`
	ClusterExternalDataServicesAddress   *struct {
		IPv4 string `json:"ipv4"`
	} `json:"cluster_external_data_services_address"`
}

type v2TaskRef struct {
	TaskUUID string `json:"task_uuid"`
}

type v2Snapshot struct {
	UUID         string `json:"uuid"`
	SnapshotName string `json:"snapshot_name"`
	VMUUID       string `json:"vm_uuid"`
	GroupUUID    string `json:"group_uuid"`
	CreatedTime  int64  `json:"created_time"`
	Deleted      bool   `json:"deleted"`
	VMCreateSpec *struct {
		VMDisks []struct {
			IsCDROM     bool `json:"is_cdrom"`
			DiskAddress *struct {
				DeviceBus   string `json:"device_bus"`
				DeviceIndex int    `json:"device_index"`
				VMDiskUUID  string `json:"vmdisk_uuid"`
			} `json:"disk_address"`
			VMDiskClone *struct {
				DiskAddress struct {
					VMDiskUUID   string `json:"vmdisk_uuid"`
					NDFSFilePath string `json:"ndfs_filepath"`
					DeviceBus    string `json:"device_bus"`
					DeviceIndex  int    `json:"device_index"`
				} `json:"disk_address"`
				SnapshotGroupUUID    string `json:"snapshot_group_uuid"`
				StorageContainerUUID string `json:"storage_container_uuid"`
				MinimumSize          int64  `json:"minimum_size"`
			} `json:"vm_disk_clone"`
		} `json:"vm_disks"`
	} `json:"vm_create_spec"`
}

type v2List[T any] struct {
	Metadata struct {
		GrandTotalEntities int `json:"grand_total_entities"`
		TotalEntities      int `json:"total_entities"`
	} `json:"metadata"`
	Entities []T `json:"entities"`
}

type v2VolumeGroup struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	ISCSITarget string `json:"iscsi_target"`
	LogicalTS   int64  `json:"logical_timestamp"`
	DiskList    []struct {
		Index                int    `json:"index"`
		VMDiskUUID           string `json:"vmdisk_uuid"`
		VMDiskSizeBytes      int64  `json:"vmdisk_size_bytes"`
		StorageContainerUUID string `json:"storage_container_uuid"`
	} `json:"disk_list"`
	AttachmentList []struct {
		ISCSIInitiatorName string `json:"iscsi_initiator_name"`
		ClientUUID         string `json:"client_uuid"`
		VMUUID             string `json:"vm_uuid"`
	} `json:"attachment_list"`
}

func (v v2VolumeGroup) neutral() VolumeGroup {
	out := VolumeGroup{UUID: v.UUID, Name: v.Name, TargetIQN: v.ISCSITarget}
	for _, d := range v.DiskList {
		out.Disks = append(out.Disks, VolumeGroupDisk{UUID: d.VMDiskUUID, Index: d.Index, SizeBytes: d.VMDiskSizeBytes})
	}
	sort.SliceStable(out.Disks, func(i, j int) bool { return out.Disks[i].Index < out.Disks[j].Index })
	return out
}

func (b *v3Backend) v2(p string) string { return b.v2base + p }

func (b *v3Backend) needV2(op string) error {
	if b.v2base == "" {
		return fmt.Errorf("%s needs the v2.0 API, which this endpoint does not serve: %w", op, ErrUnsupported)
	}
	return nil
}

func (b *v3Backend) v2Cluster(ctx context.Context) (ClusterInfo, error) {
	if err := b.needV2("cluster info"); err != nil {
		return ClusterInfo{}, err
	}
	var c v2ClusterDTO
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/cluster/"), out: &c}); err != nil {
		return ClusterInfo{}, fmt.Errorf("get v2 cluster: %w", err)
	}
	out := ClusterInfo{UUID: firstNonEmpty(c.ClusterUUID, c.UUID), Name: c.Name, Version: c.Version, ExternalIP: c.ClusterExternalIPAddress,
		DataServicesIP: c.ClusterExternalDataServicesIPAddress, ISCSIPort: 3260}
	if out.DataServicesIP == "" && c.ClusterExternalDataServicesAddress != nil {
		out.DataServicesIP = c.ClusterExternalDataServicesAddress.IPv4
	}
	return out, nil
}

func (b *v3Backend) v2GetTask(ctx context.Context, id string) (Task, error) {
	var t v2Task
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/tasks/" + url.PathEscape(id)), out: &t}); err != nil {
		return Task{}, err
	}
	if t.UUID == "" {
		t.UUID = id
	}
	return t.neutral(), nil
}

func (b *v3Backend) v2Wait(ctx context.Context, tid string) (Task, error) {
	if err := observeTask(ctx, tid); err != nil {
		return Task{}, err
	}
	return pollTask(ctx, b.o, "task", tid, b.v2GetTask)
}

// v2VirtualDiskAddress maps a vDisk UUID to ("scsi.0", vm uuid).
func (b *v3Backend) v2VirtualDiskAddress(ctx context.Context, vdisk string) (string, string, error) {
	var vd struct {
		AttachedVMUUID string `json:"attached_vm_uuid"`
		DiskAddress    string `json:"disk_address"`
	}
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/virtual_disks/" + url.PathEscape(vdisk)), out: &vd}); err != nil {
		return "", "", err
	}
	return vd.DiskAddress, vd.AttachedVMUUID, nil
}

// ---- v2 snapshots (used when vm_snapshots is not served: no CBT) ----

func (b *v3Backend) v2CreateSnapshot(ctx context.Context, vmUUID, name string) (Snapshot, error) {
	op := "snapshot VM " + vmUUID + " (v2)"
	if err := b.needV2(op); err != nil {
		return Snapshot{}, err
	}
	id := newUUID() // client uuid: the snapshot is then read back by it [OEB]
	body := map[string]any{"snapshot_specs": []map[string]any{{"vm_uuid": vmUUID, "snapshot_name": name, "uuid": id}}}
	var tr v2TaskRef
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: b.v2("/snapshots/"), in: body, out: &tr, idempotent: true}); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", op, err)
	}
	t, err := b.v2Wait(ctx, tr.TaskUUID)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", op, err)
	}
	s, err := b.v2GetSnapshot(ctx, id)
	if errors.Is(err, ErrNotFound) {
		if e := t.entity("snapshot"); e != "" {
			return b.v2GetSnapshot(ctx, e)
		}
	}
	return s, err
}

func (b *v3Backend) v2GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	if err := b.needV2("get snapshot"); err != nil {
		return Snapshot{}, err
	}
	var s v2Snapshot
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/snapshots/" + url.PathEscape(id)), out: &s}); err != nil {
		return Snapshot{}, fmt.Errorf("get snapshot %s: %w", id, err)
	}
	return b.v2Neutral(ctx, s), nil
}

func (b *v3Backend) v2Neutral(ctx context.Context, s v2Snapshot) Snapshot {
	out := Snapshot{ID: s.UUID, Name: s.SnapshotName, VMUUID: s.VMUUID, API: APIV2, State: "COMPLETE",
		ConsistencyGroupUUID: s.GroupUUID, Consistency: CrashConsistent}
	if s.CreatedTime > 0 {
		out.CreatedAt = time.UnixMicro(s.CreatedTime).UTC()
	}
	var disks []Disk
	if vm, err := b.GetVM(ctx, s.VMUUID); err == nil {
		disks = vm.BackupDisks()
		out.ClusterUUID = vm.ClusterUUID
	}
	if s.VMCreateSpec != nil {
		for _, d := range s.VMCreateSpec.VMDisks {
			if d.IsCDROM || d.VMDiskClone == nil {
				continue
			}
			c := d.VMDiskClone
			sd := SnapshotDisk{NDFSFilePath: c.DiskAddress.NDFSFilePath, ContainerUUID: c.StorageContainerUUID,
				SizeBytes: c.MinimumSize, DiskUUID: c.DiskAddress.VMDiskUUID}
			bus, idx := c.DiskAddress.DeviceBus, c.DiskAddress.DeviceIndex
			if d.DiskAddress != nil {
				bus, idx = d.DiskAddress.DeviceBus, d.DiskAddress.DeviceIndex
			}
			for _, vd := range disks {
				if sd.DiskUUID == vd.UUID || (bus != "" && strings.EqualFold(vd.Bus, bus) && vd.Index == idx) {
					sd.DiskUUID = vd.UUID
					if sd.SizeBytes == 0 {
						sd.SizeBytes = vd.SizeBytes
					}
				}
			}
			if c.SnapshotGroupUUID != "" && out.ConsistencyGroupUUID == "" {
				out.ConsistencyGroupUUID = c.SnapshotGroupUUID
			}
			out.Disks = append(out.Disks, sd)
		}
	}
	return out
}

func (b *v3Backend) v2ListSnapshots(ctx context.Context, vmUUID string) ([]Snapshot, error) {
	if err := b.needV2("list snapshots"); err != nil {
		return nil, err
	}
	q := url.Values{}
	if vmUUID != "" {
		q.Set("vm_uuid", vmUUID)
	}
	var l v2List[v2Snapshot]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/snapshots/"), query: q, out: &l}); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Snapshot
	for _, s := range l.Entities {
		if s.Deleted || (vmUUID != "" && s.VMUUID != vmUUID) {
			continue
		}
		out = append(out, b.v2Neutral(ctx, s))
	}
	return out, nil
}

func (b *v3Backend) v2DeleteSnapshot(ctx context.Context, id string) error {
	op := "delete snapshot " + id
	if err := b.needV2(op); err != nil {
		return err
	}
	return b.v2Delete(ctx, "/snapshots/"+url.PathEscape(id), op)
}

// v2Delete deletes a v2.0 entity and waits for its task. An entity that is
// not there is an *absentError (see deletes.go).
func (b *v3Backend) v2Delete(ctx context.Context, p, op string) error {
	var tr v2TaskRef
	_, err := b.r.do(ctx, request{method: http.MethodDelete, path: b.v2(p), out: &tr})
	return finishDelete(ctx, b.r, b.v2(p), op, err, func() error {
		if tr.TaskUUID != "" {
			_, err := b.v2Wait(ctx, tr.TaskUUID)
			return err
		}
		return nil
	})
}

// ---- v2 volume groups: the iSCSI data path of the v3 backend ----

// CreateVolumeGroupFromSnapshotDisk clones the snapshot disk into a v2 VG
// (clone_config, §3.5). For a v3 vm_snapshot the clone source is the
// snapshot file path with the consistency group as snapshot_group_uuid.
func (b *v3Backend) CreateVolumeGroupFromSnapshotDisk(ctx context.Context, snap Snapshot, diskUUID, name string) (VolumeGroup, error) {
	op := fmt.Sprintf("create volume group from disk %s of snapshot %s", diskUUID, snap.ID)
	if err := b.needV2(op); err != nil {
		return VolumeGroup{}, err
	}
	sd, ok := snap.Disk(diskUUID)
	if !ok {
		return VolumeGroup{}, fmt.Errorf("%s: disk not in snapshot: %w", op, ErrNotFound)
	}
	addr := map[string]any{}
	switch {
	case sd.NDFSFilePath != "":
		addr["ndfs_filepath"] = sd.NDFSFilePath
	case sd.SnapshotFilePath != "":
		addr["ndfs_filepath"] = sd.SnapshotFilePath
	default:
		return VolumeGroup{}, fmt.Errorf("%s: snapshot has no file path for the disk", op)
	}
	clone := map[string]any{"disk_address": addr}
	if snap.ConsistencyGroupUUID != "" {
		clone["snapshot_group_uuid"] = snap.ConsistencyGroupUUID
	}
	if sd.ContainerUUID != "" {
		clone["storage_container_uuid"] = sd.ContainerUUID
	}
	if sd.SizeBytes > 0 {
		clone["minimum_size"] = sd.SizeBytes
	}
	body := map[string]any{
		"name":        name,
		"description": "ahvfs temporary clone of " + snap.Name,
		"is_shared":   false,
		"is_hidden":   false,
		"usage_type":  "BACKUP_TARGET",
		"created_by":  "ahvfs",
		"disk_list":   []map[string]any{{"index": 0, "clone_config": clone}},
	}
	var tr v2TaskRef
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: b.v2("/volume_groups/"), in: body, out: &tr}); err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	t, err := b.v2Wait(ctx, tr.TaskUUID)
	if err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	id := t.entity("volume_group", "volumegroup", "volume")
	if id == "" {
		return VolumeGroup{}, fmt.Errorf("%s: task %s names no volume group", op, t.ID)
	}
	vg, err := b.v2GetVG(ctx, id)
	if err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	v := vg.neutral()
	v.ClusterUUID = snap.ClusterUUID
	return v, nil
}

func (b *v3Backend) v2GetVG(ctx context.Context, id string) (v2VolumeGroup, error) {
	var vg v2VolumeGroup
	q := url.Values{"include_disk_size": {"true"}, "include_disk_path": {"true"}}
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/volume_groups/" + url.PathEscape(id)), query: q, out: &vg}); err != nil {
		return vg, fmt.Errorf("get volume group %s: %w", id, err)
	}
	if vg.UUID == "" {
		vg.UUID = id
	}
	return vg, nil
}

// v2AttachTries bounds the rounds of v2AttachOp that meet a newer
// logical_timestamp.
const v2AttachTries = 5

// attached reports whether the external initiator iqn is attached.
func (vg v2VolumeGroup) attached(iqn string) bool {
	for _, a := range vg.AttachmentList {
		if strings.EqualFold(a.ISCSIInitiatorName, iqn) {
			return true
		}
	}
	return false
}

// v2AttachOp attaches (/open) or detaches (/close) an external initiator
// and returns once the group is in that state. Each round reads the group
// first: it is done when the initiator is already (or now) as wanted, and
// the change carries the logical_timestamp read. A 409 means the group
// changed meanwhile (another client, or an attempt of ours the server
// applied but whose reply was lost and retried): the next round reads it
// again. It returns the group as last read (before the change).
func (b *v3Backend) v2AttachOp(ctx context.Context, vgUUID, iqn string, attach bool) (v2VolumeGroup, error) {
	verb, operation := "close", "DETACH"
	if attach {
		verb, operation = "open", "ATTACH"
	}
	op := fmt.Sprintf("%s volume group %s for %s", strings.ToLower(operation), vgUUID, iqn)
	for round := 1; ; round++ {
		vg, err := b.v2GetVG(ctx, vgUUID)
		if err != nil {
			return vg, fmt.Errorf("%s: %w", op, err)
		}
		if vg.attached(iqn) == attach {
			return vg, nil
		}
		body := map[string]any{"uuid": vgUUID, "operation": operation, "iscsi_client": map[string]any{"client_address": iqn}}
		if vg.LogicalTS > 0 {
			body["logical_timestamp"] = vg.LogicalTS
		}
		var resp map[string]any
		// repeating attach/detach of the same initiator has the same effect
		_, err = b.r.do(ctx, request{method: http.MethodPost, path: b.v2("/volume_groups/" + url.PathEscape(vgUUID) + "/" + verb), in: body, out: &resp, idempotent: true})
		if errors.Is(err, ErrConflict) && round < v2AttachTries {
			continue
		}
		if err != nil {
			return vg, fmt.Errorf("%s: %w", op, err)
		}
		if tid, _ := resp["task_uuid"].(string); tid != "" {
			if _, err := b.v2Wait(ctx, tid); err != nil {
				return vg, fmt.Errorf("%s: %w", op, err)
			}
		}
		return vg, nil
	}
}

func (b *v3Backend) AttachISCSIClient(ctx context.Context, vgUUID, iqn string) (ISCSITarget, error) {
	if err := b.needV2("attach iSCSI client"); err != nil {
		return ISCSITarget{}, err
	}
	vg, err := b.v2AttachOp(ctx, vgUUID, iqn, true) // its iscsi_target does not change with the attach
	if err != nil {
		return ISCSITarget{}, err
	}
	c, err := b.v2Cluster(ctx)
	if err != nil {
		return ISCSITarget{}, err
	}
	if c.DataServicesIP == "" {
		return ISCSITarget{}, fmt.Errorf("attach iSCSI client: cluster %s has no Data Services IP configured", c.Name)
	}
	return ISCSITarget{VolumeGroupUUID: vgUUID, TargetIQN: vg.ISCSITarget, Portal: c.Portal()}, nil
}

func (b *v3Backend) DetachISCSIClient(ctx context.Context, vgUUID, iqn string) error {
	if err := b.needV2("detach iSCSI client"); err != nil {
		return err
	}
	_, err := b.v2AttachOp(ctx, vgUUID, iqn, false)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (b *v3Backend) DeleteVolumeGroup(ctx context.Context, vgUUID string) error {
	op := "delete volume group " + vgUUID
	if err := b.needV2(op); err != nil {
		return err
	}
	return ignoreAbsent(b.v2Delete(ctx, "/volume_groups/"+url.PathEscape(vgUUID), op))
}

// CreateBlankVolumeGroup creates a v2 VG whose disks have a create_config
// {size, storage_container_uuid} (§3.5) in one task. A failed task that
// names the group deletes it again and returns its UUID with the error.
func (b *v3Backend) CreateBlankVolumeGroup(ctx context.Context, spec VolumeGroupSpec) (VolumeGroup, error) {
	op := "create volume group " + spec.Name
	if err := checkBlankSpec(spec); err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := b.needV2(op); err != nil {
		return VolumeGroup{}, err
	}
	var disks []map[string]any
	for i, sz := range spec.DiskSizes {
		cc := map[string]any{"size": sz}
		if spec.ContainerUUID != "" {
			cc["storage_container_uuid"] = spec.ContainerUUID
		}
		disks = append(disks, map[string]any{"index": i, "create_config": cc})
	}
	body := map[string]any{"name": spec.Name, "is_shared": false, "is_hidden": false, "usage_type": "USER",
		"created_by": "ahvfs", "disk_list": disks}
	if spec.Description != "" {
		body["description"] = spec.Description
	}
	var tr v2TaskRef
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: b.v2("/volume_groups/"), in: body, out: &tr}); err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	t, err := b.v2Wait(ctx, tr.TaskUUID)
	id := t.entity("volume_group", "volumegroup", "volume")
	vg := VolumeGroup{UUID: id, Name: spec.Name, ClusterUUID: spec.ClusterUUID}
	fail := func(err error) (VolumeGroup, error) {
		if id == "" {
			return vg, err
		}
		if derr := b.DeleteVolumeGroup(detached(ctx), id); derr != nil {
			err = fmt.Errorf("%w (and deleting the incomplete volume group %s: %v)", err, id, derr)
		}
		return vg, err
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", op, err))
	}
	if id == "" {
		return vg, fmt.Errorf("%s: task %s names no volume group", op, t.ID)
	}
	g, err := b.v2GetVG(ctx, id)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", op, err))
	}
	got := g.neutral()
	got.ClusterUUID = spec.ClusterUUID
	if err := checkBlankDisks(got, spec); err != nil {
		return fail(fmt.Errorf("%s: %w", op, err))
	}
	return got, nil
}

// ListVolumeGroups reads GET /volume_groups/ and keeps those named name.
func (b *v3Backend) ListVolumeGroups(ctx context.Context, name string) ([]VolumeGroup, error) {
	if err := b.needV2("list volume groups"); err != nil {
		return nil, err
	}
	var l v2List[v2VolumeGroup]
	q := url.Values{"include_disk_size": {"true"}, "include_disk_path": {"true"}}
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/volume_groups/"), query: q, out: &l}); err != nil {
		return nil, fmt.Errorf("list volume groups: %w", err)
	}
	var out []VolumeGroup
	for _, g := range l.Entities {
		if name == "" || g.Name == name {
			out = append(out, g.neutral())
		}
	}
	return out, nil
}

type v2StorageContainer struct {
	StorageContainerUUID string `json:"storage_container_uuid"`
	Name                 string `json:"name"`
	ClusterUUID          string `json:"cluster_uuid"`
	// UsageStats holds strings ("storage.user_free_bytes": "123"); see
	// capacity.go.
	UsageStats map[string]json.RawMessage `json:"usage_stats"`
}

func (c v2StorageContainer) neutral() StorageContainer {
	return StorageContainer{UUID: c.StorageContainerUUID, Name: c.Name, ClusterUUID: c.ClusterUUID}
}

// ListStorageContainers reads GET /storage_containers/ of the Prism
// Element (v3 has no storage container list on PE).
func (b *v3Backend) ListStorageContainers(ctx context.Context) ([]StorageContainer, error) {
	if err := b.needV2("list storage containers"); err != nil {
		return nil, err
	}
	var l v2List[v2StorageContainer]
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: b.v2("/storage_containers/"), out: &l}); err != nil {
		return nil, fmt.Errorf("list storage containers: %w", err)
	}
	out := make([]StorageContainer, 0, len(l.Entities))
	for _, c := range l.Entities {
		out = append(out, c.neutral())
	}
	return out, nil
}
