package xapisim

import (
	"strconv"
	"time"
)

// The XenAPI records of the simulated objects, built from the model with
// their derived fields (a VM's VBDs and snapshots, a VDI's VBDs, an SR's
// VDIs...). Callers hold s.mu.

func (s *Sim) poolRecord() map[string]any {
	p := s.m.Pool
	return map[string]any{
		"uuid": p.UUID, "name_label": p.NameLabel, "name_description": "",
		"master": s.m.Host.Ref, "default_SR": s.m.SR.Ref, "suspend_image_SR": s.m.SR.Ref, "crash_dump_SR": s.m.SR.Ref,
		"other_config": map[string]string{}, "ha_enabled": false, "tags": []string{}, "restrictions": map[string]string{},
		"gui_config": map[string]string{}, "cpu_info": map[string]string{"vendor": "GenuineIntel", "cpu_count": "4", "socket_count": "1"},
		"wlb_enabled": false, "redo_log_enabled": false, "blobs": map[string]string{}, "allowed_operations": []string{},
		"current_operations": map[string]string{}, "vswitch_controller": "", "policy_no_vendor_device": false,
	}
}

func (s *Sim) hostRecord() map[string]any {
	h := s.m.Host
	var resident []string
	for _, v := range s.m.sortedVMs() {
		if v.PowerState == "Running" && !v.IsASnapshot {
			resident = append(resident, v.Ref)
		}
	}
	return map[string]any{
		"uuid": h.UUID, "name_label": h.NameLabel, "name_description": "Default install",
		"address": s.host, "hostname": s.opts.HostName, "enabled": true,
		"API_version_major": int64(2), "API_version_minor": int64(21), "API_version_vendor": "XenSource",
		"API_version_vendor_implementation": map[string]string{},
		"software_version": map[string]string{
			"product_version": "8.3.0", "product_brand": "XCP-ng", "platform_name": "XCP", "platform_version": "3.4.0",
			"build_number": "xapisim", "xapi": "24.19", "xen": "4.17.4", "hostname": s.opts.HostName,
		},
		"other_config": map[string]string{}, "capabilities": []string{}, "cpu_configuration": map[string]string{},
		"sched_policy": "credit", "supported_bootloaders": []string{"pygrub", "eliloader"},
		"resident_VMs": orEmpty(resident), "logging": map[string]string{}, "PIFs": []string{}, "PBDs": []string{},
		"host_CPUs": []string{}, "cpu_info": map[string]string{"cpu_count": "4"}, "metrics": nullRef,
		"tags": []string{}, "allowed_operations": []string{}, "current_operations": map[string]string{},
		"memory_overhead": int64(0), "suspend_image_sr": s.m.SR.Ref, "crash_dump_sr": s.m.SR.Ref,
		"local_cache_sr": nullRef, "license_params": map[string]string{}, "edition": "xcp-ng",
		"control_domain": s.controlDomain(),
	}
}

func (s *Sim) controlDomain() string {
	for _, v := range s.m.VMs {
		if v.IsControlDomain {
			return v.Ref
		}
	}
	return nullRef
}

