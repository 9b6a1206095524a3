package nutanix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// The v4 backend's data path: volume groups (volumes) and their iSCSI
// clients.

type v4VolumeGroup struct {
	ExtID            string `json:"extId"`
	Name             string `json:"name"`
	TargetName       string `json:"targetName"`
	TargetPrefix     string `json:"targetPrefix"`
	ClusterReference string `json:"clusterReference"`
}

type v4VolumeDisk struct {
	ExtID         string `json:"extId"`
	Index         int    `json:"index"`
	DiskSizeBytes int64  `json:"diskSizeBytes"`
}

func (b *v4Backend) getVG(ctx context.Context, id string) (VolumeGroup, error) {
	var r v4Response[v4VolumeGroup]
	p := b.p("volumes", "/config/volume-groups/"+url.PathEscape(id))
	if _, err := b.r.do(ctx, request{method: http.MethodGet, path: p, out: &r}); err != nil {
		return VolumeGroup{}, fmt.Errorf("get volume group %s: %w", id, err)
	}
	if r.Data.ExtID == "" {
		r.Data.ExtID = id
	}
	return b.vgWithDisks(ctx, r.Data)
}

// vgWithDisks converts a volume group and lists its disks, in index order.
func (b *v4Backend) vgWithDisks(ctx context.Context, g v4VolumeGroup) (VolumeGroup, error) {
	vg := VolumeGroup{UUID: g.ExtID, Name: g.Name, ClusterUUID: g.ClusterReference, TargetIQN: g.TargetName}
	p := b.p("volumes", "/config/volume-groups/"+url.PathEscape(g.ExtID)+"/disks")
	err := v4ListAll(ctx, b, p, nil, func(d v4VolumeDisk) error {
		vg.Disks = append(vg.Disks, VolumeGroupDisk{UUID: d.ExtID, Index: d.Index, SizeBytes: d.DiskSizeBytes})
		return nil
	})
	if err != nil {
		return vg, fmt.Errorf("list disks of volume group %s: %w", g.ExtID, err)
	}
	sort.SliceStable(vg.Disks, func(i, j int) bool { return vg.Disks[i].Index < vg.Disks[j].Index })
	return vg, nil
}

// v4NameFilter is the OData $filter selecting entities named name.
func v4NameFilter(name string) url.Values {
	if name == "" {
		return nil
	}
	return url.Values{"$filter": {"name eq '" + strings.ReplaceAll(name, "'", "''") + "'"}}
}

