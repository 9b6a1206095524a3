package prismsim

import (
	"net/http"
	"slices"
	"strings"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- volumes ----------

func vgETag(g *volumeGroup) string { return etagOf(g.UUID, g.Version) }

func (s *Sim) v4VG(g *volumeGroup) obj {
	auth := "NONE"
	if g.TargetSecret != "" || s.opts.CHAPUser != "" {
		auth = "CHAP"
	}
	return obj{"$objectType": "volumes.v4.config.VolumeGroup", "$reserved": reserved(),
		"extId": g.UUID, "name": g.Name, "description": g.Description, "sharingStatus": "SHARED",
		"targetName": g.TargetName, "targetPrefix": "iqn.2010-06.com.nutanix", "enabledAuthentications": auth,
		"iscsiFeatures": obj{"$objectType": "volumes.v4.config.IscsiFeatures", "enabledAuthentications": auth},
		"usageType":     g.UsageType, "isHidden": false, "clusterReference": g.ClusterUUID,
		"shouldLoadBalanceVmAttachments": false, "protocol": "ISCSI", "createdTime": ts(g.Created)}
}

func (s *Sim) v4VGDisk(d *vgDisk) obj {
	o := obj{"$objectType": "volumes.v4.config.VolumeDisk", "$reserved": reserved(), "extId": d.UUID, "index": d.Index,
		"diskSizeBytes": d.Size, "storageContainerId": d.ContainerUUID}
	et := map[string]string{"snapshot_disk": "DISK_RECOVERY_POINT", "vm_disk": "VM_DISK", "": "STORAGE_CONTAINER"}[d.SourceKind]
	src := d.SourceUUID
	if d.SourceKind == "" {
		src = d.ContainerUUID
	}
	o["diskDataSourceReference"] = obj{"$objectType": "common.v1.config.EntityReference", "extId": src, "entityType": et}
	return o
}

func (s *Sim) v4ListVGs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v4List(s, w, r, s.m.sortedVGs(), func(g *volumeGroup, k string) string {
		switch k {
		case "name":
			return g.Name
		case "extId":
			return g.UUID
		}
		return ""
	}, s.v4VG)
}

func (s *Sim) v4GetVG(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		v4Get(w, r, vgETag(g), s.v4VG(g))
	})
}

type v4VolumeDiskIn struct {
	Index                   *int  `json:"index"`
	DiskSizeBytes           int64 `json:"diskSizeBytes"`
	DiskDataSourceReference *struct {
		ExtID      string `json:"extId"`
		EntityType string `json:"entityType"`
	} `json:"diskDataSourceReference"`
}

func (s *Sim) v4DiskSpec(d v4VolumeDiskIn) (vgDiskSpec, error) {
	ds := vgDiskSpec{Index: -1, Size: d.DiskSizeBytes}
	if d.Index != nil {
		ds.Index = *d.Index
	}
	if ref := d.DiskDataSourceReference; ref != nil {
		switch ref.EntityType {
		case "STORAGE_CONTAINER", "":
			if ref.ExtID != "" && s.m.containerByUUID(ref.ExtID) == nil {
				return ds, errNotFound("storage container %s not found", ref.ExtID)
			}
			ds.ContainerUUID = ref.ExtID
		case "DISK_RECOVERY_POINT":
			ds.SourceKind, ds.SourceUUID = "snapshot_disk", ref.ExtID
		case "VM_DISK":
			ds.SourceKind, ds.SourceUUID = "vm_disk", ref.ExtID
		default:
			return ds, errInvalid("diskDataSourceReference.entityType %q is not supported (STORAGE_CONTAINER, VM_DISK, DISK_RECOVERY_POINT)", ref.EntityType)
		}
	}
	return ds, nil
}