func (s *Sim) srRecord() map[string]any {
	sr := s.m.SR
	var vdis []string
	var virt, phys int64
	for _, d := range s.m.sortedVDIs() {
		vdis = append(vdis, d.Ref)
		virt += d.VirtualSize
		phys += s.allocated(d)
	}
	return map[string]any{
		"uuid": sr.UUID, "name_label": sr.NameLabel, "name_description": "",
		"type": "ext", "content_type": "user", "shared": false,
		"physical_size": sr.PhysicalSize, "physical_utilisation": phys, "virtual_allocation": virt,
		"VDIs": orEmpty(vdis), "PBDs": []string{}, "other_config": map[string]string{"i18n-key": "local-storage"},
		"sm_config": map[string]string{"devserial": "xapisim"}, "tags": []string{}, "allowed_operations": []string{"vdi_create", "vdi_destroy", "vdi_snapshot", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy", "vdi_list_changed_blocks"},
		"current_operations": map[string]string{}, "blobs": map[string]string{}, "local_cache_enabled": false,
		"introduced_by": nullRef, "clustered": false, "is_tools_sr": false,
	}
}

// updateSRSizeLocked sizes the SR from its disks: four times their
// virtual sizes, at least 10 GiB.
func (s *Sim) updateSRSizeLocked() {
	var total int64
	for _, d := range s.m.VDIs {
		if !d.IsASnapshot {
			total += d.VirtualSize
		}
	}
	s.m.SR.PhysicalSize = max(4*total, 10<<30)
}

func (s *Sim) networkRecord(n *networkRec) map[string]any {
	var vifs []string
	for _, v := range s.m.sortedVIFs() {
		if v.Network == n.Ref {
			vifs = append(vifs, v.Ref)
		}
	}
	return map[string]any{
		"uuid": n.UUID, "name_label": n.NameLabel, "name_description": "", "bridge": n.Bridge, "MTU": int64(1500),
		"other_config": map[string]string{}, "VIFs": orEmpty(vifs), "PIFs": []string{}, "managed": true,
		"purpose": []string{}, "tags": []string{}, "blobs": map[string]string{}, "allowed_operations": []string{},
		"current_operations": map[string]string{}, "default_locking_mode": "unlocked", "assigned_ips": map[string]string{},
	}
}

func (s *Sim) vmRecord(v *vmRec) map[string]any {
	var vbds, vifs, snaps []string
	for _, b := range s.m.vbdsOf(v.Ref) {
		vbds = append(vbds, b.Ref)
	}
	for _, f := range s.m.vifsOf(v.Ref) {
		vifs = append(vifs, f.Ref)
	}
	for _, x := range s.m.sortedVMs() {
		if x.IsASnapshot && x.SnapshotOf == v.Ref {
			snaps = append(snaps, x.Ref)
		}
	}
	running := v.PowerState == "Running"
	resident, domid := nullRef, int64(-1)
	if running {
		resident, domid = s.m.Host.Ref, 1
		if v.IsControlDomain {
			domid = 0
		}
	}
	gm := refOr(v.GuestMetrics)
	if _, ok := s.m.Metrics[gm]; !ok {
		gm = nullRef
	}
	ops := []string{"snapshot", "export", "destroy", "start", "clone", "copy"}
	if running {
		ops = []string{"snapshot", "export", "clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "pause", "suspend"}
		if v.Quiesce {
			ops = append(ops, "snapshot_with_quiesce")
		}
	}
	if v.IsASnapshot {
		ops = []string{"destroy", "export", "revert", "clone", "copy"}
	}
	return map[string]any{
		"uuid": v.UUID, "name_label": v.NameLabel, "name_description": v.NameDescription,
		"allowed_operations": ops, "current_operations": map[string]string{},
		"power_state": v.PowerState, "user_version": max(v.UserVersion, 1),
		"is_a_template": v.IsATemplate, "is_default_template": v.IsATemplate && v.OtherConfig["default_template"] == "true",
		"is_control_domain": v.IsControlDomain,
		"is_a_snapshot":     v.IsASnapshot, "snapshot_of": refOr(v.SnapshotOf), "snapshots": orEmpty(snaps),
		"snapshot_time": xenTime(v.SnapshotTime), "snapshot_info": map[string]string{}, "snapshot_metadata": "",
		"transportable_snapshot_id": "", "parent": nullRef, "children": []string{},
		"suspend_VDI": nullRef, "suspend_SR": nullRef, "resident_on": resident, "scheduled_to_be_resident_on": nullRef, "affinity": nullRef,
		"memory_overhead": int64(8 << 20), "memory_target": v.MemoryDynMax,
		"memory_static_max": v.MemoryStaticMax, "memory_dynamic_max": v.MemoryDynMax,
		"memory_dynamic_min": v.MemoryDynMin, "memory_static_min": v.MemoryStaticMin,
		"VCPUs_params": map[string]string{}, "VCPUs_max": v.VCPUsMax, "VCPUs_at_startup": v.VCPUsAtStartup,
		"actions_after_softreboot": "soft_reboot", "actions_after_shutdown": "destroy", "actions_after_reboot": "restart", "actions_after_crash": "restart",
		"consoles": []string{}, "VIFs": orEmpty(vifs), "VBDs": orEmpty(vbds), "VUSBs": []string{}, "crash_dumps": []string{}, "VTPMs": []string{},
		"PV_bootloader": v.PVBootloader, "PV_kernel": "", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
		"HVM_boot_policy": v.HVMBootPolicy, "HVM_boot_params": orMap(v.HVMBootParams), "HVM_shadow_multiplier": 1.0,
		"platform": orMap(v.Platform), "PCI_bus": "", "other_config": orMap(v.OtherConfig),
		"domid": domid, "domarch": "x64", "last_boot_CPU_flags": map[string]string{},
		"metrics": nullRef, "guest_metrics": gm, "last_booted_record": "", "recommendations": "",
		"xenstore_data": map[string]string{}, "ha_always_run": false, "ha_restart_priority": "",
		"tags": orEmpty(v.Tags), "blocked_operations": map[string]string{}, "blobs": map[string]string{},
		"protection_policy": nullRef, "is_snapshot_from_vmpp": false, "snapshot_schedule": nullRef, "is_vmss_snapshot": false,
		"appliance": nullRef, "start_delay": int64(0), "shutdown_delay": int64(0), "order": int64(0),
		"VGPUs": []string{}, "attached_PCIs": []string{}, "version": int64(0), "generation_id": "",
		"hardware_platform_version": int64(0), "has_vendor_device": false, "requires_reboot": false,
		"reference_label": "", "domain_type": v.DomainType, "NVRAM": map[string]string{}, "pending_guidances": []string{},
		"bios_strings": map[string]string{},
	}
}

func orMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// vbdAttached: a VBD is plugged while its VM runs (and it is not empty).
func (s *Sim) vbdAttached(b *vbdRec) bool {
	v := s.m.VMs[b.VM]
	return v != nil && !v.IsASnapshot && v.PowerState == "Running"
}

func (s *Sim) vbdRecord(b *vbdRec) map[string]any {
	attached := s.vbdAttached(b)
	ops := []string{"attach"}
	if attached {
		ops = []string{"unplug", "unplug_force"}
	}
	return map[string]any{
		"uuid": b.UUID, "allowed_operations": ops, "current_operations": map[string]string{},
		"VM": b.VM, "VDI": refOr(b.VDI), "device": deviceName(b.Userdevice), "userdevice": b.Userdevice,
		"bootable": b.Bootable, "mode": b.Mode, "type": b.Type, "unpluggable": true, "storage_lock": false,
		"empty": b.Empty, "other_config": orMap(b.OtherConfig), "currently_attached": attached,
		"status_code": int64(0), "status_detail": "", "runtime_properties": map[string]string{},
		"qos_algorithm_type": "", "qos_algorithm_params": map[string]string{}, "qos_supported_algorithms": []string{},
		"metrics": nullRef,
	}
}

// deviceName is the guest device of a userdevice: 0 → xvda.
func deviceName(userdevice string) string {
	n, err := strconv.Atoi(userdevice)
	if err != nil || n < 0 || n > 25 {
		return ""
	}
	return "xvd" + string(rune('a'+n))
}

func (s *Sim) vdiRecord(d *vdiRec) map[string]any {
	var vbds, snaps []string
	for _, b := range s.m.sortedVBDs() {
		if b.VDI == d.Ref {
			vbds = append(vbds, b.Ref)
		}
	}
	for _, x := range s.m.sortedVDIs() {
		if x.IsASnapshot && x.SnapshotOf == d.Ref {
			snaps = append(snaps, x.Ref)
		}
	}
	ops := []string{"clone", "copy", "snapshot", "destroy", "forget", "update", "resize", "generate_config", "mirror"}
	switch {
	case d.Type == "cbt_metadata":
		ops = []string{"destroy", "forget", "list_changed_blocks", "update"}
	case d.CBTEnabled:
		ops = append(ops, "disable_cbt", "list_changed_blocks")
		if d.IsASnapshot {
			ops = append(ops, "data_destroy")
		}
	default:
		ops = append(ops, "enable_cbt")
	}
	return map[string]any{
		"uuid": d.UUID, "name_label": d.NameLabel, "name_description": d.NameDescription,
		"allowed_operations": ops, "current_operations": map[string]string{},
		"SR": d.SR, "VBDs": orEmpty(vbds), "crash_dumps": []string{},
		"virtual_size": d.VirtualSize, "physical_utilisation": s.allocated(d),
		"type": d.Type, "sharable": d.Sharable, "read_only": d.ReadOnly,
		"other_config": orMap(d.OtherConfig), "storage_lock": false, "location": d.UUID,
		"managed": true, "missing": false, "parent": nullRef,
		"xenstore_data": map[string]string{}, "sm_config": map[string]string{"vdi_type": "vhd"},
		"is_a_snapshot": d.IsASnapshot, "snapshot_of": refOr(d.SnapshotOf), "snapshots": orEmpty(snaps),
		"snapshot_time": xenTime(d.SnapshotTime), "tags": []string{}, "allow_caching": false, "on_boot": "persist",
		"metadata_of_pool": nullRef, "metadata_latest": false, "is_tools_iso": false, "cbt_enabled": d.CBTEnabled,
	}
}

func (s *Sim) vifRecord(f *vifRec) map[string]any {
	attached := false
	if v := s.m.VMs[f.VM]; v != nil && !v.IsASnapshot && v.PowerState == "Running" {
		attached = true
	}
	return map[string]any{
		"uuid": f.UUID, "allowed_operations": []string{}, "current_operations": map[string]string{},
		"device": f.Device, "network": f.Network, "VM": f.VM, "MAC": f.MAC, "MTU": f.MTU,
		"other_config": orMap(f.OtherConfig), "currently_attached": attached, "status_code": int64(0), "status_detail": "",
		"runtime_properties": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
		"qos_supported_algorithms": []string{}, "metrics": nullRef, "MAC_autogenerated": f.MACAutogenerated,
		"locking_mode": "network_default", "ipv4_allowed": []string{}, "ipv6_allowed": []string{},
		"ipv4_configuration_mode": "None", "ipv4_addresses": []string{}, "ipv4_gateway": "",
		"ipv6_configuration_mode": "None", "ipv6_addresses": []string{}, "ipv6_gateway": "",
	}
}

func (s *Sim) metricsRecord(g *metricsRec) map[string]any {
	return map[string]any{
		"uuid": g.UUID, "os_version": orMap(g.OS), "PV_drivers_version": orMap(g.Drivers),
		"PV_drivers_up_to_date": true, "PV_drivers_detected": true, "memory": map[string]string{}, "disks": map[string]string{},
		"networks": map[string]string{"0/ip": "192.0.2.10"}, "other": orMap(g.Other), "last_updated": xenTime(time.Now()),
		"other_config": map[string]string{}, "live": true, "can_use_hotplug_vbd": "yes", "can_use_hotplug_vif": "yes",
		"services": map[string]string{}, "netbios_name": map[string]string{},
	}
}

func (s *Sim) sessionRecord(x *session) map[string]any {
	return map[string]any{
		"uuid": x.UUID, "this_host": s.m.Host.Ref, "this_user": nullRef, "last_active": xenTime(x.Created),
		"pool": false, "other_config": map[string]string{}, "is_local_superuser": true, "subject": nullRef,
		"validation_time": xenTime(x.Created), "auth_user_sid": "", "auth_user_name": x.User, "rbac_permissions": []string{},
		"tasks": []string{}, "parent": nullRef, "originator": x.Originator, "client_certificate": false,
	}
}

// class is what the generic methods (get_all, get_record, get_by_uuid,
// get_<field>, add_to_other_config...) need of one XenAPI class.
type class struct {
	// refs lists every object (creation order).
	refs func(s *Sim) []string
	// record is the object's record, or nil when ref names none.
	record func(s *Sim, ref string) map[string]any
	// otherConfig is the object's modifiable other_config map (nil when
	// the class has none that can be changed).
	otherConfig func(s *Sim, ref string) *map[string]string
	// names is the object's modifiable name_label/name_description.
	names func(s *Sim, ref string) (label, desc *string)
}

var classes = map[string]class{
	"pool": {
		refs:   func(s *Sim) []string { return []string{s.m.Pool.Ref} },
		record: func(s *Sim, ref string) map[string]any { return when(ref == s.m.Pool.Ref, s.poolRecord) },
	},
	"host": {
		refs:   func(s *Sim) []string { return []string{s.m.Host.Ref} },
		record: func(s *Sim, ref string) map[string]any { return when(ref == s.m.Host.Ref, s.hostRecord) },
	},
	"SR": {
		refs:   func(s *Sim) []string { return []string{s.m.SR.Ref} },
		record: func(s *Sim, ref string) map[string]any { return when(ref == s.m.SR.Ref, s.srRecord) },
	},
	"network": {
		refs: func(s *Sim) []string {
			var out []string
			for _, n := range s.m.Networks {
				out = append(out, n.Ref)
			}
			return out
		},
		record: func(s *Sim, ref string) map[string]any {
			if n := s.m.network(ref); n != nil {
				return s.networkRecord(n)
			}
			return nil
		},
	},
	"VM": {
		refs: func(s *Sim) []string { return refsOf(s.m.sortedVMs(), func(v *vmRec) string { return v.Ref }) },
		record: func(s *Sim, ref string) map[string]any {
			if v := s.m.VMs[ref]; v != nil {
				return s.vmRecord(v)
			}
			return nil
		},
		otherConfig: func(s *Sim, ref string) *map[string]string {
			if v := s.m.VMs[ref]; v != nil {
				return &v.OtherConfig
			}
			return nil
		},
		names: func(s *Sim, ref string) (*string, *string) {
			if v := s.m.VMs[ref]; v != nil {
				return &v.NameLabel, &v.NameDescription
			}
			return nil, nil
		},
	},
	"VBD": {
		refs: func(s *Sim) []string { return refsOf(s.m.sortedVBDs(), func(v *vbdRec) string { return v.Ref }) },
		record: func(s *Sim, ref string) map[string]any {
			if v := s.m.VBDs[ref]; v != nil {
				return s.vbdRecord(v)
			}
			return nil
		},
		otherConfig: func(s *Sim, ref string) *map[string]string {
			if v := s.m.VBDs[ref]; v != nil {
				return &v.OtherConfig
			}
			return nil
		},
	},
	"VDI": {
		refs: func(s *Sim) []string { return refsOf(s.m.sortedVDIs(), func(v *vdiRec) string { return v.Ref }) },
		record: func(s *Sim, ref string) map[string]any {
			if v := s.m.VDIs[ref]; v != nil {
				return s.vdiRecord(v)
			}
			return nil
		},
		otherConfig: func(s *Sim, ref string) *map[string]string {
			if v := s.m.VDIs[ref]; v != nil {
				return &v.OtherConfig
			}
			return nil
		},
		names: func(s *Sim, ref string) (*string, *string) {
			if v := s.m.VDIs[ref]; v != nil {
				return &v.NameLabel, &v.NameDescription
			}
			return nil, nil
		},
	},
	"VIF": {
		refs: func(s *Sim) []string { return refsOf(s.m.sortedVIFs(), func(v *vifRec) string { return v.Ref }) },
		record: func(s *Sim, ref string) map[string]any {
			if v := s.m.VIFs[ref]; v != nil {
				return s.vifRecord(v)
			}
			return nil
		},
		otherConfig: func(s *Sim, ref string) *map[string]string {
			if v := s.m.VIFs[ref]; v != nil {
				return &v.OtherConfig
			}
			return nil
		},
	},
	"VM_guest_metrics": {
		refs: func(s *Sim) []string {
			return refsOf(bySeq(s.m.Metrics, func(*metricsRec) int64 { return 0 }), func(v *metricsRec) string { return v.Ref })
		},
		record: func(s *Sim, ref string) map[string]any {
			if g := s.m.Metrics[ref]; g != nil {
				return s.metricsRecord(g)
			}
			return nil
		},
	},
	"task": {
		refs: func(s *Sim) []string {
			return refsOf(bySeq(s.tasks, func(t *task) int64 { return t.seq }), func(t *task) string { return t.ref })
		},
		record: func(s *Sim, ref string) map[string]any {
			if t := s.tasks[ref]; t != nil {
				return s.taskRecord(t)
			}
			return nil
		},
		otherConfig: func(s *Sim, ref string) *map[string]string {
			if t := s.tasks[ref]; t != nil {
				return &t.otherConfig
			}
			return nil
		},
	},
}

func when(ok bool, f func() map[string]any) map[string]any {
	if !ok {
		return nil
	}
	return f()
}

func refsOf[T any](xs []*T, ref func(*T) string) []string {
	out := []string{}
	for _, x := range xs {
		out = append(out, ref(x))
	}
	return out
}
