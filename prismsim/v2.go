package prismsim

import (
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

func (s *Sim) routesV2(mux *http.ServeMux) {
	for _, p := range []string{v2Prefix, v2AltPrefix} {
		both := func(method, path string, h http.HandlerFunc) {
			mux.HandleFunc(method+" "+p+path, h)
			mux.HandleFunc(method+" "+p+path+"/{$}", h)
		}
		both("GET", "/cluster", s.v2GetCluster)
		both("GET", "/snapshots", s.v2ListSnapshots)
		both("POST", "/snapshots", s.v2CreateSnapshots)
		both("GET", "/snapshots/{uuid}", s.v2GetSnapshot)
		both("DELETE", "/snapshots/{uuid}", s.v2DeleteSnapshot)
		both("GET", "/volume_groups", s.v2ListVGs)
		both("POST", "/volume_groups", s.v2CreateVG)
		both("GET", "/volume_groups/{uuid}", s.v2GetVG)
		both("DELETE", "/volume_groups/{uuid}", s.v2DeleteVG)
		both("POST", "/volume_groups/{uuid}/open", s.v2OpenVG)
		both("POST", "/volume_groups/{uuid}/close", s.v2CloseVG)
		both("GET", "/storage_containers", s.v2ListContainers)
		both("GET", "/hosts", s.v2ListHosts)
		both("GET", "/tasks/{uuid}", s.v2GetTask)
		both("GET", "/virtual_disks", s.v2ListVirtualDisks)
		both("GET", "/virtual_disks/{uuid}", s.v2GetVirtualDisk)
	}
}

func v2Collection(ents []obj) obj {
	n := len(ents)
	if ents == nil {
		ents = []obj{}
	}
	return obj{"metadata": obj{"grand_total_entities": n, "total_entities": n, "count": n,
		"start_index": min(1, n), "end_index": n}, "entities": ents}
}

func v2TaskID(w http.ResponseWriter, t *task) {
	simkit.WriteJSON(w, http.StatusCreated, obj{"task_uuid": t.UUID})
}

// ---------- cluster ----------

func (s *Sim) v2GetCluster(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	c := s.m.Clusters[1] // the PE this listener plays in v2 (cluster-a)
	s.mu.Unlock()
	dsip := s.DataServicesIP()
	simkit.WriteJSON(w, http.StatusOK, obj{
		"id":                         fmt.Sprintf("%s::%d", c.UUID, c.ClusterID),
		"uuid":                       c.UUID,
		"cluster_incarnation_id":     c.IncarnationID,
		"name":                       c.Name,
		"cluster_external_ipaddress": s.host,
		"cluster_external_data_services_ipaddress": dsip,
		"cluster_external_data_services_address":   obj{"ipv4": dsip},
		"iscsi_config":                             obj{"external_client_enabled": true},
		"version":                                  "7.3.1.5",
		"full_version":                             "el8.5-release-ganges-7.3.1.5-stable-prismsim",
		"hypervisor_types":                         []string{"kKvm"},
		"num_nodes":                                1,
		"timezone":                                 "UTC",
		"is_nsenabled":                             false,
		"storage_type":                             "mixed",
	})
}

// ---------- snapshots ----------

func (s *Sim) v2Snapshot(sn *snapshot) obj {
	v := &sn.VM
	var disks []obj
	for i, d := range sn.Disks {
		bus := strings.ToLower(d.Bus)
		disks = append(disks, obj{
			"is_cdrom":     false,
			"disk_address": obj{"device_bus": bus, "device_index": d.Index},
			"vm_disk_clone": obj{
				"disk_address": obj{"vmdisk_uuid": d.DiskUUID, "ndfs_filepath": d.SnapPath,
					"device_bus": bus, "device_index": d.Index},
				"snapshot_group_uuid":    sn.GroupUUID,
				"storage_container_uuid": d.Container,
				"minimum_size":           sn.Disks[i].Size,
			},
		})
	}
	var nics []obj
	for _, n := range v.NICs {
		nics = append(nics, obj{"network_uuid": n.SubnetUUID, "mac_address": n.MAC, "model": strings.ToLower(n.Model), "is_connected": true})
	}
	return obj{
		"uuid":              sn.UUID,
		"snapshot_name":     sn.Name,
		"vm_uuid":           sn.VMUUID,
		"group_uuid":        sn.GroupUUID,
		"created_time":      sn.Created.UnixMicro(),
		"deleted":           false,
		"logical_timestamp": 1,
		"vm_create_spec": obj{
			"name":               v.Name,
			"memory_mb":          v.MemoryMiB,
			"num_vcpus":          v.NumSockets,
			"num_cores_per_vcpu": v.VCPUsPerSocket,
			"machine_type":       v.MachineType,
			"boot":               obj{"uefi_boot": v.BootType != "LEGACY", "secure_boot": v.BootType == "SECURE_BOOT"},
			"vm_disks":           disks,
			"vm_nics":            nics,
			"timezone":           "UTC",
		},
	}
}

func (s *Sim) v2ListSnapshots(w http.ResponseWriter, r *http.Request) {
	vmUUID := r.URL.Query().Get("vm_uuid")
	s.mu.Lock()
	defer s.mu.Unlock()
	var ents []obj
	for _, sn := range s.m.sortedSnapshots() {
		if sn.State == "COMPLETE" && (vmUUID == "" || sn.VMUUID == vmUUID) {
			ents = append(ents, s.v2Snapshot(sn))
		}
	}
	simkit.WriteJSON(w, http.StatusOK, v2Collection(ents))
}

func (s *Sim) v2GetSnapshot(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Snapshot %s does not exist", s.m.completeSnapshot, func(sn *snapshot) {
		simkit.WriteJSON(w, http.StatusOK, s.v2Snapshot(sn))
	})
}