// ListVolumeGroups lists volume groups by name ($filter, checked again
// here: a server that ignores the filter returns them all).
func (b *v4Backend) ListVolumeGroups(ctx context.Context, name string) ([]VolumeGroup, error) {
	var groups []v4VolumeGroup
	err := v4ListAll(ctx, b, b.p("volumes", "/config/volume-groups"), v4NameFilter(name), func(g v4VolumeGroup) error {
		if name == "" || g.Name == name {
			groups = append(groups, g)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volume groups: %w", err)
	}
	out := make([]VolumeGroup, 0, len(groups))
	for _, g := range groups {
		vg, err := b.vgWithDisks(ctx, g)
		if errors.Is(err, ErrNotFound) { // deleted meanwhile
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, vg)
	}
	return out, nil
}

// checkBlankSpec validates a VolumeGroupSpec.
func checkBlankSpec(spec VolumeGroupSpec) error {
	if strings.TrimSpace(spec.Name) == "" {
		return errors.New("volume group name is empty")
	}
	if len(spec.DiskSizes) == 0 {
		return errors.New("no disk sizes")
	}
	for i, sz := range spec.DiskSizes {
		if sz <= 0 {
			return fmt.Errorf("disk %d: size %d is not positive", i, sz)
		}
	}
	return nil
}

// checkBlankDisks checks that vg has the disks spec asked for, in order.
func checkBlankDisks(vg VolumeGroup, spec VolumeGroupSpec) error {
	if len(vg.Disks) != len(spec.DiskSizes) {
		return fmt.Errorf("volume group %s has %d disks, want %d", vg.UUID, len(vg.Disks), len(spec.DiskSizes))
	}
	for i, d := range vg.Disks {
		if d.SizeBytes > 0 && d.SizeBytes < spec.DiskSizes[i] {
			return fmt.Errorf("volume group %s disk %d holds %d bytes, want %d", vg.UUID, i, d.SizeBytes, spec.DiskSizes[i])
		}
	}
	return nil
}

// CreateBlankVolumeGroup creates the group (POST volume-groups), then
// adds each disk (POST …/disks with diskDataSourceReference entityType
// STORAGE_CONTAINER, §4.8), waiting for every task. A failure after the
// group exists deletes it again and returns its UUID with the error.
func (b *v4Backend) CreateBlankVolumeGroup(ctx context.Context, spec VolumeGroupSpec) (VolumeGroup, error) {
	op := "create volume group " + spec.Name
	if err := checkBlankSpec(spec); err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	body := map[string]any{"name": spec.Name, "sharingStatus": "NOT_SHARED", "usageType": "USER"}
	if spec.Description != "" {
		body["description"] = spec.Description
	}
	if spec.ClusterUUID != "" {
		body["clusterReference"] = spec.ClusterUUID
	}
	t, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups"), in: body})
	id := firstNonEmpty(t.entity("volume-group", "volumegroup", "volume_group"), t.Details["volumeGroupExtId"])
	vg := VolumeGroup{UUID: id, Name: spec.Name, ClusterUUID: spec.ClusterUUID}
	if err != nil {
		return vg, err
	}
	if id == "" {
		return vg, fmt.Errorf("%s: task %s names no volume group", op, t.ID)
	}
	fail := func(err error) (VolumeGroup, error) {
		if derr := b.DeleteVolumeGroup(detached(ctx), id); derr != nil {
			err = fmt.Errorf("%w (and deleting the incomplete volume group %s: %v)", err, id, derr)
		}
		return vg, err
	}
	for i, sz := range spec.DiskSizes {
		disk := map[string]any{"index": i, "diskSizeBytes": sz}
		if spec.ContainerUUID != "" {
			disk["diskDataSourceReference"] = map[string]any{"$objectType": "common.v1.config.EntityReference",
				"extId": spec.ContainerUUID, "entityType": "STORAGE_CONTAINER"}
		}
		if _, err := b.mutate(ctx, fmt.Sprintf("%s: add disk %d", op, i), request{method: http.MethodPost,
			path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(id)+"/disks"), in: disk}); err != nil {
			return fail(err)
		}
	}
	got, err := b.getVG(ctx, id)
	if err == nil {
		err = checkBlankDisks(got, spec)
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", op, err))
	}
	return got, nil
}

// CreateVolumeGroupFromSnapshotDisk creates a VG, then adds one disk whose
// data source is the DISK_RECOVERY_POINT (§4.8).
func (b *v4Backend) CreateVolumeGroupFromSnapshotDisk(ctx context.Context, snap Snapshot, diskUUID, name string) (VolumeGroup, error) {
	op := fmt.Sprintf("create volume group from disk %s of recovery point %s", diskUUID, snap.ID)
	ref, err := b.diskRef(snap, diskUUID)
	if err != nil {
		return VolumeGroup{}, fmt.Errorf("%s: %w", op, err)
	}
	body := map[string]any{"name": name, "description": "ahvfs temporary clone of " + snap.Name,
		"sharingStatus": "NOT_SHARED", "usageType": "BACKUP_TARGET"}
	if snap.ClusterUUID != "" {
		body["clusterReference"] = snap.ClusterUUID
	}
	t, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups"), in: body})
	if err != nil {
		return VolumeGroup{}, err
	}
	id := t.entity("volume-group", "volumegroup", "volume_group")
	if id == "" {
		return VolumeGroup{}, fmt.Errorf("%s: task %s names no volume group", op, t.ID)
	}
	disk := map[string]any{"index": 0, "diskDataSourceReference": map[string]any{
		"$objectType": "common.v1.config.EntityReference", "extId": ref.DiskRecoveryPointExtID, "entityType": "DISK_RECOVERY_POINT"}}
	if sd, ok := snap.Disk(diskUUID); ok && sd.SizeBytes > 0 {
		disk["diskSizeBytes"] = sd.SizeBytes
	}
	if _, err := b.mutate(ctx, op+": add disk", request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(id)+"/disks"), in: disk}); err != nil {
		_ = b.DeleteVolumeGroup(detached(ctx), id)
		return VolumeGroup{}, err
	}
	return b.getVG(ctx, id)
}

