package xapi_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ahvfs/ahvfs/xapi"
)

// record captures the one record parameter of a create call.
func record(f *fakeXAPI, method, ref string) *map[string]any {
	var got map[string]any
	f.handle(method, func(p []json.RawMessage) (any, error) {
		json.Unmarshal(p[0], &got)
		return ref, nil
	})
	return &got
}

func TestCreate(t *testing.T) {
	f := newFake(t)
	vm := record(f, "VM.create", "OpaqueRef:vm")
	vdi := record(f, "VDI.create", "OpaqueRef:vdi")
	vbd := record(f, "VBD.create", "OpaqueRef:vbd")
	vif := record(f, "VIF.create", "OpaqueRef:vif")
	c := f.connect(t)
	ctx := context.Background()

	ref, err := c.CreateVM(ctx, xapi.VMSpec{NameLabel: "web-01 (restored)", VCPUs: 2, MemoryBytes: 4 << 30, Firmware: "uefi", SecureBoot: true,
		Platform: map[string]string{"viridian": "false"}})
	if err != nil || ref != "OpaqueRef:vm" {
		t.Fatalf("CreateVM = %q, %v", ref, err)
	}
	want := map[string]any{"name_label": "web-01 (restored)", "memory_static_max": float64(4 << 30), "memory_dynamic_min": float64(4 << 30),
		"VCPUs_max": float64(2), "VCPUs_at_startup": float64(2), "is_a_template": false, "affinity": "OpaqueRef:NULL",
		"HVM_boot_policy": "BIOS order", "HVM_boot_params": map[string]any{"order": "cd", "firmware": "uefi"},
		"platform": map[string]any{"secureboot": "true", "viridian": "false"}, "other_config": map[string]any{},
		"actions_after_shutdown": "destroy", "domain_type": "hvm", "PV_bootloader": "", "user_version": float64(1)}
	for k, v := range want {
		if !reflect.DeepEqual((*vm)[k], v) {
			t.Errorf("VM.create %s = %#v, want %#v", k, (*vm)[k], v)
		}
	}
	for _, bad := range []xapi.VMSpec{{VCPUs: 1, MemoryBytes: 1}, {NameLabel: "x", MemoryBytes: 1}, {NameLabel: "x", VCPUs: 1, MemoryBytes: 1, Firmware: "coreboot"},
		{NameLabel: "x", VCPUs: 1, MemoryBytes: 1, SecureBoot: true}} {
		if _, err := c.CreateVM(ctx, bad); err == nil {
			t.Errorf("CreateVM(%+v) accepted", bad)
		}
	}

	if _, err := c.CreateVDI(ctx, xapi.VDISpec{NameLabel: "disk 0", SR: "OpaqueRef:sr", VirtualSize: 10 << 30}); err != nil {
		t.Fatal(err)
	}
	if (*vdi)["virtual_size"] != float64(10<<30) || (*vdi)["type"] != "user" || (*vdi)["SR"] != "OpaqueRef:sr" || (*vdi)["sm_config"] == nil || (*vdi)["tags"] == nil {
		t.Errorf("VDI.create %v", *vdi)
	}
	if _, err := c.CreateVDI(ctx, xapi.VDISpec{SR: xapi.NullRef, VirtualSize: 1}); err == nil {
		t.Error("VDI without an SR accepted")
	}

	if _, err := c.CreateVBD(ctx, xapi.VBDSpec{VM: "OpaqueRef:vm", VDI: "OpaqueRef:vdi", Userdevice: "0", Bootable: true}); err != nil {
		t.Fatal(err)
	}
	if (*vbd)["mode"] != "RW" || (*vbd)["type"] != "Disk" || (*vbd)["empty"] != false || (*vbd)["bootable"] != true || (*vbd)["userdevice"] != "0" {
		t.Errorf("VBD.create %v", *vbd)
	}
	if _, err := c.CreateVBD(ctx, xapi.VBDSpec{VM: "OpaqueRef:vm", Type: "CD"}); err != nil {
		t.Fatal(err)
	}
	if (*vbd)["VDI"] != "OpaqueRef:NULL" || (*vbd)["empty"] != true || (*vbd)["mode"] != "RO" || (*vbd)["userdevice"] != "autodetect" {
		t.Errorf("empty CD: %v", *vbd)
	}
	if _, err := c.CreateVBD(ctx, xapi.VBDSpec{VM: "OpaqueRef:vm"}); err == nil {
		t.Error("disk without a VDI accepted")
	}

	if _, err := c.CreateVIF(ctx, xapi.VIFSpec{VM: "OpaqueRef:vm", Network: "OpaqueRef:n", Device: "0"}); err != nil {
		t.Fatal(err)
	}
	if (*vif)["MTU"] != float64(1500) || (*vif)["MAC"] != "" || (*vif)["device"] != "0" {
		t.Errorf("VIF.create %v", *vif)
	}
}