func (s *Sim) v2CreateSnapshots(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SnapshotSpecs []struct {
			VMUUID       string `json:"vm_uuid"`
			SnapshotName string `json:"snapshot_name"`
			UUID         string `json:"uuid"`
		} `json:"snapshot_specs"`
	}
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	if len(in.SnapshotSpecs) == 0 {
		v2Error(w, http.StatusBadRequest, "snapshot_specs must not be empty")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range in.SnapshotSpecs {
		if s.m.VMs[sp.VMUUID] == nil {
			v2Error(w, http.StatusNotFound, "VM "+sp.VMUUID+" does not exist")
			return
		}
		if sp.UUID != "" && s.m.Snapshots[sp.UUID] != nil {
			v2Error(w, http.StatusConflict, "Snapshot "+sp.UUID+" already exists")
			return
		}
	}
	fail := s.taskFailure("SnapshotCreate")
	var made []*snapshot
	var ents []taskEntity
	group := simkit.NewUUID()
	for _, sp := range in.SnapshotSpecs {
		id := sp.UUID
		if id == "" {
			id = simkit.NewUUID()
		}
		if fail == "" {
			sn, err := s.snapshotVMLocked(s.m.VMs[sp.VMUUID], sp.SnapshotName, CrashConsistent, "v2")
			if err != nil {
				for _, m := range made {
					s.removeSnapshotLocked(m.UUID)
				}
				s.writeErr(w, r, err)
				return
			}
			if sp.UUID != "" {
				delete(s.m.Snapshots, sn.UUID)
				// keep the files where they are; only the id changes
				sn.UUID = sp.UUID
				s.m.Snapshots[sn.UUID] = sn
			}
			sn.GroupUUID = group // one consistency group for all specs
			made = append(made, sn)
			id = sn.UUID
		}
		ents = append(ents, taskEntity{Kind: "snapshot", UUID: id, Name: sp.SnapshotName})
	}
	t := s.startTask("SnapshotCreate", "", ents, fail, func() {
		for _, sn := range made {
			sn.State = "COMPLETE"
		}
	})
	s.save()
	v2TaskID(w, t)
}

func (s *Sim) v2DeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Snapshot %s does not exist", byID(s.m.Snapshots), func(sn *snapshot) {
		id := sn.UUID
		t := s.startTask("SnapshotDelete", "", []taskEntity{{Kind: "snapshot", UUID: id, Name: sn.Name}},
			s.taskFailure("SnapshotDelete"), func() { s.removeSnapshotLocked(id) })
		v2TaskID(w, t)
	})
}

// ---------- virtual disks ----------

func (s *Sim) v2VirtualDisk(v *vm, d *vmDisk) obj {
	ctr := s.m.containerByUUID(d.ContainerUUID)
	return obj{
		"uuid":                   d.VDiskUUID,
		"virtual_disk_id":        d.VDiskUUID,
		"device_uuid":            d.UUID,
		"nutanix_nfsfile_path":   fmt.Sprintf("/%s/.acropolis/vmdisk/%s", ctr.Name, d.VDiskUUID),
		"disk_address":           fmt.Sprintf("%s.%d", strings.ToLower(d.Bus), d.Index),
		"attached_vm_uuid":       v.UUID,
		"attached_vmname":        v.Name,
		"disk_capacity_in_bytes": d.Size,
		"storage_container_uuid": d.ContainerUUID,
		"cluster_uuid":           v.ClusterUUID,
		"flash_mode_enabled":     false,
	}
}