func (s *Sim) v4CreateVG(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name             string `json:"name"`
		Description      string `json:"description"`
		UsageType        string `json:"usageType"`
		ClusterReference string `json:"clusterReference"`
		IscsiFeatures    *struct {
			TargetSecret string `json:"targetSecret"`
		} `json:"iscsiFeatures"`
		Disks []v4VolumeDiskIn `json:"disks"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var specs []vgDiskSpec
	for _, d := range in.Disks {
		ds, err := s.v4DiskSpec(d)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		specs = append(specs, ds)
	}
	fail := s.taskFailure("CreateVolumeGroup")
	id := simkit.NewUUID()
	if fail == "" {
		g, err := s.createVGLocked(in.Name, in.Description, in.ClusterReference, in.UsageType, "v4", specs)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		if in.IscsiFeatures != nil {
			g.TargetSecret = in.IscsiFeatures.TargetSecret
		}
		id = g.UUID
	}
	t := s.startTask("CreateVolumeGroup", in.ClusterReference, []taskEntity{{Kind: "volume_group", UUID: id, Name: in.Name}}, fail, nil)
	t.Details = map[string]string{"volumeGroupExtId": id}
	s.save()
	s.accepted(w, r, "volumes.v4.config.CreateVolumeGroupApiResponse", t)
}

func (s *Sim) v4DeleteVG(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		if !checkIfMatch(w, r, vgETag(g)) {
			return
		}
		t := s.startTask("DeleteVolumeGroup", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}},
			s.taskFailure("DeleteVolumeGroup"), func() {
				if err := s.deleteVGLocked(g); err != nil {
					s.logf("delete volume group %s: %v", g.UUID, err)
				}
			})
		s.accepted(w, r, "volumes.v4.config.DeleteVolumeGroupApiResponse", t)
	})
}

func (s *Sim) v4ListVGDisks(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		v4List(s, w, r, g.Disks, nil, s.v4VGDisk)
	})
}

func (s *Sim) v4AddVGDisk(w http.ResponseWriter, r *http.Request) {
	var in v4VolumeDiskIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		ds, err := s.v4DiskSpec(in)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		fail := s.taskFailure("CreateVolumeDisk")
		if fail == "" {
			tmp, err := s.createVGLocked(g.Name, "", g.ClusterUUID, g.UsageType, "v4", []vgDiskSpec{ds})
			if err != nil {
				s.writeErr(w, r, err)
				return
			}
			// Move the new disk into g.
			delete(s.m.VGs, tmp.UUID)
			d := tmp.Disks[0]
			if in.Index == nil {
				d.Index = len(g.Disks)
			}
			g.Disks = append(g.Disks, d)
			g.Version++
			if err := s.exportVGLocked(g); err != nil {
				s.logf("re-export %s: %v", g.Name, err)
			}
		}
		t := s.startTask("CreateVolumeDisk", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}}, fail, nil)
		s.save()
		s.accepted(w, r, "volumes.v4.config.CreateVolumeDiskApiResponse", t)
	})
}

func (s *Sim) v4ISCSIClient(c *iscsiClient) obj {
	var targets []obj
	for _, g := range s.m.sortedVGs() {
		if slices.Contains(g.Clients, c.UUID) {
			targets = append(targets, obj{"$objectType": "volumes.v4.config.TargetParam", "iscsiTargetName": g.TargetName, "numVirtualTargets": 1})
		}
	}
	if targets == nil {
		targets = []obj{}
	}
	auth := "NONE"
	if c.Secret != "" {
		auth = "CHAP"
	}
	o := obj{"$objectType": "volumes.v4.config.IscsiClient", "$reserved": reserved(), "extId": c.UUID,
		"enabledAuthentications": auth, "attachedTargets": targets, "clusterReference": s.m.Clusters[1].UUID}
	if c.IQN != "" {
		o["iscsiInitiatorName"] = c.IQN
	} else {
		o["iscsiInitiatorNetworkId"] = ipv4(c.IP)
	}
	return o
}

func (s *Sim) v4AttachISCSI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExtID                   string `json:"extId"`
		IscsiInitiatorName      string `json:"iscsiInitiatorName"`
		IscsiInitiatorNetworkID *struct {
			IPv4 *struct {
				Value string `json:"value"`
			} `json:"ipv4"`
		} `json:"iscsiInitiatorNetworkId"`
		ClientSecret string `json:"clientSecret"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	ip := ""
	if in.IscsiInitiatorNetworkID != nil && in.IscsiInitiatorNetworkID.IPv4 != nil {
		ip = in.IscsiInitiatorNetworkID.IPv4.Value
	}
	n := 0
	for _, x := range []string{in.ExtID, in.IscsiInitiatorName, ip} {
		if x != "" {
			n++
		}
	}
	if n != 1 {
		v4Error(w, r, http.StatusBadRequest, "exactly one of extId, iscsiInitiatorName and iscsiInitiatorNetworkId must be given")
		return
	}
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		if in.ExtID != "" {
			c := s.m.ISCSIClients[in.ExtID]
			if c == nil {
				v4Error(w, r, http.StatusNotFound, "iSCSI client "+in.ExtID+" not found")
				return
			}
			in.IscsiInitiatorName, ip = c.IQN, c.IP
		}
		fail := s.taskFailure("AttachIscsiClient")
		var c *iscsiClient
		if fail == "" {
			var err error
			if c, err = s.attachClientLocked(g, in.IscsiInitiatorName, ip, in.ClientSecret); err != nil {
				s.writeErr(w, r, err)
				return
			}
		}
		ents := []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}}
		if c != nil {
			ents = append(ents, taskEntity{Kind: "iscsi_client", UUID: c.UUID, Name: c.IQN})
		}
		t := s.startTask("AttachIscsiClient", g.ClusterUUID, ents, fail, nil)
		if c != nil {
			t.Details = map[string]string{"iscsiClientExtId": c.UUID}
		}
		s.save()
		s.accepted(w, r, "volumes.v4.config.AttachIscsiClientApiResponse", t)
	})
}

