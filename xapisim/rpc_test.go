package xapisim_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/xapisim"
)

// TestLoginAndErrors: login, logout, and the error shapes of bad calls.
func TestLoginAndErrors(t *testing.T) {
	sim := startSim(t)
	c := newClient(t, sim)
	if _, xe := c.raw("session.login_with_password", "root", "wrong", "1.0", "t"); xe == nil || xe.Code != "SESSION_AUTHENTICATION_FAILED" || xe.Params[0] != "root" {
		t.Fatalf("bad password: %v", xe)
	}
	if _, xe := c.raw("session.login_with_password", "admin", sim.Password()); xe == nil || xe.Code != "SESSION_AUTHENTICATION_FAILED" {
		t.Fatalf("bad user: %v", xe)
	}
	c = login(t, sim)
	c.wantErr("MESSAGE_METHOD_UNKNOWN", []string{"VM.frobnicate"}, "VM.frobnicate", "x")
	c.wantErr("MESSAGE_METHOD_UNKNOWN", []string{"Async.VM.get_record"}, "Async.VM.get_record", "x")
	c.wantErr("MESSAGE_PARAMETER_COUNT_MISMATCH", []string{"VM.get_record", "2", "3"}, "VM.get_record", "a", "b")
	c.wantErr("HANDLE_INVALID", []string{"VM", "OpaqueRef:nope"}, "VM.get_record", "OpaqueRef:nope")
	c.wantErr("UUID_INVALID", []string{"VDI", "nope"}, "VDI.get_by_uuid", "nope")
	c.wantErr("MESSAGE_METHOD_UNKNOWN", nil, "VM.get_no_such_field", c.vmRef("web"))

	if _, xe := c.raw("VM.get_all", "OpaqueRef:forged"); xe == nil || xe.Code != "SESSION_INVALID" || xe.Params[0] != "OpaqueRef:forged" {
		t.Fatalf("forged session: %v", xe)
	}
	sim.ExpireSessions()
	if _, xe := c.call("VM.get_all"); xe == nil || xe.Code != "SESSION_INVALID" {
		t.Fatalf("expired session: %v", xe)
	}
	c = login(t, sim)
	c.mustInto(nil, "session.logout")
	if _, xe := c.call("VM.get_all"); xe == nil || xe.Code != "SESSION_INVALID" {
		t.Fatalf("after logout: %v", xe)
	}
}

