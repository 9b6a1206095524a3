package nutanix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// The v3 backend's snapshots: vm_snapshots and data/changed_regions.

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
	if _, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/vm_snapshots", in: body, out: &acc, idempotent: true}); err != nil {
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

// GetSnapshot reads a vm_snapshot or a v2.0 snapshot, whichever the
// backend made it with, or a recovery point made here through v4 (see
// deletes.go).
func (b *v3Backend) GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	return getSnapshotIn(ctx, b.snapshotSpaces(), id)
}

func (b *v3Backend) getVMSnapshot(ctx context.Context, id string) (Snapshot, error) {
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
	return v3List(ctx, b, "vm_snapshot", "list snapshots", func(s v3VMSnapshot) (Snapshot, bool) {
		snap := b.neutralSnapshot(s, "")
		for _, f := range s.Status.SnapshotFileList {
			snap.Disks = append(snap.Disks, SnapshotDisk{FilePath: f.FilePath, SnapshotFilePath: f.SnapshotFilePath})
		}
		return snap, vmUUID == "" || snap.VMUUID == vmUUID
	})
}

// DeleteSnapshot deletes a vm_snapshot or a v2.0 snapshot, whichever the
// backend made it with, or a recovery point made here through v4 (see
// deletes.go).
func (b *v3Backend) DeleteSnapshot(ctx context.Context, id string) error {
	return deleteSnapshotIn(ctx, b.snapshotSpaces(), id)
}

func (b *v3Backend) deleteVMSnapshot(ctx context.Context, id string) error {
	return b.deleteEntity(ctx, "vm_snapshots", id, "delete snapshot "+id)
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
		_, err := b.r.do(ctx, request{method: http.MethodPost, path: v3Base + "/data/changed_regions", in: query, out: &raw, idempotent: true})
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