func (s *Sim) v2ListVirtualDisks(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ents []obj
	for _, v := range s.m.sortedVMs() {
		for _, d := range v.Disks {
			ents = append(ents, s.v2VirtualDisk(v, d))
		}
	}
	simkit.WriteJSON(w, http.StatusOK, v2Collection(ents))
}

func (s *Sim) v2GetVirtualDisk(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("uuid")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.m.VMs {
		for _, d := range v.Disks {
			if d.VDiskUUID == id || d.UUID == id {
				simkit.WriteJSON(w, http.StatusOK, s.v2VirtualDisk(v, d))
				return
			}
		}
	}
	v2Error(w, http.StatusNotFound, "Virtual disk "+id+" does not exist")
}

// ---------- volume groups ----------

type v2Auth struct {
	AuthType string `json:"auth_type"`
	Password string `json:"password"`
}

type v2Client struct {
	ClientAddress          string   `json:"client_address"`
	EnabledAuthentications []v2Auth `json:"enabled_authentications"`
}

func chapSecret(auths []v2Auth) string {
	for _, a := range auths {
		if strings.EqualFold(a.AuthType, "CHAP") {
			return a.Password
		}
	}
	return ""
}

func (s *Sim) v2VG(g *volumeGroup) obj {
	var disks []obj
	for _, d := range g.Disks {
		ctr := s.m.containerByUUID(d.ContainerUUID)
		disks = append(disks, obj{"index": d.Index, "vmdisk_uuid": d.UUID,
			"vmdisk_path":       fmt.Sprintf("/%s/.acropolis/vmdisk/%s", ctr.Name, d.UUID),
			"vmdisk_size_bytes": d.Size, "vmdisk_size_mb": (d.Size + (1 << 20) - 1) >> 20,
			"storage_container_uuid": d.ContainerUUID, "flash_mode_enabled": false})
	}
	atts := []obj{}
	for _, id := range g.Clients {
		c := s.m.ISCSIClients[id]
		if c == nil {
			continue
		}
		a := obj{"client_uuid": c.UUID}
		if c.IQN != "" {
			a["iscsi_initiator_name"] = c.IQN
		} else {
			a["initiator_ip_address"] = c.IP
		}
		if c.Secret != "" {
			a["enabled_authentications"] = []obj{{"auth_type": "CHAP"}}
		}
		atts = append(atts, a)
	}
	auth := []obj{}
	if g.TargetSecret != "" {
		auth = append(auth, obj{"auth_type": "CHAP"})
	}
	if disks == nil {
		disks = []obj{}
	}
	return obj{"uuid": g.UUID, "name": g.Name, "description": g.Description, "iscsi_target": g.TargetName,
		"disk_list": disks, "attachment_list": atts, "enabled_authentications": auth, "is_shared": true,
		"is_hidden": false, "usage_type": g.UsageType, "logical_timestamp": g.Version,
		"flash_mode_enabled": false, "load_balance_vm_attachments": false}
}

func (s *Sim) v2ListVGs(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ents []obj
	for _, g := range s.m.sortedVGs() {
		ents = append(ents, s.v2VG(g))
	}
	simkit.WriteJSON(w, http.StatusOK, v2Collection(ents))
}

func (s *Sim) v2GetVG(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Volume group %s does not exist", byID(s.m.VGs), func(g *volumeGroup) {
		simkit.WriteJSON(w, http.StatusOK, s.v2VG(g))
	})
}

type v2DiskAddr struct {
	VMDiskUUID   string `json:"vmdisk_uuid"`
	NDFSFilepath string `json:"ndfs_filepath"`
}

