package prismsim

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- VMs ----------

func (s *Sim) v3VMResources(v *vm, status bool) obj {
	disks := []obj{}
	for _, d := range v.Disks {
		ctr := s.m.containerByUUID(d.ContainerUUID)
		o := obj{
			"uuid":            d.UUID,
			"disk_size_bytes": d.Size,
			"disk_size_mib":   (d.Size + (1 << 20) - 1) >> 20,
			"device_properties": obj{"device_type": d.DeviceType,
				"disk_address": obj{"adapter_type": d.Bus, "device_index": d.Index}},
		}
		if ctr != nil {
			o["storage_config"] = obj{"storage_container_reference": ref("storage_container", ctr.UUID, ctr.Name)}
		}
		if d.SourceKind == "image" || d.SourceKind == "vm_disk" {
			o["data_source_reference"] = ref(d.SourceKind, d.SourceUUID, "")
		}
		if status {
			o["is_migration_in_progress"] = false
		}
		disks = append(disks, o)
	}
	nics := []obj{}
	for _, n := range v.NICs {
		name := ""
		if sub := s.m.subnetByUUID(n.SubnetUUID); sub != nil {
			name = sub.Name
		}
		nics = append(nics, obj{"uuid": n.UUID, "nic_type": "NORMAL_NIC", "vlan_mode": "ACCESS",
			"mac_address": n.MAC, "model": n.Model, "subnet_reference": ref("subnet", n.SubnetUUID, name),
			"is_connected": true, "trunked_vlan_list": []int{}, "ip_endpoint_list": []obj{}, "num_queues": 1})
	}
	res := obj{
		"num_sockets":             v.NumSockets,
		"num_vcpus_per_socket":    v.VCPUsPerSocket,
		"num_threads_per_core":    v.ThreadsPerCore,
		"memory_size_mib":         v.MemoryMiB,
		"power_state":             v.PowerState,
		"machine_type":            v.MachineType,
		"boot_config":             obj{"boot_type": v.BootType, "boot_device_order_list": []string{"CDROM", "DISK", "NETWORK"}},
		"disk_list":               disks,
		"nic_list":                nics,
		"gpu_list":                []obj{},
		"serial_port_list":        []obj{},
		"hardware_clock_timezone": "UTC",
		"is_agent_vm":             false,
		"enable_cpu_passthrough":  false,
		"vga_console_enabled":     true,
		"vnuma_config":            obj{"num_vnuma_nodes": 0},
		"power_state_mechanism":   obj{"mechanism": "HARD"},
	}
	if status {
		res["hypervisor_type"] = "AHV"
		res["protection_type"] = "UNPROTECTED"
		if v.NGT == NGTInstalled || v.NGT == NGTVSS {
			caps := []string{"SELF_SERVICE_RESTORE"}
			if v.NGT == NGTVSS {
				caps = append(caps, "VSS_SNAPSHOT")
			}
			res["guest_tools"] = obj{"nutanix_guest_tools": obj{
				"ngt_state": "INSTALLED", "state": "ENABLED", "iso_mount_state": "UNMOUNTED",
				"version": "4.1", "available_version": "4.1", "enabled_capability_list": caps,
				"vss_snapshot_capable": v.NGT == NGTVSS, "is_reachable": v.PowerState == "ON",
				"vm_mobility_drivers_installed": true, "guest_os_version": "linux:64:Debian-12",
			}}
		}
	} else if v.NGT == NGTInstalled || v.NGT == NGTVSS {
		caps := []string{"SELF_SERVICE_RESTORE"}
		if v.NGT == NGTVSS {
			caps = append(caps, "VSS_SNAPSHOT")
		}
		res["guest_tools"] = obj{"nutanix_guest_tools": obj{"state": "ENABLED", "iso_mount_state": "UNMOUNTED",
			"enabled_capability_list": caps}}
	}
	return res
}

func (s *Sim) v3VM(v *vm) obj {
	cl := s.m.clusterByUUID(v.ClusterUUID)
	cref := ref("cluster", cl.UUID, cl.Name)
	spec := obj{"name": v.Name, "resources": s.v3VMResources(v, false), "cluster_reference": cref}
	status := obj{"name": v.Name, "state": v.State, "resources": s.v3VMResources(v, true), "cluster_reference": cref}
	if v.Description != "" {
		spec["description"] = v.Description
		status["description"] = v.Description
	}
	res := status["resources"].(obj)
	res["generation_uuid"] = v.GenerationUUID
	res["bios_uuid"] = v.UUID
	meta := v3Meta("vm", v.UUID, v.SpecVersion, v.Created, v.Updated)
	meta["entity_version"] = "1"
	v3VMCategories(meta, v)
	return obj{"api_version": "3.1", "metadata": meta, "spec": spec, "status": status}
}