// TestObjects: the pool's fixed objects and a --vm VM's records.
func TestObjects(t *testing.T) {
	sim := startSim(t, xapisim.VMSpec{Name: "web", Files: []string{image(t, 4<<20, 0), image(t, 2<<20, 1)}, Firmware: "uefi", SecureBoot: true})
	c := login(t, sim)

	var pools []string
	c.mustInto(&pools, "pool.get_all")
	if len(pools) != 1 {
		t.Fatalf("pools %v", pools)
	}
	master := c.str("pool.get_master", pools[0])
	if c.str("session.get_this_host", c.session) != master {
		t.Errorf("get_this_host is not the master")
	}
	host := c.record("host.get_record", master)
	if host["address"] != "127.0.0.1" || host["software_version"].(map[string]any)["product_brand"] != "XCP-ng" {
		t.Errorf("host %v", host)
	}

	var vms map[string]map[string]any
	c.mustInto(&vms, "VM.get_all_records")
	var dom0, tmpl, web int
	for _, v := range vms {
		switch {
		case v["is_control_domain"] == true:
			dom0++
		case v["is_a_template"] == true:
			tmpl++
		case v["name_label"] == "web":
			web++
		}
	}
	if dom0 != 1 || tmpl != 1 || web != 1 || len(vms) != 3 {
		t.Fatalf("VMs: dom0 %d templates %d web %d of %d", dom0, tmpl, web, len(vms))
	}
	vm := c.vmRef("web")
	rec := vms[vm]
	if rec["power_state"] != "Running" || rec["HVM_boot_params"].(map[string]any)["firmware"] != "uefi" ||
		rec["platform"].(map[string]any)["secureboot"] != "true" || rec["domain_type"] != "hvm" || rec["VCPUs_max"] != 2.0 {
		t.Errorf("VM record %v", rec)
	}
	if got := c.str("VM.get_power_state", vm); got != "Running" {
		t.Errorf("get_power_state %q", got)
	}
	if got := c.str("VM.get_by_uuid", rec["uuid"]); got != vm {
		t.Errorf("get_by_uuid %q", got)
	}

	var cds, disks int
	for i, b := range rec["VBDs"].([]any) {
		vbd := c.record("VBD.get_record", b)
		if vbd["VM"] != vm {
			t.Errorf("VBD %v", vbd)
		}
		switch vbd["type"] {
		case "CD":
			cds++
			if vbd["empty"] != true || vbd["VDI"] != "OpaqueRef:NULL" {
				t.Errorf("CD VBD %v", vbd)
			}
		case "Disk":
			disks++
			if vbd["userdevice"] != []string{"0", "1"}[i] || vbd["bootable"] != (i == 0) || vbd["currently_attached"] != true || vbd["mode"] != "RW" {
				t.Errorf("disk VBD %d: %v", i, vbd)
			}
			vdi := c.record("VDI.get_record", vbd["VDI"])
			if want := []float64{4 << 20, 2 << 20}[i]; vdi["virtual_size"] != want || vdi["is_a_snapshot"] != false || vdi["type"] != "user" {
				t.Errorf("VDI %d: %v", i, vdi)
			}
		}
	}
	if cds != 1 || disks != 2 {
		t.Errorf("%d CDs, %d disks", cds, disks)
	}
	vifs := rec["VIFs"].([]any)
	if len(vifs) != 1 {
		t.Fatalf("VIFs %v", vifs)
	}
	vif := c.record("VIF.get_record", vifs[0])
	net := c.record("network.get_record", vif["network"])
	if net["name_label"] != "Pool-wide network associated with eth0" || len(vif["MAC"].(string)) != 17 || vif["device"] != "0" {
		t.Errorf("VIF %v on %v", vif, net)
	}
	var nets []string
	c.mustInto(&nets, "network.get_by_name_label", "vlan20")
	if len(nets) != 1 {
		t.Errorf("vlan20: %v", nets)
	}
	gm := c.record("VM_guest_metrics.get_record", rec["guest_metrics"])
	if gm["PV_drivers_detected"] != true || gm["os_version"].(map[string]any)["distro"] != "debian" {
		t.Errorf("guest metrics %v", gm)
	}
	var srs []string
	c.mustInto(&srs, "SR.get_by_name_label", "Local storage")
	sr := c.record("SR.get_record", srs[0])
	if sr["type"] != "ext" || len(sr["VDIs"].([]any)) != 2 || sr["physical_size"].(float64) < 6<<20 {
		t.Errorf("SR %v", sr)
	}
}

// TestOtherConfig: add/remove_from_other_config on VMs and VDIs.
func TestOtherConfig(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	vdi := c.disks(vm)[0]
	for _, x := range []struct{ class, ref string }{{"VM", vm}, {"VDI", vdi}} {
		c.mustInto(nil, x.class+".add_to_other_config", x.ref, "ahvfs-job", "42")
		c.wantErr("MAP_DUPLICATE_KEY", nil, x.class+".add_to_other_config", x.ref, "ahvfs-job", "43")
		if oc := c.record(x.class+".get_other_config", x.ref); oc["ahvfs-job"] != "42" {
			t.Errorf("%s other_config %v", x.class, oc)
		}
		c.mustInto(nil, x.class+".remove_from_other_config", x.ref, "ahvfs-job")
		c.mustInto(nil, x.class+".remove_from_other_config", x.ref, "ahvfs-job")
		if oc := c.record(x.class+".get_other_config", x.ref); len(oc) != 0 {
			t.Errorf("%s other_config %v after remove", x.class, oc)
		}
	}
	c.wantErr("HANDLE_INVALID", []string{"VM", "OpaqueRef:x"}, "VM.add_to_other_config", "OpaqueRef:x", "k", "v")
}

