package prismsim

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- dataprotection ----------

func (s *Sim) v4VMRP(sn *snapshot) obj {
	disks := []obj{}
	for _, d := range sn.Disks {
		disks = append(disks, obj{"$objectType": "dataprotection.v4.common.DiskRecoveryPoint", "$reserved": reserved(),
			"diskRecoveryPointExtId": d.DiskRPUUID, "diskExtId": d.DiskUUID})
	}
	o := obj{"$objectType": "dataprotection.v4.config.VmRecoveryPoint", "$reserved": reserved(),
		"extId": sn.UUID, "vmExtId": sn.VMUUID, "name": sn.Name, "creationTime": ts(sn.Created),
		"status": "COMPLETE", "recoveryPointType": sn.Type, "consistencyGroupExtId": sn.GroupUUID,
		"locationAgnosticId": sn.LocationUUID, "diskRecoveryPoints": disks, "vmCategories": []string{}}
	if sn.Type == AppConsistent {
		o["applicationConsistentProperties"] = obj{"$objectType": "dataprotection.v4.common.VssProperties",
			"backupType": "COPY_BACKUP", "shouldIncludeWriters": false, "shouldStoreVssMetadata": false}
		o["$applicationConsistentPropertiesItemDiscriminator"] = "dataprotection.v4.common.VssProperties"
	}
	return o
}

func (s *Sim) v4RP(rp *recoveryPoint) obj {
	vmrps := []obj{}
	locs := []obj{}
	seen := map[string]bool{}
	for _, id := range rp.Snapshots {
		sn := s.m.Snapshots[id]
		if sn == nil {
			continue
		}
		vmrps = append(vmrps, s.v4VMRP(sn))
		if v := s.m.VMs[sn.VMUUID]; v != nil && !seen[v.ClusterUUID] {
			seen[v.ClusterUUID] = true
			locs = append(locs, obj{"$objectType": "dataprotection.v4.config.LocationReference", "locationExtId": v.ClusterUUID})
		} else if v == nil && !seen[sn.VM.ClusterUUID] {
			seen[sn.VM.ClusterUUID] = true
			locs = append(locs, obj{"$objectType": "dataprotection.v4.config.LocationReference", "locationExtId": sn.VM.ClusterUUID})
		}
	}
	o := obj{"$objectType": "dataprotection.v4.config.RecoveryPoint", "$reserved": reserved(),
		"extId": rp.UUID, "name": rp.Name, "creationTime": ts(rp.Created), "status": rp.State,
		"recoveryPointType": rp.Type, "locationAgnosticId": rp.UUID, "locationReferences": locs,
		"vmRecoveryPoints": vmrps, "volumeGroupRecoveryPoints": []obj{}, "ownerExtId": "00000000-0000-0000-0000-000000000000"}
	if !rp.Expiry.IsZero() {
		o["expirationTime"] = ts(rp.Expiry)
	}
	return o
}

func rpETag(rp *recoveryPoint) string { return etagOf(rp.UUID, rp.Version) }