func (s *Sim) v4DetachISCSI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ExtID string `json:"extId"`
	}
	if !s.decodeV4(w, r, &in) {
		return
	}
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		if !slices.Contains(g.Clients, in.ExtID) {
			v4Error(w, r, http.StatusNotFound, "iSCSI client "+in.ExtID+" is not attached to volume group "+g.UUID)
			return
		}
		fail := s.taskFailure("DetachIscsiClient")
		if fail == "" {
			if err := s.detachClientLocked(g, in.ExtID); err != nil {
				s.writeErr(w, r, err)
				return
			}
		}
		t := s.startTask("DetachIscsiClient", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}}, fail, nil)
		s.save()
		s.accepted(w, r, "volumes.v4.config.DetachIscsiClientApiResponse", t)
	})
}

func (s *Sim) v4ListAttachments(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "Volume group %s not found", byID(s.m.VGs), func(g *volumeGroup) {
		data := []obj{}
		for _, id := range g.Clients {
			data = append(data, obj{"$objectType": "volumes.v4.config.IscsiClientAttachment", "extId": id, "clusterReference": g.ClusterUUID})
		}
		v4JSON(w, r, http.StatusOK, "volumes.v4.config.ListExternalIscsiAttachmentsApiResponse", data, v4Meta(false, len(data), nil))
	})
}

func (s *Sim) v4ListISCSIClients(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*iscsiClient
	for _, c := range s.m.ISCSIClients {
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b *iscsiClient) int { return strings.Compare(a.IQN+a.IP, b.IQN+b.IP) })
	v4List(s, w, r, all, nil, s.v4ISCSIClient)
}

func (s *Sim) v4GetISCSIClient(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "extId", "iSCSI client %s not found", byID(s.m.ISCSIClients), func(c *iscsiClient) {
		v4Get(w, r, "", s.v4ISCSIClient(c))
	})
}