func (s *Sim) v3ListVMs(w http.ResponseWriter, r *http.Request) {
	v3List(s, w, r, "vm", s.v3SortedVMs, func(v *vm, k string) string {
		cl := s.m.clusterByUUID(v.ClusterUUID)
		switch k {
		case "vm_name", "name":
			return v.Name
		case "power_state":
			return strings.ToLower(v.PowerState)
		case "cluster_name":
			return cl.Name
		case "cluster_uuid", "cluster":
			return cl.UUID
		case "uuid", "vm_uuid":
			return v.UUID
		}
		return ""
	}, s.v3VM)
}

// v3SortedVMs orders the VMs as a list request asks (by creation, or by
// name ascending or descending).
func (s *Sim) v3SortedVMs(q listReq) []*vm {
	all := s.m.sortedVMs()
	if q.SortAttribute == "name" || q.SortAttribute == "vm_name" {
		slices.SortStableFunc(all, func(a, b *vm) int { return strings.Compare(a.Name, b.Name) })
		if q.SortOrder == "DESCENDING" {
			slices.Reverse(all)
		}
	}
	return all
}

func (s *Sim) v3GetVM(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "VM %s not found", byID(s.m.VMs), func(v *vm) {
		simkit.WriteJSON(w, http.StatusOK, s.v3VM(v))
	})
}

type v3Ref struct {
	Kind string `json:"kind"`
	UUID string `json:"uuid"`
	Name string `json:"name"`
}

type v3DiskIn struct {
	UUID             string `json:"uuid"`
	DiskSizeBytes    int64  `json:"disk_size_bytes"`
	DiskSizeMib      int64  `json:"disk_size_mib"`
	DeviceProperties *struct {
		DeviceType  string `json:"device_type"`
		DiskAddress *struct {
			AdapterType string `json:"adapter_type"`
			DeviceIndex *int   `json:"device_index"`
		} `json:"disk_address"`
	} `json:"device_properties"`
	DataSourceReference  *v3Ref `json:"data_source_reference"`
	VolumeGroupReference *v3Ref `json:"volume_group_reference"`
	StorageConfig        *struct {
		StorageContainerReference *v3Ref `json:"storage_container_reference"`
	} `json:"storage_config"`
}

type v3VMIn struct {
	APIVersion string `json:"api_version"`
	Metadata   struct {
		Kind        string `json:"kind"`
		UUID        string `json:"uuid"`
		SpecVersion *int64 `json:"spec_version"`
	} `json:"metadata"`
	Spec *struct {
		Name             string `json:"name"`
		Description      string `json:"description"`
		ClusterReference *v3Ref `json:"cluster_reference"`
		Resources        struct {
			PowerState          string `json:"power_state"`
			PowerStateMechanism *struct {
				Mechanism string `json:"mechanism"` // HARD, ACPI, GUEST
			} `json:"power_state_mechanism"`
			NumSockets        int    `json:"num_sockets"`
			NumVcpusPerSocket int    `json:"num_vcpus_per_socket"`
			NumThreadsPerCore int    `json:"num_threads_per_core"`
			MemorySizeMib     int64  `json:"memory_size_mib"`
			MachineType       string `json:"machine_type"`
			BootConfig        *struct {
				BootType string `json:"boot_type"`
			} `json:"boot_config"`
			DiskList []v3DiskIn `json:"disk_list"`
			NicList  []struct {
				SubnetReference *v3Ref `json:"subnet_reference"`
				MacAddress      string `json:"mac_address"`
				Model           string `json:"model"`
			} `json:"nic_list"`
		} `json:"resources"`
	} `json:"spec"`
}

func (s *Sim) v3DiskSpec(d v3DiskIn) (diskSpec, *apiErr) {
	ds := diskSpec{Index: -1, Size: d.DiskSizeBytes}
	if ds.Size == 0 {
		ds.Size = d.DiskSizeMib << 20
	}
	if dp := d.DeviceProperties; dp != nil {
		ds.DeviceType = dp.DeviceType
		if da := dp.DiskAddress; da != nil {
			ds.Bus = da.AdapterType
			if da.DeviceIndex != nil {
				ds.Index = *da.DeviceIndex
			}
		}
	}
	if d.VolumeGroupReference != nil {
		return ds, errInvalid("attaching volume groups to VMs is not simulated; clone the VG disk with data_source_reference kind vm_disk")
	}
	if src := d.DataSourceReference; src != nil {
		switch src.Kind {
		case "image", "vm_disk":
			ds.SourceKind, ds.SourceUUID = src.Kind, src.UUID
		default:
			return ds, errInvalid("data_source_reference kind %q is not supported (image, vm_disk)", src.Kind)
		}
	}
	if sc := d.StorageConfig; sc != nil && sc.StorageContainerReference != nil {
		if s.m.containerByUUID(sc.StorageContainerReference.UUID) == nil {
			return ds, errNotFound("storage container %s not found", sc.StorageContainerReference.UUID)
		}
		ds.Container = sc.StorageContainerReference.UUID
	}
	return ds, nil
}