func (s *Sim) v4CreateRP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name              string `json:"name"`
		ExpirationTime    string `json:"expirationTime"`
		RecoveryPointType string `json:"recoveryPointType"`
		VMRecoveryPoints  []struct {
			VMExtID           string `json:"vmExtId"`
			RecoveryPointType string `json:"recoveryPointType"`
		} `json:"vmRecoveryPoints"`
		VolumeGroupRecoveryPoints []json.RawMessage `json:"volumeGroupRecoveryPoints"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	if len(in.VMRecoveryPoints) == 0 {
		v4Error(w, r, http.StatusBadRequest, "vmRecoveryPoints must name at least one VM")
		return
	}
	if len(in.VolumeGroupRecoveryPoints) > 0 {
		v4Error(w, r, http.StatusBadRequest, "volume group recovery points are not simulated")
		return
	}
	if len(in.VMRecoveryPoints) > 32 {
		v4Error(w, r, http.StatusBadRequest, "a recovery point holds at most 32 entities")
		return
	}
	var expiry time.Time
	if in.ExpirationTime != "" {
		t, err := time.Parse(time.RFC3339, in.ExpirationTime)
		if err != nil {
			v4Error(w, r, http.StatusBadRequest, "expirationTime: "+err.Error())
			return
		}
		expiry = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range in.VMRecoveryPoints {
		if s.m.VMs[x.VMExtID] == nil {
			v4Error(w, r, http.StatusNotFound, "VM "+x.VMExtID+" not found")
			return
		}
	}
	rpType := cmp.Or(in.RecoveryPointType, CrashConsistent)
	fail := s.taskFailure("CreateRecoveryPoint")
	rp := &recoveryPoint{UUID: simkit.NewUUID(), Name: in.Name, Type: rpType, Created: time.Now(), Expiry: expiry, State: "PENDING", Version: 1}
	var ents []taskEntity
	if fail == "" {
		group := simkit.NewUUID()
		for _, x := range in.VMRecoveryPoints {
			t := cmp.Or(x.RecoveryPointType, rpType)
			sn, err := s.snapshotVMLocked(s.m.VMs[x.VMExtID], in.Name, t, "v4")
			if err != nil {
				for _, id := range rp.Snapshots {
					s.removeSnapshotLocked(id)
				}
				s.writeErr(w, r, err)
				return
			}
			sn.RPUUID, sn.GroupUUID = rp.UUID, group
			if !expiry.IsZero() {
				sn.ExpiryMsecs = expiry.UnixMilli()
			}
			rp.Snapshots = append(rp.Snapshots, sn.UUID)
			if sn.Type != AppConsistent {
				rp.Type = CrashConsistent // what was actually taken
			}
		}
		s.m.RecoveryPoints[rp.UUID] = rp
		ents = append(ents, taskEntity{Kind: "recovery_point", UUID: rp.UUID, Name: rp.Name})
	}
	t := s.startTask("CreateRecoveryPoint", "", ents, fail, func() {
		rp.State = "COMPLETE"
		for _, id := range rp.Snapshots {
			if sn := s.m.Snapshots[id]; sn != nil {
				sn.State = "COMPLETE"
			}
		}
	})
	if fail == "" {
		t.Details = map[string]string{"recoveryPointExtId": rp.UUID}
	}
	s.save()
	s.accepted(w, r, "dataprotection.v4.config.CreateRecoveryPointApiResponse", t)
}

func (s *Sim) v4ListRPs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []*recoveryPoint
	for _, rp := range s.m.sortedRPs() {
		if rp.State == "COMPLETE" {
			done = append(done, rp)
		}
	}
	v4List(s, w, r, done, func(rp *recoveryPoint, k string) string {
		switch k {
		case "name":
			return rp.Name
		case "extId":
			return rp.UUID
		}
		return ""
	}, s.v4RP)
}

func (s *Sim) v4GetRP(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Recovery point %s not found", s.m.completeRP, func(rp *recoveryPoint) {
		v4Get(w, r, rpETag(rp), s.v4RP(rp))
	})
}

func (s *Sim) v4GetVMRP(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "rpExtId", "Recovery point %s not found", s.m.completeRP, func(rp *recoveryPoint) {
		id := r.PathValue("extId")
		if !slices.Contains(rp.Snapshots, id) || s.m.Snapshots[id] == nil {
			v4Error(w, r, http.StatusNotFound, "VM recovery point "+id+" not found in recovery point "+rp.UUID)
			return
		}
		v4Get(w, r, "", s.v4VMRP(s.m.Snapshots[id]))
	})
}

func (s *Sim) v4DeleteRP(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Recovery point %s not found", s.m.completeRP, func(rp *recoveryPoint) {
		if !checkIfMatch(w, r, rpETag(rp)) {
			return
		}
		t := s.startTask("DeleteRecoveryPoint", "", []taskEntity{{Kind: "recovery_point", UUID: rp.UUID, Name: rp.Name}},
			s.taskFailure("DeleteRecoveryPoint"), func() {
				for _, id := range slices.Clone(rp.Snapshots) {
					s.removeSnapshotLocked(id)
				}
				delete(s.m.RecoveryPoints, rp.UUID)
			})
		s.accepted(w, r, "dataprotection.v4.config.DeleteRecoveryPointApiResponse", t)
	})
}

func (s *Sim) v4SetExpiry(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExpirationTime string `json:"expirationTime"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	exp, err := time.Parse(time.RFC3339, in.ExpirationTime)
	if err != nil {
		v4Error(w, r, http.StatusBadRequest, "expirationTime: "+err.Error())
		return
	}
	withPath(s, w, r, "extId", "Recovery point %s not found", s.m.completeRP, func(rp *recoveryPoint) {
		if r.Header.Get("If-Match") != "" && !checkIfMatch(w, r, rpETag(rp)) {
			return
		}
		rp.Expiry = exp
		rp.Version++
		t := s.startTask("SetRecoveryPointExpirationTime", "", []taskEntity{{Kind: "recovery_point", UUID: rp.UUID, Name: rp.Name}}, "", nil)
		s.save()
		s.accepted(w, r, "dataprotection.v4.config.SetExpirationTimeApiResponse", t)
	})
}