// resolveClone maps a v2 VmDiskCloneDTO to a VG disk source.
func (s *Sim) resolveClone(addr v2DiskAddr, group string) (vgDiskSpec, error) {
	if p := addr.NDFSFilepath; p != "" {
		if sn, sd := s.m.snapDiskByPath(p); sd != nil {
			if group != "" && group != sn.GroupUUID {
				return vgDiskSpec{}, errInvalid("ndfs_filepath %s is not in snapshot group %s", p, group)
			}
			return vgDiskSpec{Index: -1, SourceKind: "snapshot_disk", SourceUUID: sd.DiskRPUUID}, nil
		}
		for _, v := range s.m.VMs {
			for _, d := range v.Disks {
				if strings.HasSuffix(p, "/.acropolis/vmdisk/"+d.VDiskUUID) && !strings.Contains(p, "/.snapshot/") {
					return vgDiskSpec{Index: -1, SourceKind: "vm_disk", SourceUUID: d.UUID}, nil
				}
			}
		}
		return vgDiskSpec{}, errNotFound("ndfs_filepath %s not found", p)
	}
	if id := addr.VMDiskUUID; id != "" {
		if group != "" {
			for _, sn := range s.m.Snapshots {
				if sn.GroupUUID != group || sn.State != "COMPLETE" {
					continue
				}
				for _, d := range sn.Disks {
					if d.DiskUUID == id || d.VDiskUUID == id {
						return vgDiskSpec{Index: -1, SourceKind: "snapshot_disk", SourceUUID: d.DiskRPUUID}, nil
					}
				}
			}
			return vgDiskSpec{}, errNotFound("vmdisk %s not found in snapshot group %s", id, group)
		}
		if _, _, ok := s.m.diskFileByUUID(id); ok {
			return vgDiskSpec{Index: -1, SourceKind: "vm_disk", SourceUUID: id}, nil
		}
		return vgDiskSpec{}, errNotFound("vmdisk %s not found", id)
	}
	return vgDiskSpec{}, errInvalid("clone_config.disk_address needs vmdisk_uuid or ndfs_filepath")
}

func (s *Sim) v2CreateVG(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UUID                   string     `json:"uuid"`
		Name                   string     `json:"name"`
		Description            string     `json:"description"`
		UsageType              string     `json:"usage_type"`
		EnabledAuthentications []v2Auth   `json:"enabled_authentications"`
		AttachedClients        []v2Client `json:"attached_clients"`
		DiskList               []struct {
			Index        *int `json:"index"`
			CreateConfig *struct {
				Size                 int64  `json:"size"`
				StorageContainerUUID string `json:"storage_container_uuid"`
			} `json:"create_config"`
			CloneConfig *struct {
				DiskAddress          v2DiskAddr `json:"disk_address"`
				SnapshotGroupUUID    string     `json:"snapshot_group_uuid"`
				StorageContainerUUID string     `json:"storage_container_uuid"`
				MinimumSize          int64      `json:"minimum_size"`
			} `json:"clone_config"`
		} `json:"disk_list"`
	}
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var specs []vgDiskSpec
	for i, d := range in.DiskList {
		var ds vgDiskSpec
		switch {
		case d.CloneConfig != nil:
			var err error
			if ds, err = s.resolveClone(d.CloneConfig.DiskAddress, d.CloneConfig.SnapshotGroupUUID); err != nil {
				s.writeErr(w, r, err)
				return
			}
			ds.Size = d.CloneConfig.MinimumSize
		case d.CreateConfig != nil:
			ds = vgDiskSpec{Index: -1, Size: d.CreateConfig.Size, ContainerUUID: d.CreateConfig.StorageContainerUUID}
			if d.CreateConfig.Size <= 0 {
				v2Error(w, http.StatusBadRequest, fmt.Sprintf("disk_list[%d].create_config.size must be positive", i))
				return
			}
			if c := ds.ContainerUUID; c != "" && s.m.containerByUUID(c) == nil {
				v2Error(w, http.StatusNotFound, "Storage container "+c+" does not exist")
				return
			}
		default:
			v2Error(w, http.StatusBadRequest, fmt.Sprintf("disk_list[%d] needs create_config or clone_config", i))
			return
		}
		if d.Index != nil {
			ds.Index = *d.Index
		}
		specs = append(specs, ds)
	}
	if in.UUID != "" && s.m.VGs[in.UUID] != nil {
		v2Error(w, http.StatusConflict, "Volume group "+in.UUID+" already exists")
		return
	}
	fail := s.taskFailure("VolumeGroupCreate")
	id := simkit.NewUUID()
	if in.UUID != "" {
		id = in.UUID
	}
	if fail == "" {
		// A PE has one cluster; the simulator's v2 plays cluster-a unless
		// the disks name a container of another cluster.
		cluster := ""
		for _, ds := range specs {
			if c := s.m.containerByUUID(ds.ContainerUUID); c != nil && cluster == "" {
				cluster = c.ClusterUUID
			}
		}
		g, err := s.createVGLocked(in.Name, in.Description, cluster, in.UsageType, "v2", specs)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		if in.UUID != "" {
			delete(s.m.VGs, g.UUID)
			g.TargetName = strings.Replace(g.TargetName, g.UUID, in.UUID, 1)
			// Disk files stay under the generated uuid's directory.
			g.UUID = in.UUID
			s.m.VGs[g.UUID] = g
		}
		g.TargetSecret = chapSecret(in.EnabledAuthentications)
		for _, c := range in.AttachedClients {
			iqn, ip := clientAddr(c.ClientAddress)
			if _, err := s.attachClientLocked(g, iqn, ip, chapSecret(c.EnabledAuthentications)); err != nil {
				s.writeErr(w, r, err)
				return
			}
		}
		id = g.UUID
	}
	t := s.startTask("VolumeGroupCreate", "", []taskEntity{{Kind: "volume_group", UUID: id, Name: in.Name}}, fail, nil)
	s.save()
	v2TaskID(w, t)
}

