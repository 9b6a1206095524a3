package prismsim

import (
	"net/http"
	"os"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- vm_snapshots ----------

func (s *Sim) v3Snapshot(sn *snapshot) obj {
	files := []obj{}
	if sn.State == "COMPLETE" {
		for _, d := range sn.Disks {
			files = append(files, obj{"file_path": d.LivePath, "snapshot_file_path": d.SnapPath})
		}
	}
	spec := obj{"name": sn.Name, "snapshot_type": sn.RequestedType, "resources": obj{"entity_uuid": sn.VMUUID}}
	status := obj{"name": sn.Name, "state": sn.State, "snapshot_type": sn.Type, "consistency_group_uuid": sn.GroupUUID,
		"location_agnostic_uuid": sn.LocationUUID, "resources": obj{"entity_uuid": sn.VMUUID},
		"snapshot_file_list": files}
	if sn.ExpiryMsecs > 0 {
		spec["expiration_time_msecs"] = sn.ExpiryMsecs
		status["expiration_time_msecs"] = sn.ExpiryMsecs
	}
	return obj{"api_version": "3.1", "metadata": v3Meta("vm_snapshot", sn.UUID, 0, sn.Created, sn.Created),
		"spec": spec, "status": status}
}

func (s *Sim) v3CreateSnapshot(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Spec *struct {
			Name                string `json:"name"`
			SnapshotType        string `json:"snapshot_type"`
			ExpirationTimeMsecs int64  `json:"expiration_time_msecs"`
			Resources           struct {
				EntityUUID string `json:"entity_uuid"`
			} `json:"resources"`
		} `json:"spec"`
	}
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	if in.Spec == nil || in.Spec.Resources.EntityUUID == "" {
		v3Error(w, http.StatusUnprocessableEntity, "vm_snapshot", "VALIDATION_ERROR", "spec.resources.entity_uuid is required")
		return
	}
	if len(in.Spec.Name) > 64 {
		v3Error(w, http.StatusUnprocessableEntity, "vm_snapshot", "VALIDATION_ERROR", "spec.name is longer than 64 characters")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[in.Spec.Resources.EntityUUID]
	if v == nil {
		v3Error(w, http.StatusNotFound, "vm_snapshot", "ENTITY_NOT_FOUND", "VM "+in.Spec.Resources.EntityUUID+" not found")
		return
	}
	fail := s.taskFailure("VmSnapshotCreate")
	id := simkit.NewUUID()
	var sn *snapshot
	if fail == "" {
		var err error
		if sn, err = s.snapshotVMLocked(v, in.Spec.Name, in.Spec.SnapshotType, "v3"); err != nil {
			s.writeErr(w, r, err)
			return
		}
		sn.ExpiryMsecs = in.Spec.ExpirationTimeMsecs
		id = sn.UUID
	}
	t := s.startTask("VmSnapshotCreate", v.ClusterUUID, []taskEntity{{Kind: "vm_snapshot", UUID: id, Name: in.Spec.Name}}, fail, func() {
		if sn != nil {
			sn.State = "COMPLETE"
		}
	})
	s.save()
	spec := obj{"name": in.Spec.Name, "resources": obj{"entity_uuid": v.UUID}}
	if in.Spec.SnapshotType != "" {
		spec["snapshot_type"] = in.Spec.SnapshotType
	}
	v3Accepted(w, obj{"kind": "vm_snapshot", "uuid": id, "spec_version": 0}, spec, t, "PENDING")
}

func (s *Sim) v3GetSnapshot(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "VM snapshot %s not found", byID(s.m.Snapshots), func(sn *snapshot) {
		simkit.WriteJSON(w, http.StatusOK, s.v3Snapshot(sn))
	})
}

func (s *Sim) v3ListSnapshots(w http.ResponseWriter, r *http.Request) {
	v3List(s, w, r, "vm_snapshot", func(listReq) []*snapshot { return s.m.sortedSnapshots() }, func(sn *snapshot, k string) string {
		switch k {
		case "name":
			return sn.Name
		case "entity_uuid", "vm_uuid":
			return sn.VMUUID
		}
		return ""
	}, s.v3Snapshot)
}

func (s *Sim) v3DeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "VM snapshot %s not found", byID(s.m.Snapshots), func(sn *snapshot) {
		v := s.m.VMs[sn.VMUUID]
		cu := ""
		if v != nil {
			cu = v.ClusterUUID
		}
		id := sn.UUID
		t := s.startTask("VmSnapshotDelete", cu, []taskEntity{{Kind: "vm_snapshot", UUID: id, Name: sn.Name}},
			s.taskFailure("VmSnapshotDelete"), func() { s.removeSnapshotLocked(id) })
		v3Accepted(w, obj{"kind": "vm_snapshot"}, nil, t, "DELETE_PENDING")
	})
}

// ---------- changed regions ----------

func (s *Sim) v3ChangedRegions(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SnapshotFilePath          string `json:"snapshot_file_path"`
		ReferenceSnapshotFilePath string `json:"reference_snapshot_file_path"`
		StartOffset               int64  `json:"start_offset"`
		EndOffset                 int64  `json:"end_offset"`
	}
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	const kind = "changed_regions"
	if in.SnapshotFilePath == "" {
		v3Error(w, http.StatusUnprocessableEntity, kind, "VALIDATION_ERROR", "'snapshot_file_path' is a required property")
		return
	}
	if in.StartOffset < 0 || in.EndOffset < 0 {
		v3Error(w, http.StatusUnprocessableEntity, kind, "VALIDATION_ERROR", "start_offset and end_offset must be >= 0")
		return
	}
	s.mu.Lock()
	_, sd := s.m.snapDiskByPath(in.SnapshotFilePath)
	var rd *snapDisk
	if in.ReferenceSnapshotFilePath != "" {
		_, rd = s.m.snapDiskByPath(in.ReferenceSnapshotFilePath)
	}
	s.mu.Unlock()
	if sd == nil {
		v3Error(w, http.StatusBadRequest, kind, "ENTITY_NOT_FOUND",
			"kInvalidValue: Snapshot file pathname "+in.SnapshotFilePath+" is not valid")
		return
	}
	if in.ReferenceSnapshotFilePath != "" && rd == nil {
		v3Error(w, http.StatusBadRequest, kind, "ENTITY_NOT_FOUND",
			"kInvalidValue: Reference snapshot file pathname "+in.ReferenceSnapshotFilePath+" is not valid")
		return
	}
	if rd != nil && rd.VDiskUUID != sd.VDiskUUID {
		v3Error(w, http.StatusBadRequest, kind, "INVALID_ARGUMENT",
			"kInvalidValue: the reference snapshot file is not a snapshot of the same vdisk")
		return
	}
	q := regionQuery{file: s.abs(sd.File), start: in.StartOffset, end: in.EndOffset,
		block: s.opts.RegionBlockSize, max: s.opts.MaxRegionsPerPage}
	if rd != nil {
		q.ref = s.abs(rd.File)
	}
	res, err := computeRegions(q)
	if err != nil {
		if os.IsNotExist(err) {
			v3Error(w, http.StatusNotFound, kind, "ENTITY_NOT_FOUND", "snapshot file is gone: "+err.Error())
			return
		}
		v3Error(w, http.StatusServiceUnavailable, kind, "SERVICE_UNAVAILABLE", err.Error())
		return
	}
	out := obj{"region_list": res.regions, "file_size": res.fileSize}
	if res.next >= 0 {
		out["next_offset"] = res.next
	}
	simkit.WriteJSON(w, http.StatusOK, out)
}
