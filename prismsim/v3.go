package prismsim

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (s *Sim) routesV3(mux *http.ServeMux) {
	p := v3Prefix
	mux.HandleFunc("GET "+p+"/users/me", s.v3UsersMe)
	mux.HandleFunc("POST "+p+"/vms/list", s.v3ListVMs)
	mux.HandleFunc("POST "+p+"/vms", s.v3CreateVM)
	mux.HandleFunc("GET "+p+"/vms/{uuid}", s.v3GetVM)
	mux.HandleFunc("PUT "+p+"/vms/{uuid}", s.v3UpdateVM)
	mux.HandleFunc("DELETE "+p+"/vms/{uuid}", s.v3DeleteVM)
	mux.HandleFunc("POST "+p+"/clusters/list", s.v3ListClusters)
	mux.HandleFunc("GET "+p+"/clusters/{uuid}", s.v3GetCluster)
	mux.HandleFunc("POST "+p+"/subnets/list", s.v3ListSubnets)
	mux.HandleFunc("GET "+p+"/subnets/{uuid}", s.v3GetSubnet)
	mux.HandleFunc("GET "+p+"/tasks/{uuid}", s.v3GetTask)
	mux.HandleFunc("POST "+p+"/tasks/poll", s.v3PollTasks)
	mux.HandleFunc("POST "+p+"/tasks/list", s.v3ListTasks)
	mux.HandleFunc("POST "+p+"/vm_snapshots", s.v3CreateSnapshot)
	mux.HandleFunc("POST "+p+"/vm_snapshots/list", s.v3ListSnapshots)
	mux.HandleFunc("GET "+p+"/vm_snapshots/{uuid}", s.v3GetSnapshot)
	mux.HandleFunc("DELETE "+p+"/vm_snapshots/{uuid}", s.v3DeleteSnapshot)
	mux.HandleFunc("POST "+p+"/data/changed_regions", s.v3ChangedRegions)
	mux.HandleFunc("POST "+p+"/images", s.v3CreateImage)
	mux.HandleFunc("POST "+p+"/images/list", s.v3ListImages)
	mux.HandleFunc("GET "+p+"/images/{uuid}", s.v3GetImage)
	mux.HandleFunc("DELETE "+p+"/images/{uuid}", s.v3DeleteImage)
	mux.HandleFunc("PUT "+p+"/images/{uuid}/file", s.imageUpload)
	mux.HandleFunc("GET "+p+"/images/{uuid}/file", s.imageDownload)
}

// ---------- common v3 pieces ----------

type listReq struct {
	Kind          string `json:"kind"`
	Offset        *int   `json:"offset"`
	Length        *int   `json:"length"`
	Filter        string `json:"filter"`
	SortAttribute string `json:"sort_attribute"`
	SortOrder     string `json:"sort_order"`
}

const (
	v3DefaultLength = 20
	v3MaxLength     = 500
)

// page applies offset/length to n items and returns the slice bounds and the
// list metadata.
func (q listReq) page(kind string, n int) (lo, hi int, meta obj, err *apiErr) {
	off, length := 0, v3DefaultLength
	if q.Offset != nil {
		off = *q.Offset
	}
	if q.Length != nil {
		length = *q.Length
	}
	if off < 0 {
		return 0, 0, nil, errInvalid("offset %d must be >= 0", off)
	}
	if length < 1 {
		return 0, 0, nil, errInvalid("length %d must be >= 1", length)
	}
	length = min(length, v3MaxLength)
	lo, hi = min(off, n), min(off+length, n)
	meta = obj{"kind": kind, "total_matches": n, "offset": off, "length": hi - lo}
	if q.Filter != "" {
		meta["filter"] = q.Filter
	}
	if q.SortAttribute != "" {
		meta["sort_attribute"] = q.SortAttribute
	}
	if q.SortOrder != "" {
		meta["sort_order"] = q.SortOrder
	}
	return lo, hi, meta, nil
}