type v4ISCSIClient struct {
	ExtID              string `json:"extId"`
	ISCSIInitiatorName string `json:"iscsiInitiatorName"`
	AttachedTargets    []struct {
		ISCSITargetName string `json:"iscsiTargetName"`
	} `json:"attachedTargets"`
}

func (b *v4Backend) findISCSIClient(ctx context.Context, iqn string) (v4ISCSIClient, bool, error) {
	var found v4ISCSIClient
	ok := false
	err := v4ListAll(ctx, b, b.p("volumes", "/config/iscsi-clients"), nil, func(c v4ISCSIClient) error {
		if strings.EqualFold(c.ISCSIInitiatorName, iqn) {
			found, ok = c, true
		}
		return nil
	})
	return found, ok, err
}

func (b *v4Backend) AttachISCSIClient(ctx context.Context, vgUUID, iqn string) (ISCSITarget, error) {
	op := fmt.Sprintf("attach iSCSI client %s to volume group %s", iqn, vgUUID)
	if _, err := b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(vgUUID)+"/$actions/attach-iscsi-client"),
		in: map[string]any{"$objectType": "volumes.v4.config.IscsiClient", "iscsiInitiatorName": iqn}}); err != nil {
		return ISCSITarget{}, err
	}
	vg, err := b.getVG(ctx, vgUUID)
	if err != nil {
		return ISCSITarget{}, fmt.Errorf("%s: %w", op, err)
	}
	tgt := ISCSITarget{VolumeGroupUUID: vgUUID, TargetIQN: vg.TargetIQN}
	if c, ok, err := b.findISCSIClient(ctx, iqn); err == nil && ok {
		tgt.ClientID = c.ExtID
		if tgt.TargetIQN == "" && len(c.AttachedTargets) > 0 {
			tgt.TargetIQN = c.AttachedTargets[0].ISCSITargetName
		}
	}
	var ci ClusterInfo
	if vg.ClusterUUID != "" {
		ci, err = b.getCluster(ctx, vg.ClusterUUID)
	} else {
		var cs []ClusterInfo
		if cs, err = b.ListClusters(ctx); err == nil && len(cs) > 0 {
			ci = cs[0]
		}
	}
	if err != nil {
		return tgt, fmt.Errorf("%s: %w", op, err)
	}
	if ci.DataServicesIP == "" {
		return tgt, fmt.Errorf("%s: cluster %s has no Data Services IP configured", op, firstNonEmpty(ci.Name, ci.UUID))
	}
	tgt.Portal = ci.Portal()
	return tgt, nil
}

func (b *v4Backend) DetachISCSIClient(ctx context.Context, vgUUID, iqn string) error {
	op := fmt.Sprintf("detach iSCSI client %s from volume group %s", iqn, vgUUID)
	c, ok, err := b.findISCSIClient(ctx, iqn)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		return nil
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodPost, path: b.p("volumes", "/config/volume-groups/"+url.PathEscape(vgUUID)+"/$actions/detach-iscsi-client"),
		in: map[string]any{"$objectType": "volumes.v4.config.IscsiClientAttachment", "extId": c.ExtID}})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (b *v4Backend) DeleteVolumeGroup(ctx context.Context, vgUUID string) error {
	return ignoreAbsent(b.deleteWithETag(ctx, b.p("volumes", "/config/volume-groups/"+url.PathEscape(vgUUID)), "delete volume group "+vgUUID))
}