// clientAddr splits a v2 client_address into an IQN or an IP.
func clientAddr(a string) (iqn, ip string) {
	if strings.HasPrefix(a, "iqn.") || strings.HasPrefix(a, "eui.") || strings.HasPrefix(a, "naa.") {
		return a, ""
	}
	return "", a
}

type v2AttachIn struct {
	UUID             string    `json:"uuid"`
	Operation        string    `json:"operation"`
	IscsiClient      *v2Client `json:"iscsi_client"`
	IscsiClientIP    string    `json:"iscsi_client_ip"`
	LogicalTimestamp int64     `json:"logical_timestamp"`
}

func (s *Sim) v2OpenVG(w http.ResponseWriter, r *http.Request)  { s.v2AttachExternal(w, r, true) }
func (s *Sim) v2CloseVG(w http.ResponseWriter, r *http.Request) { s.v2AttachExternal(w, r, false) }

func (s *Sim) v2AttachExternal(w http.ResponseWriter, r *http.Request, attach bool) {
	var in v2AttachIn
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	addr, secret := in.IscsiClientIP, ""
	if in.IscsiClient != nil {
		addr = in.IscsiClient.ClientAddress
		secret = chapSecret(in.IscsiClient.EnabledAuthentications)
	}
	if addr == "" {
		v2Error(w, http.StatusBadRequest, "iscsi_client.client_address is required")
		return
	}
	withPath(s, w, r, "uuid", "Volume group %s does not exist", byID(s.m.VGs), func(g *volumeGroup) {
		if in.LogicalTimestamp > 0 && in.LogicalTimestamp != g.Version {
			v2Error(w, http.StatusConflict, fmt.Sprintf("logical_timestamp %d does not match the volume group's %d", in.LogicalTimestamp, g.Version))
			return
		}
		iqn, ip := clientAddr(addr)
		if attach {
			if _, err := s.attachClientLocked(g, iqn, ip, secret); err != nil {
				s.writeErr(w, r, err)
				return
			}
		} else {
			var cid string
			for _, id := range g.Clients {
				if c := s.m.ISCSIClients[id]; c != nil && ((iqn != "" && c.IQN == iqn) || (iqn == "" && c.IP == ip)) {
					cid = id
				}
			}
			if cid == "" {
				v2Error(w, http.StatusNotFound, "iSCSI client "+addr+" is not attached to volume group "+g.UUID)
				return
			}
			if err := s.detachClientLocked(g, cid); err != nil {
				s.writeErr(w, r, err)
				return
			}
		}
		s.save()
		simkit.WriteJSON(w, http.StatusOK, obj{"value": true})
	})
}

func (s *Sim) v2DeleteVG(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Volume group %s does not exist", byID(s.m.VGs), func(g *volumeGroup) {
		t := s.startTask("VolumeGroupDelete", g.ClusterUUID, []taskEntity{{Kind: "volume_group", UUID: g.UUID, Name: g.Name}},
			s.taskFailure("VolumeGroupDelete"), func() {
				if err := s.deleteVGLocked(g); err != nil {
					s.logf("delete volume group %s: %v", g.UUID, err)
				}
			})
		v2TaskID(w, t)
	})
}

// v2ListContainers serves GET /storage_containers/ (ContainerDTO): the
// containers of every simulated PE cluster, with their cluster_uuid.
func (s *Sim) v2ListContainers(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ents []obj
	for _, c := range s.m.Containers {
		e := obj{"storage_container_uuid": c.UUID, "id": c.UUID, "name": c.Name, "cluster_uuid": c.ClusterUUID,
			"replication_factor": 2, "vstore_name_list": []string{c.Name}}
		maps.Copy(e, s.v2ContainerUsage(c))
		ents = append(ents, e)
	}
	simkit.WriteJSON(w, http.StatusOK, v2Collection(ents))
}