// TestPowerAndDestroy: VM power operations, destroy rules, VDI_IN_USE.
func TestPowerAndDestroy(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	vdi := c.disks(vm)[0]
	c.wantErr("VM_BAD_POWER_STATE", []string{vm, "halted", "running"}, "VM.destroy", vm)
	c.wantErr("VDI_IN_USE", []string{vdi, "destroy"}, "VDI.destroy", vdi)
	c.wantErr("VM_BAD_POWER_STATE", []string{vm, "halted", "running"}, "VM.start", vm, false, false)
	c.async("VM.clean_shutdown", vm)
	if c.str("VM.get_power_state", vm) != "Halted" {
		t.Fatal("not halted")
	}
	if vbd := c.record("VBD.get_record", c.record("VM.get_record", vm)["VBDs"].([]any)[0]); vbd["currently_attached"] != false {
		t.Errorf("VBD of a halted VM: %v", vbd)
	}
	c.mustInto(nil, "VM.start", vm, false, false)
	c.mustInto(nil, "VM.hard_shutdown", vm)
	c.wantErr("VM_BAD_POWER_STATE", []string{vm, "running", "halted"}, "VM.hard_shutdown", vm)
	c.mustInto(nil, "VM.destroy", vm)
	c.wantErr("HANDLE_INVALID", nil, "VM.get_record", vm)
	// The VDIs stay, as on xapi, and can be destroyed now.
	c.record("VDI.get_record", vdi)
	c.mustInto(nil, "VDI.destroy", vdi)
	c.wantErr("HANDLE_INVALID", []string{"VDI", vdi}, "VDI.get_record", vdi)
}