func TestSimpleCalls(t *testing.T) {
	f := newFake(t)
	var log []string
	for _, m := range []string{"VDI.enable_cbt", "VDI.disable_cbt", "VM.destroy", "VM.remove_from_other_config", "VM.add_to_other_config"} {
		f.handle(m, func(p []json.RawMessage) (any, error) {
			args := m
			for _, x := range p {
				args += " " + str(x)
			}
			log = append(log, args)
			return "", nil
		})
	}
	f.returns("Async.VDI.data_destroy", "OpaqueRef:t")
	f.returns("Async.VM.start", "OpaqueRef:t")
	f.task("OpaqueRef:t", taskRec("success", ""))
	f.returns("VDI.get_nbd_info", []map[string]any{{"address": "10.0.0.5", "port": 10809, "cert": "-----BEGIN CERTIFICATE-----", "subject": "xcp1", "exportname": "/3e4f?session_id=" + fakeSession}})
	c := f.connect(t)
	ctx := context.Background()
	for _, err := range []error{c.EnableCBT(ctx, "OpaqueRef:d"), c.DisableCBT(ctx, "OpaqueRef:d"), c.DestroyVM(ctx, "OpaqueRef:s"),
		c.SetOtherConfigKey(ctx, "VM", "OpaqueRef:v", "ahvfs-restore", "job-7"), c.DataDestroy(ctx, "OpaqueRef:d"), c.Start(ctx, "OpaqueRef:v")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"VDI.enable_cbt OpaqueRef:d", "VDI.disable_cbt OpaqueRef:d", "VM.destroy OpaqueRef:s",
		"VM.remove_from_other_config OpaqueRef:v ahvfs-restore", "VM.add_to_other_config OpaqueRef:v ahvfs-restore job-7"}
	if !reflect.DeepEqual(log, want) {
		t.Errorf("calls %q", log)
	}
	info, err := c.NBDInfo(ctx, "OpaqueRef:d")
	if err != nil || len(info) != 1 || info[0].Port != 10809 || info[0].Subject != "xcp1" || info[0].ExportName != "/3e4f?session_id="+fakeSession {
		t.Errorf("NBDInfo = %+v, %v", info, err)
	}
	f.returns("VDI.get_by_uuid", "OpaqueRef:d1")
	f.returns("VDI.get_by_name_label", []string{"OpaqueRef:d1", "OpaqueRef:d2"})
	f.handle("VDI.get_record", func(p []json.RawMessage) (any, error) { return map[string]any{"uuid": "u-" + str(p[0])}, nil })
	if d, err := c.VDIByUUID(ctx, "u-OpaqueRef:d1"); err != nil || d.Ref != "OpaqueRef:d1" || d.UUID != "u-OpaqueRef:d1" {
		t.Errorf("VDIByUUID = %+v, %v", d, err)
	}
	if ds, err := c.VDIsByName(ctx, "disk"); err != nil || len(ds) != 2 || ds[1].Ref != "OpaqueRef:d2" {
		t.Errorf("VDIsByName = %+v, %v", ds, err)
	}
	if c.Endpoint() != f.srv.URL {
		t.Errorf("Endpoint() = %q, want %q", c.Endpoint(), f.srv.URL)
	}
	if _, err := c.SnapshotWithQuiesce(ctx, "OpaqueRef:v", "q"); !xapi.IsCode(err, xapi.CodeMessageMethodUnknown) {
		t.Errorf("SnapshotWithQuiesce on a release without it: %v", err)
	}
	if err := c.SetOtherConfigKey(ctx, "", "OpaqueRef:v", "k", "v"); err == nil {
		t.Error("no class accepted")
	}
}