func (s *Sim) v3CreateVM(w http.ResponseWriter, r *http.Request) {
	var in v3VMIn
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	if in.Spec == nil {
		v3Error(w, http.StatusUnprocessableEntity, "vm", "VALIDATION_ERROR", "spec is a required property")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := in.Spec.Resources
	sp := vmSpec{Name: in.Spec.Name, Description: in.Spec.Description, PowerState: rs.PowerState,
		NumSockets: rs.NumSockets, VCPUsPerSocket: rs.NumVcpusPerSocket, ThreadsPerCore: rs.NumThreadsPerCore,
		MemoryMiB: rs.MemorySizeMib, MachineType: rs.MachineType}
	if rs.PowerState == "" {
		sp.PowerState = "OFF"
	}
	if rs.BootConfig != nil {
		sp.BootType = rs.BootConfig.BootType
	}
	if in.Spec.ClusterReference != nil {
		sp.ClusterUUID = in.Spec.ClusterReference.UUID
	}
	for _, d := range rs.DiskList {
		ds, err := s.v3DiskSpec(d)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		sp.Disks = append(sp.Disks, ds)
	}
	for _, n := range rs.NicList {
		if n.SubnetReference == nil {
			v3Error(w, http.StatusUnprocessableEntity, "vm", "VALIDATION_ERROR", "nic_list[].subnet_reference is required")
			return
		}
		sp.NICs = append(sp.NICs, nicSpec{SubnetUUID: n.SubnetReference.UUID, MAC: n.MacAddress, Model: n.Model})
	}
	t, v, id, err := s.createVMTaskLocked("VmCreate", sp)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.save()
	meta := obj{"kind": "vm", "uuid": id, "spec_version": 0, "use_categories_mapping": false}
	var specOut obj
	if v != nil {
		specOut = s.v3VM(v)["spec"].(obj)
	}
	v3Accepted(w, meta, specOut, t, "PENDING")
}

func (s *Sim) v3UpdateVM(w http.ResponseWriter, r *http.Request) {
	var in v3VMIn
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	withPath(s, w, r, "uuid", "VM %s not found", byID(s.m.VMs), func(v *vm) {
		if in.Spec == nil || in.Metadata.SpecVersion == nil {
			v3Error(w, http.StatusUnprocessableEntity, "vm", "VALIDATION_ERROR", "spec and metadata.spec_version are required")
			return
		}
		if *in.Metadata.SpecVersion != v.SpecVersion {
			v3Error(w, http.StatusConflict, "vm", "CONCURRENT_REQUESTS_NOT_ALLOWED",
				"Edit conflict: please retry change. Entity CAS version mismatch.")
			return
		}
		rs := in.Spec.Resources
		if ps := strings.ToUpper(rs.PowerState); ps != "" && ps != "ON" && ps != "OFF" {
			v3Error(w, http.StatusUnprocessableEntity, "vm", "VALIDATION_ERROR", "power_state must be ON or OFF")
			return
		}
		mech := "HARD"
		if rs.PowerStateMechanism != nil && rs.PowerStateMechanism.Mechanism != "" {
			mech = strings.ToUpper(rs.PowerStateMechanism.Mechanism)
		}
		switch {
		case mech != "HARD" && mech != "ACPI" && mech != "GUEST":
			v3Error(w, http.StatusUnprocessableEntity, "vm", "VALIDATION_ERROR", "power_state_mechanism.mechanism must be HARD, ACPI or GUEST")
			return
		case mech == "GUEST" && (v.NGT == NGTAbsent || v.NGT == ""):
			v3Error(w, http.StatusUnprocessableEntity, "vm", "VALIDATION_ERROR", "Guest power operations need Nutanix Guest Tools")
			return
		}
		fail := s.taskFailure("VmUpdate")
		t := s.startTask("VmUpdate", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}}, fail, func() {
			if in.Spec.Name != "" {
				v.Name = in.Spec.Name
			}
			v.Description = in.Spec.Description
			// A soft power-off asks the guest, which may not heed it.
			if ps := strings.ToUpper(rs.PowerState); ps != "" && !(ps == "OFF" && mech != "HARD" && v.GuestHung) {
				v.PowerState = ps
			}
			if rs.NumSockets > 0 {
				v.NumSockets = rs.NumSockets
			}
			if rs.NumVcpusPerSocket > 0 {
				v.VCPUsPerSocket = rs.NumVcpusPerSocket
			}
			if rs.MemorySizeMib > 0 {
				v.MemoryMiB = rs.MemorySizeMib
			}
			v.Updated = time.Now()
		})
		if fail == "" {
			v.SpecVersion++
		}
		s.save()
		meta := obj{"kind": "vm", "uuid": v.UUID, "spec_version": v.SpecVersion, "use_categories_mapping": false}
		v3Accepted(w, meta, s.v3VM(v)["spec"].(obj), t, "PENDING")
	})
}

func (s *Sim) v3DeleteVM(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "VM %s not found", byID(s.m.VMs), func(v *vm) {
		t := s.startTask("VmDelete", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}},
			s.taskFailure("VmDelete"), func() { s.deleteVMLocked(v) })
		v3Accepted(w, obj{"kind": "vm"}, nil, t, "DELETE_PENDING")
	})
}