// TestCreateObjects: VM/VDI/VBD/VIF.create with the fields xapi requires.
func TestCreateObjects(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	var srs, nets []string
	c.mustInto(&srs, "SR.get_all")
	c.mustInto(&nets, "network.get_all")
	vmRec := map[string]any{"name_label": "restored", "name_description": "", "user_version": 1, "is_a_template": false,
		"affinity": "OpaqueRef:NULL", "memory_static_max": 1 << 30, "memory_dynamic_max": 1 << 30, "memory_dynamic_min": 1 << 30,
		"memory_static_min": 1 << 29, "VCPUs_max": 2, "VCPUs_at_startup": 2, "VCPUs_params": map[string]string{},
		"actions_after_shutdown": "destroy", "actions_after_reboot": "restart", "actions_after_crash": "restart",
		"PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
		"HVM_boot_policy": "BIOS order", "HVM_boot_params": map[string]string{"order": "cd", "firmware": "uefi"},
		"platform": map[string]string{"secureboot": "true"}, "PCI_bus": "", "other_config": map[string]string{"a": "b"},
		"recommendations": "", "domain_type": "hvm"}
	incomplete := map[string]any{}
	for k, v := range vmRec {
		if k != "PV_legacy_args" {
			incomplete[k] = v
		}
	}
	c.wantErr("FIELD_TYPE_ERROR", nil, "VM.create", incomplete)
	vm := c.str("VM.create", vmRec)
	rec := c.record("VM.get_record", vm)
	if rec["power_state"] != "Halted" || rec["HVM_boot_params"].(map[string]any)["firmware"] != "uefi" || rec["memory_static_min"] != float64(1<<29) {
		t.Errorf("created VM %v", rec)
	}
	vdi := c.str("VDI.create", map[string]any{"name_label": "d0", "name_description": "", "SR": srs[0], "virtual_size": 3 << 20,
		"type": "user", "sharable": false, "read_only": false, "other_config": map[string]string{}, "xenstore_data": map[string]string{},
		"sm_config": map[string]string{}, "tags": []string{}})
	vbd := func(userdevice, vdi, typ string, empty bool) (string, *xenErr) {
		res, xe := c.call("VBD.create", map[string]any{"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": userdevice == "0",
			"mode": "RW", "type": typ, "empty": empty, "other_config": map[string]string{}, "qos_algorithm_type": "",
			"qos_algorithm_params": map[string]string{}})
		return strings.Trim(string(res), `"`), xe
	}
	if _, xe := vbd("0", vdi, "Disk", false); xe != nil {
		t.Fatal(xe)
	}
	if _, xe := vbd("0", vdi, "Disk", false); xe == nil || xe.Code != "DEVICE_ALREADY_EXISTS" {
		t.Errorf("duplicate userdevice: %v", xe)
	}
	if _, xe := vbd("3", "OpaqueRef:NULL", "CD", true); xe != nil {
		t.Fatal(xe)
	}
	vif := c.str("VIF.create", map[string]any{"device": "0", "network": nets[1], "VM": vm, "MAC": "02:00:00:aa:bb:cc", "MTU": 1500,
		"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{}})
	if got := c.record("VIF.get_record", vif); got["MAC"] != "02:00:00:aa:bb:cc" || got["network"] != nets[1] {
		t.Errorf("VIF %v", got)
	}
	c.mustInto(nil, "VM.start", vm, false, false)
	if c.record("VBD.get_record", c.record("VM.get_record", vm)["VBDs"].([]any)[0])["currently_attached"] != true {
		t.Error("VBD not attached after start")
	}
	c.wantErr("OPERATION_NOT_ALLOWED", nil, "VBD.destroy", c.record("VM.get_record", vm)["VBDs"].([]any)[0])
	c.mustInto(nil, "VM.hard_shutdown", vm)
	c.mustInto(nil, "VIF.destroy", vif)
	for _, b := range c.record("VM.get_record", vm)["VBDs"].([]any) {
		c.mustInto(nil, "VBD.destroy", b)
	}
	c.mustInto(nil, "VM.destroy", vm)
	c.mustInto(nil, "VDI.destroy", vdi)
}

// TestFaultsAndGate: FailNext fails sync and Async calls; a gate holds
// a call until released.
func TestFaultsAndGate(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	sim.FailNext("VM.snapshot", "SR_BACKEND_FAILURE_44", "", "no space")
	c.wantErr("SR_BACKEND_FAILURE_44", []string{"", "no space"}, "VM.snapshot", vm, "s1")
	sim.FailNext("VM.snapshot", "VM_BAD_POWER_STATE", vm, "running", "paused")
	task := c.str("Async.VM.snapshot", vm, "s2")
	if status, _, info := c.waitTask(task); status != "failure" || strings.Join(info, "|") != "VM_BAD_POWER_STATE|"+vm+"|running|paused" {
		t.Fatalf("failed task: %s %v", status, info)
	}
	if sim.Injected("VM.snapshot") != 2 {
		t.Errorf("injected %d", sim.Injected("VM.snapshot"))
	}

	g := sim.Hold("VM.snapshot")
	task = c.str("Async.VM.snapshot", vm, "held")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if rec := c.record("task.get_record", task); rec["status"] != "pending" {
		t.Fatalf("held task %v", rec)
	}
	for _, v := range sim.Inventory().VMs {
		if v.IsSnapshot {
			t.Fatalf("a snapshot exists while held: %+v", v)
		}
	}
	if sim.Gates()["VM.snapshot"] != 1 {
		t.Errorf("gates %v", sim.Gates())
	}
	g.Release()
	status, result, info := c.waitTask(task)
	m := valueRef.FindStringSubmatch(result)
	if status != "success" || m == nil {
		t.Fatalf("released task: %s %q %v", status, result, info)
	}
	if rec := c.record("VM.get_record", m[1]); rec["is_a_snapshot"] != true || rec["name_label"] != "held" {
		t.Errorf("snapshot %v", rec)
	}
	if len(sim.Gates()) != 0 {
		t.Errorf("gates after release: %v", sim.Gates())
	}
}