type v4DiskRPRef struct {
	ObjectType             string `json:"$objectType"`
	RecoveryPointExtID     string `json:"recoveryPointExtId"`
	VMRecoveryPointExtID   string `json:"vmRecoveryPointExtId"`
	DiskRecoveryPointExtID string `json:"diskRecoveryPointExtId"`
}

// findDiskRP resolves an rp/vmrp/diskrp triple.
func (s *Sim) findDiskRP(rpID, vmrpID, diskID string) (*snapshot, *snapDisk, string) {
	rp := s.m.completeRP(rpID)
	if rp == nil {
		return nil, nil, "recovery point " + rpID + " not found"
	}
	if !slices.Contains(rp.Snapshots, vmrpID) {
		return nil, nil, "VM recovery point " + vmrpID + " not found in recovery point " + rpID
	}
	sn := s.m.Snapshots[vmrpID]
	if sn == nil {
		return nil, nil, "VM recovery point " + vmrpID + " not found"
	}
	for _, d := range sn.Disks {
		if d.DiskRPUUID == diskID {
			return sn, d, ""
		}
	}
	return nil, nil, "disk recovery point " + diskID + " not found in VM recovery point " + vmrpID
}

func (s *Sim) v4DiscoverCluster(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ObjectType string `json:"$objectType"`
		Operation  string `json:"operation"`
		Spec       *struct {
			ObjectType                 string       `json:"$objectType"`
			DiskRecoveryPoint          *v4DiskRPRef `json:"diskRecoveryPoint"`
			ReferenceDiskRecoveryPoint *v4DiskRPRef `json:"referenceDiskRecoveryPoint"`
			VMRecoveryPointExtID       string       `json:"vmRecoveryPointExtId"`
		} `json:"spec"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	if in.ObjectType != "dataprotection.v4.content.ClusterDiscoverSpec" {
		v4Error(w, r, http.StatusBadRequest, "$objectType must be dataprotection.v4.content.ClusterDiscoverSpec")
		return
	}
	if in.Operation != "COMPUTE_CHANGED_REGIONS" && in.Operation != "GET_VSS_METADATA" {
		v4Error(w, r, http.StatusBadRequest, "operation must be COMPUTE_CHANGED_REGIONS or GET_VSS_METADATA")
		return
	}
	withPath(s, w, r, "extId", "Recovery point %s not found", s.m.completeRP, func(rp *recoveryPoint) {
		rpID := rp.UUID
		var links []obj
		if in.Operation == "COMPUTE_CHANGED_REGIONS" {
			if in.Spec == nil || in.Spec.ObjectType != "dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec" || in.Spec.DiskRecoveryPoint == nil {
				v4Error(w, r, http.StatusBadRequest, "spec must be a dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec with diskRecoveryPoint")
				return
			}
			d := in.Spec.DiskRecoveryPoint
			if d.RecoveryPointExtID == "" {
				d.RecoveryPointExtID = rpID
			}
			if _, _, msg := s.findDiskRP(d.RecoveryPointExtID, d.VMRecoveryPointExtID, d.DiskRecoveryPointExtID); msg != "" {
				v4Error(w, r, http.StatusNotFound, msg)
				return
			}
			if ref := in.Spec.ReferenceDiskRecoveryPoint; ref != nil {
				if _, _, msg := s.findDiskRP(ref.RecoveryPointExtID, ref.VMRecoveryPointExtID, ref.DiskRecoveryPointExtID); msg != "" {
					v4Error(w, r, http.StatusNotFound, "reference: "+msg)
					return
				}
			}
			href := s.url + "/api/dataprotection/v4.0/content/recovery-points/" + url.PathEscape(d.RecoveryPointExtID) +
				"/vm-recovery-points/" + url.PathEscape(d.VMRecoveryPointExtID) + "/disk-recovery-points/" +
				url.PathEscape(d.DiskRecoveryPointExtID) + "/$actions/compute-changed-regions"
			links = []obj{{"$objectType": "common.v1.response.ApiLink", "href": href, "rel": "compute-changed-regions"}}
		}
		data := obj{"$objectType": "dataprotection.v4.common.ClusterInfo", "$reserved": reserved(),
			"clusterIp": ipv4(s.host), "jwtToken": s.makeJWT(rpID)}
		v4JSON(w, r, http.StatusOK, "dataprotection.v4.config.DiscoverClusterApiResponse", data, v4Meta(false, 1, links))
	})
}

var validBlockSizes = []int64{32768, 65536, 131072, 262144}

func (s *Sim) v4ComputeChangedRegions(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Offset                          *int64 `json:"offset"`
		Length                          *int64 `json:"length"`
		BlockSizeByte                   *int64 `json:"blockSizeByte"`
		ReferenceRecoveryPointExtID     string `json:"referenceRecoveryPointExtId"`
		ReferenceVMRecoveryPointExtID   string `json:"referenceVmRecoveryPointExtId"`
		ReferenceDiskRecoveryPointExtID string `json:"referenceDiskRecoveryPointExtId"`
	}
	if !s.decodeJSON(w, r, &in, false) {
		return
	}
	refs := []string{in.ReferenceRecoveryPointExtID, in.ReferenceVMRecoveryPointExtID, in.ReferenceDiskRecoveryPointExtID}
	nref := 0
	for _, x := range refs {
		if x != "" {
			nref++
		}
	}
	if nref != 0 && nref != 3 {
		v4Error(w, r, http.StatusBadRequest, "referenceRecoveryPointExtId, referenceVmRecoveryPointExtId and referenceDiskRecoveryPointExtId go together")
		return
	}
	bs := s.opts.RegionBlockSize
	if in.BlockSizeByte != nil {
		if !slices.Contains(validBlockSizes, *in.BlockSizeByte) {
			v4Error(w, r, http.StatusBadRequest, "blockSizeByte must be one of 32768, 65536, 131072, 262144")
			return
		}
		bs = *in.BlockSizeByte
	}
	var off, end int64
	if in.Offset != nil {
		off = *in.Offset
	}
	if in.Length != nil {
		if *in.Length <= 0 {
			v4Error(w, r, http.StatusBadRequest, "length must be positive")
			return
		}
		end = off + *in.Length
	}
	if off < 0 {
		v4Error(w, r, http.StatusBadRequest, "offset must not be negative")
		return
	}
	s.mu.Lock()
	_, sd, msg := s.findDiskRP(r.PathValue("rpExtId"), r.PathValue("vmRpExtId"), r.PathValue("extId"))
	var rd *snapDisk
	if msg == "" && nref == 3 {
		var m2 string
		_, rd, m2 = s.findDiskRP(refs[0], refs[1], refs[2])
		if m2 != "" {
			msg = "reference: " + m2
		} else if rd.VDiskUUID != sd.VDiskUUID {
			s.mu.Unlock()
			v4Error(w, r, http.StatusBadRequest, "the reference disk recovery point is not of the same disk")
			return
		}
	}
	s.mu.Unlock()
	if msg != "" {
		v4Error(w, r, http.StatusNotFound, msg)
		return
	}
	q := regionQuery{file: s.abs(sd.File), start: off, end: end, block: bs, max: s.opts.MaxRegionsPerPage}
	if rd != nil {
		q.ref = s.abs(rd.File)
	}
	res, err := computeRegions(q)
	if err != nil {
		v4Error(w, r, http.StatusNotFound, "disk recovery point data is gone: "+err.Error())
		return
	}
	data := []obj{}
	for _, rg := range res.regions {
		data = append(data, obj{"$objectType": "dataprotection.v4.content.ChangedRegion", "$reserved": reserved(),
			"offset": rg.Offset, "length": rg.Length, "regionType": rg.Type})
	}
	meta := v4Meta(false, len(data), nil)
	extra := []obj{{"$objectType": "common.v1.config.KVPair", "name": "fileSize", "value": res.fileSize}}
	if res.next >= 0 {
		extra = append(extra, obj{"$objectType": "common.v1.config.KVPair", "name": "nextOffset", "value": res.next})
	}
	meta["extraInfo"] = extra
	v4JSON(w, r, http.StatusOK, "dataprotection.v4.content.ChangedVmRegionsApiResponse", data, meta)
}