// fiqlMatch evaluates a simple FIQL filter ("a==x;b==y", also "=cs=" for
// contains and "!=") against attribute values.
func fiqlMatch(filter string, attr func(string) string) bool {
	if filter == "" {
		return true
	}
	for _, term := range strings.Split(filter, ";") {
		ok := false
		for _, alt := range strings.Split(term, ",") {
			var k, v, op string
			for _, o := range []string{"==", "!=", "=cs="} {
				if i := strings.Index(alt, o); i > 0 {
					k, v, op = alt[:i], alt[i+len(o):], o
					break
				}
			}
			if op == "" {
				continue
			}
			if uv, err := url.QueryUnescape(v); err == nil {
				v = uv
			}
			got := attr(strings.TrimSpace(k))
			switch op {
			case "==":
				ok = ok || got == v
			case "!=":
				ok = ok || got != v
			case "=cs=":
				ok = ok || strings.Contains(got, v)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func v3Meta(kind, uuid string, specVersion int64, created, updated time.Time) obj {
	return obj{
		"kind":               kind,
		"uuid":               uuid,
		"spec_version":       specVersion,
		"spec_hash":          "00000000000000000000000000000000000000000000000000",
		"categories":         obj{},
		"categories_mapping": obj{},
		"creation_time":      rfc3339(created),
		"last_update_time":   rfc3339(updated),
		"owner_reference":    obj{"kind": "user", "uuid": "00000000-0000-0000-0000-000000000000", "name": "admin"},
	}
}

func ref(kind, uuid, name string) obj {
	o := obj{"kind": kind, "uuid": uuid}
	if name != "" {
		o["name"] = name
	}
	return o
}

// accepted answers a v3 mutation: 202 with status PENDING and the task.
func v3Accepted(w http.ResponseWriter, meta, spec obj, t *task, state string) {
	o := obj{"api_version": "3.1", "metadata": meta,
		"status": obj{"state": state, "execution_context": obj{"task_uuid": t.UUID}}}
	if spec != nil {
		o["spec"] = spec
	} else {
		o["spec"] = ""
	}
	writeJSON(w, http.StatusAccepted, o)
}

func (s *Sim) v3UsersMe(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, obj{"api_version": "3.1",
		"metadata": v3Meta("user", "00000000-0000-0000-0000-000000000000", 0, time.Unix(0, 0), time.Unix(0, 0)),
		"spec":     obj{"resources": obj{}},
		"status":   obj{"name": "admin", "state": "COMPLETE", "resources": obj{"username": "admin", "user_type": "LOCAL"}}})
}

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
	return obj{"api_version": "3.1", "metadata": meta, "spec": spec, "status": status}
}

func (s *Sim) v3ListVMs(w http.ResponseWriter, r *http.Request) {
	var q listReq
	if !s.decodeJSON(w, r, &q, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*vm
	for _, v := range s.m.sortedVMs() {
		cl := s.m.clusterByUUID(v.ClusterUUID)
		if fiqlMatch(q.Filter, func(k string) string {
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
		}) {
			all = append(all, v)
		}
	}
	if q.SortAttribute == "name" || q.SortAttribute == "vm_name" {
		slices.SortStableFunc(all, func(a, b *vm) int { return strings.Compare(a.Name, b.Name) })
		if q.SortOrder == "DESCENDING" {
			slices.Reverse(all)
		}
	}
	lo, hi, meta, err := q.page("vm", len(all))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ents := []obj{}
	for _, v := range all[lo:hi] {
		e := s.v3VM(v)
		delete(e, "api_version")
		ents = append(ents, e)
	}
	writeJSON(w, http.StatusOK, obj{"api_version": "3.1", "metadata": meta, "entities": ents})
}

func (s *Sim) v3GetVM(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("uuid")]
	if v == nil {
		v3Error(w, http.StatusNotFound, "vm", "ENTITY_NOT_FOUND", "VM "+r.PathValue("uuid")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, s.v3VM(v))
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
			PowerState        string `json:"power_state"`
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
	fail := s.taskFailure("VmCreate")
	var v *vm
	if fail == "" {
		var err error
		if v, err = s.createVMLocked(sp); err != nil {
			s.writeErr(w, r, err)
			return
		}
	}
	id := newUUID()
	if v != nil {
		id = v.UUID
	}
	t := s.startTask("VmCreate", sp.ClusterUUID, []taskEntity{{Kind: "vm", UUID: id, Name: sp.Name}}, fail, func() {
		if v != nil {
			v.State = "COMPLETE"
		}
	})
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
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("uuid")]
	if v == nil {
		v3Error(w, http.StatusNotFound, "vm", "ENTITY_NOT_FOUND", "VM "+r.PathValue("uuid")+" not found")
		return
	}
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
	fail := s.taskFailure("VmUpdate")
	t := s.startTask("VmUpdate", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}}, fail, func() {
		if in.Spec.Name != "" {
			v.Name = in.Spec.Name
		}
		v.Description = in.Spec.Description
		if ps := strings.ToUpper(rs.PowerState); ps != "" {
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
}

func (s *Sim) v3DeleteVM(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[r.PathValue("uuid")]
	if v == nil {
		v3Error(w, http.StatusNotFound, "vm", "ENTITY_NOT_FOUND", "VM "+r.PathValue("uuid")+" not found")
		return
	}
	t := s.startTask("VmDelete", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}},
		s.taskFailure("VmDelete"), func() { s.deleteVMLocked(v) })
	v3Accepted(w, obj{"kind": "vm"}, nil, t, "DELETE_PENDING")
}

// ---------- clusters and subnets ----------

func (s *Sim) v3Cluster(c *cluster) obj {
	network := obj{
		"external_ip":         s.host,
		"external_subnet":     "127.0.0.0/255.0.0.0",
		"internal_subnet":     "192.168.5.0/255.255.255.128",
		"name_server_ip_list": []string{"127.0.0.53"},
		"ntp_server_ip_list":  []string{"0.pool.ntp.org"},
	}
	services := []string{"AOS"}
	build := obj{"build_type": "release", "version": "7.3.1.5", "full_version": "el8.5-release-ganges-7.3.1.5-stable-prismsim",
		"commit_id": "0000000000000000000000000000000000000000", "short_commit_id": "000000", "is_long_term_support": false}
	if c.PC {
		services = []string{"PRISM_CENTRAL"}
		network["fully_qualified_domain_name"] = "localhost"
		build["version"] = "pc"
		build["full_version"] = "el8.5-release-fraser-2024.3-stable-pc-prismsim"
	} else {
		network["external_data_services_ip"] = s.DataServicesIP()
		network["nfs_subnet_whitelist"] = []string{}
	}
	config := obj{
		"service_list":      services,
		"build":             build,
		"is_available":      true,
		"timezone":          "UTC",
		"redundancy_factor": 2,
		"operation_mode":    "NORMAL",
		"cluster_arch":      "X86_64",
		"encryption_status": "NOT_SUPPORTED",
		"software_map":      obj{"NOS": obj{"software_type": "NOS", "status": "INSTALLED", "version": build["version"]}},
	}
	resources := obj{"config": config, "network": network}
	if !c.PC {
		resources["nodes"] = obj{"hypervisor_server_list": []obj{{"ip": s.host, "type": "AHV", "version": "el8.nutanix.20230302.101026"}}}
	}
	specRes := obj{"config": obj{"timezone": "UTC", "redundancy_factor": 2, "operation_mode": "NORMAL",
		"encryption_status": "NOT_SUPPORTED"}, "network": network}
	t0 := time.Unix(1700000000, 0)
	return obj{
		"metadata": v3Meta("cluster", c.UUID, 1, t0, t0),
		"spec":     obj{"name": c.Name, "resources": specRes},
		"status":   obj{"name": c.Name, "state": "COMPLETE", "resources": resources},
	}
}

func (s *Sim) v3ListClusters(w http.ResponseWriter, r *http.Request) {
	var q listReq
	if !s.decodeJSON(w, r, &q, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*cluster
	for _, c := range s.m.Clusters {
		if fiqlMatch(q.Filter, func(k string) string {
			if k == "name" || k == "cluster_name" {
				return c.Name
			}
			return ""
		}) {
			all = append(all, c)
		}
	}
	lo, hi, meta, err := q.page("cluster", len(all))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ents := []obj{}
	for _, c := range all[lo:hi] {
		ents = append(ents, s.v3Cluster(c))
	}
	writeJSON(w, http.StatusOK, obj{"api_version": "3.1", "metadata": meta, "entities": ents})
}

func (s *Sim) v3GetCluster(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m.clusterByUUID(r.PathValue("uuid"))
	if c == nil {
		v3Error(w, http.StatusNotFound, "cluster", "ENTITY_NOT_FOUND", "Cluster "+r.PathValue("uuid")+" not found")
		return
	}
	o := s.v3Cluster(c)
	o["api_version"] = "3.1"
	writeJSON(w, http.StatusOK, o)
}

func (s *Sim) v3Subnet(sn *subnet) obj {
	c := s.m.clusterByUUID(sn.ClusterUUID)
	cref := ref("cluster", c.UUID, c.Name)
	third := 10 + sn.VLAN
	ipc := obj{"subnet_ip": "10.0." + itoa(third) + ".0", "prefix_length": 24, "default_gateway_ip": "10.0." + itoa(third) + ".1",
		"pool_list": []obj{{"range": "10.0." + itoa(third) + ".50 10.0." + itoa(third) + ".250"}}}
	res := obj{"subnet_type": "VLAN", "vlan_id": sn.VLAN, "vswitch_name": "br0", "ip_config": ipc}
	t0 := time.Unix(1700000000, 0)
	return obj{
		"metadata": v3Meta("subnet", sn.UUID, 1, t0, t0),
		"spec":     obj{"name": sn.Name, "resources": res, "cluster_reference": cref},
		"status":   obj{"name": sn.Name, "state": "COMPLETE", "resources": res, "cluster_reference": cref},
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func (s *Sim) v3ListSubnets(w http.ResponseWriter, r *http.Request) {
	var q listReq
	if !s.decodeJSON(w, r, &q, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*subnet
	for _, sn := range s.m.Subnets {
		c := s.m.clusterByUUID(sn.ClusterUUID)
		if fiqlMatch(q.Filter, func(k string) string {
			switch k {
			case "name", "subnet_name":
				return sn.Name
			case "cluster_name":
				return c.Name
			case "cluster_uuid":
				return c.UUID
			}
			return ""
		}) {
			all = append(all, sn)
		}
	}
	lo, hi, meta, err := q.page("subnet", len(all))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ents := []obj{}
	for _, sn := range all[lo:hi] {
		ents = append(ents, s.v3Subnet(sn))
	}
	writeJSON(w, http.StatusOK, obj{"api_version": "3.1", "metadata": meta, "entities": ents})
}

func (s *Sim) v3GetSubnet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.m.subnetByUUID(r.PathValue("uuid"))
	if sn == nil {
		v3Error(w, http.StatusNotFound, "subnet", "ENTITY_NOT_FOUND", "Subnet "+r.PathValue("uuid")+" not found")
		return
	}
	o := s.v3Subnet(sn)
	o["api_version"] = "3.1"
	writeJSON(w, http.StatusOK, o)
}

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
	id := newUUID()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.m.Snapshots[r.PathValue("uuid")]
	if sn == nil {
		v3Error(w, http.StatusNotFound, "vm_snapshot", "ENTITY_NOT_FOUND", "VM snapshot "+r.PathValue("uuid")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, s.v3Snapshot(sn))
}

func (s *Sim) v3ListSnapshots(w http.ResponseWriter, r *http.Request) {
	var q listReq
	if !s.decodeJSON(w, r, &q, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*snapshot
	for _, sn := range s.m.sortedSnapshots() {
		if fiqlMatch(q.Filter, func(k string) string {
			switch k {
			case "name":
				return sn.Name
			case "entity_uuid", "vm_uuid":
				return sn.VMUUID
			}
			return ""
		}) {
			all = append(all, sn)
		}
	}
	lo, hi, meta, err := q.page("vm_snapshot", len(all))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ents := []obj{}
	for _, sn := range all[lo:hi] {
		e := s.v3Snapshot(sn)
		delete(e, "api_version")
		ents = append(ents, e)
	}
	writeJSON(w, http.StatusOK, obj{"api_version": "3.1", "metadata": meta, "entities": ents})
}

func (s *Sim) v3DeleteSnapshot(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.m.Snapshots[r.PathValue("uuid")]
	if sn == nil {
		v3Error(w, http.StatusNotFound, "vm_snapshot", "ENTITY_NOT_FOUND", "VM snapshot "+r.PathValue("uuid")+" not found")
		return
	}
	v := s.m.VMs[sn.VMUUID]
	cu := ""
	if v != nil {
		cu = v.ClusterUUID
	}
	id := sn.UUID
	t := s.startTask("VmSnapshotDelete", cu, []taskEntity{{Kind: "vm_snapshot", UUID: id, Name: sn.Name}},
		s.taskFailure("VmSnapshotDelete"), func() { s.removeSnapshotLocked(id) })
	v3Accepted(w, obj{"kind": "vm_snapshot"}, nil, t, "DELETE_PENDING")
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
	writeJSON(w, http.StatusOK, out)
}

// ---------- images ----------

func (s *Sim) v3Image(im *image) obj {
	c := s.m.clusterByUUID(im.ClusterUUID)
	specRes := obj{"image_type": im.Type}
	if im.SourceURI != "" {
		specRes["source_uri"] = im.SourceURI
	}
	statusRes := obj{"image_type": im.Type, "size_bytes": im.Size,
		"retrieval_uri_list":             []string{s.url + v3Prefix + "/images/" + im.UUID + "/file"},
		"current_cluster_reference_list": []obj{ref("cluster", c.UUID, c.Name)}}
	if im.SourceURI != "" {
		statusRes["source_uri"] = im.SourceURI
	}
	spec := obj{"name": im.Name, "resources": specRes}
	status := obj{"name": im.Name, "state": im.State, "resources": statusRes}
	if im.Description != "" {
		spec["description"] = im.Description
		status["description"] = im.Description
	}
	return obj{"api_version": "3.1", "metadata": v3Meta("image", im.UUID, im.SpecVersion, im.Created, im.Created),
		"spec": spec, "status": status}
}

type imageIn struct {
	Name        string
	Description string
	Type        string
	SourceURI   string
	SourceKind  string // "", vm_disk
	SourceUUID  string
	ClusterUUID string
}

// createImageLocked creates an image; a data source is copied now.
func (s *Sim) createImageLocked(in imageIn) (*image, error) {
	if in.Name == "" {
		return nil, errInvalid("image name is required")
	}
	typ := in.Type
	if typ == "" {
		typ = "DISK_IMAGE"
	}
	if typ != "DISK_IMAGE" && typ != "ISO_IMAGE" {
		return nil, errInvalid("image_type %q is not DISK_IMAGE or ISO_IMAGE", typ)
	}
	cu := in.ClusterUUID
	if cu == "" || s.m.clusterByUUID(cu) == nil || s.m.clusterByUUID(cu).PC {
		cu = s.m.Clusters[1].UUID
	}
	im := &image{UUID: newUUID(), Name: in.Name, Description: in.Description, Type: typ, State: "PENDING",
		ClusterUUID: cu, Created: time.Now(), SourceURI: in.SourceURI}
	im.File = filepath.Join("images", im.UUID+".raw")
	switch {
	case in.SourceKind == "vm_disk":
		f, _, ok := s.m.diskFileByUUID(in.SourceUUID)
		if !ok {
			return nil, errNotFound("vm disk %s not found", in.SourceUUID)
		}
		if err := copyDisk(s.abs(im.File), s.abs(f), 0); err != nil {
			return nil, err
		}
		im.Uploaded = true
	case in.SourceKind != "":
		return nil, errInvalid("data_source_reference kind %q is not supported (vm_disk)", in.SourceKind)
	case strings.HasPrefix(in.SourceURI, "nfs://"):
		// As on AOS, the image service imports a vDisk of the cluster's own
		// containers by its NFS path, snapshot vDisks included
		// (nfs://127.0.0.1/<container>/.snapshot/.../<vdisk uuid>).
		u, err := url.Parse(in.SourceURI)
		if err != nil {
			return nil, errInvalid("source_uri: %v", err)
		}
		_, sd := s.m.snapDiskByPath(u.Path)
		if sd == nil {
			return nil, errNotFound("source_uri %q: no snapshot vDisk at %s", in.SourceURI, u.Path)
		}
		if err := copyDisk(s.abs(im.File), s.abs(sd.File), 0); err != nil {
			return nil, err
		}
		im.Uploaded = true
	case strings.HasPrefix(in.SourceURI, "file://"):
		if err := copyDisk(s.abs(im.File), strings.TrimPrefix(in.SourceURI, "file://"), 0); err != nil {
			return nil, errInvalid("source_uri: %v", err)
		}
		im.Uploaded = true
	case in.SourceURI != "":
		return nil, errInvalid("source_uri %q: the simulator fetches file:// URIs only; upload with PUT /images/{uuid}/file", in.SourceURI)
	}
	if im.Uploaded {
		sz, _ := fileSize(s.abs(im.File))
		im.Size = sz
	}
	s.m.Images[im.UUID] = im
	return im, nil
}

func (s *Sim) v3CreateImage(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Spec *struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			Resources   struct {
				ImageType               string  `json:"image_type"`
				SourceURI               string  `json:"source_uri"`
				DataSourceReference     *v3Ref  `json:"data_source_reference"`
				InitialPlacementRefList []v3Ref `json:"initial_placement_ref_list"`
			} `json:"resources"`
		} `json:"spec"`
	}
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	if in.Spec == nil {
		v3Error(w, http.StatusUnprocessableEntity, "image", "VALIDATION_ERROR", "spec is a required property")
		return
	}
	ii := imageIn{Name: in.Spec.Name, Description: in.Spec.Description, Type: in.Spec.Resources.ImageType,
		SourceURI: in.Spec.Resources.SourceURI}
	if d := in.Spec.Resources.DataSourceReference; d != nil {
		ii.SourceKind, ii.SourceUUID = d.Kind, d.UUID
	}
	if l := in.Spec.Resources.InitialPlacementRefList; len(l) > 0 {
		ii.ClusterUUID = l[0].UUID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := s.taskFailure("ImageCreate")
	id := newUUID()
	var im *image
	if fail == "" {
		var err error
		if im, err = s.createImageLocked(ii); err != nil {
			s.writeErr(w, r, err)
			return
		}
		id = im.UUID
	}
	t := s.startTask("ImageCreate", ii.ClusterUUID, []taskEntity{{Kind: "image", UUID: id, Name: ii.Name}}, fail, func() {
		if im != nil {
			im.State = "COMPLETE"
		}
	})
	s.save()
	spec := obj{"name": ii.Name, "resources": obj{"image_type": cmpOr(ii.Type, "DISK_IMAGE")}}
	v3Accepted(w, obj{"kind": "image", "uuid": id, "spec_version": 0}, spec, t, "PENDING")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Sim) v3GetImage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.m.Images[r.PathValue("uuid")]
	if im == nil {
		v3Error(w, http.StatusNotFound, "image", "ENTITY_NOT_FOUND", "Image "+r.PathValue("uuid")+" not found")
		return
	}
	writeJSON(w, http.StatusOK, s.v3Image(im))
}

func (s *Sim) v3ListImages(w http.ResponseWriter, r *http.Request) {
	var q listReq
	if !s.decodeJSON(w, r, &q, false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*image
	for _, im := range s.m.sortedImages() {
		if fiqlMatch(q.Filter, func(k string) string {
			if k == "name" {
				return im.Name
			}
			return ""
		}) {
			all = append(all, im)
		}
	}
	lo, hi, meta, err := q.page("image", len(all))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	ents := []obj{}
	for _, im := range all[lo:hi] {
		e := s.v3Image(im)
		delete(e, "api_version")
		ents = append(ents, e)
	}
	writeJSON(w, http.StatusOK, obj{"api_version": "3.1", "metadata": meta, "entities": ents})
}

func (s *Sim) v3DeleteImage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.m.Images[r.PathValue("uuid")]
	if im == nil {
		v3Error(w, http.StatusNotFound, "image", "ENTITY_NOT_FOUND", "Image "+r.PathValue("uuid")+" not found")
		return
	}
	t := s.startTask("ImageDelete", im.ClusterUUID, []taskEntity{{Kind: "image", UUID: im.UUID, Name: im.Name}},
		s.taskFailure("ImageDelete"), func() {
			delete(s.m.Images, im.UUID)
			os.Remove(s.abs(im.File))
		})
	v3Accepted(w, obj{"kind": "image"}, nil, t, "DELETE_PENDING")
}

// imageUpload serves PUT /images/{uuid}/file (v3): the body is the image.
func (s *Sim) imageUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("uuid")
	s.mu.Lock()
	im := s.m.Images[id]
	if im == nil {
		s.mu.Unlock()
		s.notFound(w, r, "Image "+id+" not found")
		return
	}
	if im.Uploaded {
		s.mu.Unlock()
		s.apiError(w, r, http.StatusConflict, "ENTITY_IS_READONLY", "Image "+id+" already has data; an uploaded image cannot be changed")
		return
	}
	dst := s.abs(im.File)
	s.mu.Unlock()

	var h hash.Hash
	switch strings.ToUpper(r.Header.Get("X-Nutanix-Checksum-Type")) {
	case "":
	case "SHA_1", "SHA1":
		h = sha1.New()
	case "SHA_256", "SHA256":
		h = sha256.New()
	default:
		s.apiError(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "unsupported X-Nutanix-Checksum-Type")
		return
	}
	tmp := dst + ".upload"
	f, err := os.Create(tmp)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	var dstW io.Writer = &sparseWriter{f: f}
	if h != nil {
		dstW = io.MultiWriter(dstW, h)
	}
	n, err := io.CopyBuffer(dstW, r.Body, make([]byte, 1<<20))
	if err == nil {
		err = f.Truncate(n)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		s.apiError(w, r, http.StatusBadRequest, "INVALID_REQUEST", "upload: "+err.Error())
		return
	}
	if h != nil {
		want := strings.ToLower(r.Header.Get("X-Nutanix-Checksum-Bytes"))
		if got := hex.EncodeToString(h.Sum(nil)); want != got {
			os.Remove(tmp)
			s.apiError(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "checksum mismatch: got "+got+", header says "+want)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.Images[id] == nil {
		os.Remove(tmp)
		s.notFound(w, r, "Image "+id+" not found")
		return
	}
	if err := os.Rename(tmp, dst); err != nil {
		s.writeErr(w, r, err)
		return
	}
	im.Uploaded, im.Size, im.State = true, n, "COMPLETE"
	im.SpecVersion++
	s.save()
	w.WriteHeader(http.StatusOK)
}

// sparseWriter writes sequentially, leaving holes for all-zero 64 KiB blocks.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (sw *sparseWriter) Write(p []byte) (int, error) {
	const blk = 64 << 10
	for i := 0; i < len(p); i += blk {
		j := min(i+blk, len(p))
		if !allZero(p[i:j]) {
			if _, err := sw.f.WriteAt(p[i:j], sw.off+int64(i)); err != nil {
				return i, err
			}
		}
	}
	sw.off += int64(len(p))
	return len(p), nil
}

// imageDownload serves GET /images/{uuid}/file with Range support.
func (s *Sim) imageDownload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("uuid")
	if id == "" {
		id = r.PathValue("extId")
	}
	s.mu.Lock()
	im := s.m.Images[id]
	var path string
	var mod time.Time
	if im != nil && im.Uploaded {
		path, mod = s.abs(im.File), im.Created
	}
	s.mu.Unlock()
	if im == nil {
		s.notFound(w, r, "Image "+id+" not found")
		return
	}
	if path == "" {
		s.apiError(w, r, http.StatusConflict, "ENTITY_NOT_CONFIGURED", "Image "+id+" has no data yet")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", mod, f)
}
