package xapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/xapi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenRecords decodes real-looking records (testdata/*_record.json)
// and compares the result with testdata/*.golden.
func TestGoldenRecords(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		get          func(*xapi.Client) (any, error)
	}{
		{"vm", "VM.get_record", func(c *xapi.Client) (any, error) { return c.VM(context.Background(), "OpaqueRef:vm") }},
		{"vdi", "VDI.get_record", func(c *xapi.Client) (any, error) { return c.VDI(context.Background(), "OpaqueRef:vdi") }},
		{"vbd", "VBD.get_record", func(c *xapi.Client) (any, error) { return c.VBD(context.Background(), "OpaqueRef:vbd") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire, err := os.ReadFile(filepath.Join("testdata", tc.name+"_record.json"))
			if err != nil {
				t.Fatal(err)
			}
			f := newFake(t)
			f.returns(tc.method, json.RawMessage(wire))
			got, err := tc.get(f.connect(t))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(got, "", "  ")
			out = append(out, '\n')
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("%s differs from %s (run with -update to accept):\n%s", tc.name, golden, out)
			}
		})
	}
}

func TestGoldenVMHelpers(t *testing.T) {
	wire, _ := os.ReadFile("testdata/vm_record.json")
	f := newFake(t)
	f.returns("VM.get_record", json.RawMessage(wire))
	vm, err := f.connect(t).VM(context.Background(), "OpaqueRef:vm")
	if err != nil {
		t.Fatal(err)
	}
	if vm.Firmware() != "uefi" || !vm.SecureBoot() || !vm.SnapshotOf.IsNull() || !vm.SnapshotTime.IsZero() {
		t.Errorf("helpers: %s %v %v %v", vm.Firmware(), vm.SecureBoot(), vm.SnapshotOf, vm.SnapshotTime)
	}
	if (xapi.VM{}).Firmware() != "bios" {
		t.Error("default firmware is not bios")
	}
}

func TestRecordDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  string
		want xapi.VDI
		err  string
	}{
		{name: "ints as numbers and strings", rec: `{"virtual_size":"1073741824","physical_utilisation":512}`,
			want: xapi.VDI{VirtualSize: 1 << 30, PhysicalUtilisation: 512}},
		{name: "int as float text", rec: `{"virtual_size":1.073741824e9,"physical_utilisation":""}`,
			want: xapi.VDI{VirtualSize: 1 << 30}},
		{name: "XML-RPC datetime", rec: `{"snapshot_time":"20261204T03:19:07Z"}`,
			want: xapi.VDI{SnapshotTime: time.Date(2026, 12, 4, 3, 19, 7, 0, time.UTC)}},
		{name: "datetime without zone", rec: `{"snapshot_time":"20261204T03:19:07"}`,
			want: xapi.VDI{SnapshotTime: time.Date(2026, 12, 4, 3, 19, 7, 0, time.UTC)}},
		{name: "RFC 3339", rec: `{"snapshot_time":"2026-12-04T04:19:07+01:00"}`,
			want: xapi.VDI{SnapshotTime: time.Date(2026, 12, 4, 3, 19, 7, 0, time.UTC)}},
		{name: "epoch is unset", rec: `{"snapshot_time":"19700101T00:00:00Z"}`, want: xapi.VDI{}},
		{name: "null ref and null fields", rec: `{"snapshot_of":"OpaqueRef:NULL","SR":null,"VBDs":null,"other_config":null,"uuid":null}`,
			want: xapi.VDI{SnapshotOf: xapi.NullRef}},
		{name: "maps", rec: `{"other_config":{"a":"1","n":2,"b":true,"z":null},"VBDs":[]}`,
			want: xapi.VDI{OtherConfig: map[string]string{"a": "1", "n": "2", "b": "true", "z": ""}, VBDs: []xapi.Ref{}}},
		{name: "bools as strings", rec: `{"cbt_enabled":"true","sharable":"False","missing":false}`,
			want: xapi.VDI{CBTEnabled: true}},
		{name: "missing fields", rec: `{"uuid":"u","extra":{"deep":[1,2]}}`, want: xapi.VDI{UUID: "u"}},
		{name: "bad int", rec: `{"virtual_size":"ten","uuid":7}`, err: "field virtual_size"},
		{name: "bad time", rec: `{"snapshot_time":"yesterday"}`, err: "field snapshot_time"},
		{name: "bad map", rec: `{"other_config":["a"]}`, err: "field other_config: want an object"},
		{name: "bad bool", rec: `{"managed":"perhaps"}`, err: "field managed"},
		{name: "bad list", rec: `{"VBDs":"OpaqueRef:x"}`, err: "field VBDs: want an array"},
		{name: "int overflow", rec: `{"virtual_size":1e30}`, err: "field virtual_size"},
		{name: "not an object", rec: `[1]`, err: "not a JSON object"},
		{name: "null record", rec: `null`, err: "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.returns("VDI.get_record", json.RawMessage(tc.rec))
			got, err := f.connect(t).VDI(context.Background(), "OpaqueRef:d")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				contains(t, err.Error(), "VDI record OpaqueRef:d")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Ref = "OpaqueRef:d"
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestListsAndLookups(t *testing.T) {
	f := newFake(t)
	f.returns("SR.get_all_records", map[string]any{
		"OpaqueRef:b": map[string]any{"uuid": "2", "name_label": "Local storage", "type": "ext", "physical_size": "107374182400", "shared": false},
		"OpaqueRef:a": map[string]any{"uuid": "1", "name_label": "NFS", "type": "nfs", "content_type": "user", "shared": true},
		"OpaqueRef:c": map[string]any{"uuid": "0", "name_label": "Local storage", "type": "lvm"},
	})
	f.returns("host.get_all_records", map[string]any{"OpaqueRef:h": map[string]any{"uuid": "h1", "name_label": "xcp1",
		"address": "10.0.0.5", "software_version": map[string]any{"product_version": "8.3.0", "xapi": "25.6"}}})
	f.returns("network.get_all_records", map[string]any{"OpaqueRef:n": map[string]any{"uuid": "n1", "name_label": "Pool-wide network associated with eth0", "bridge": "xenbr0", "MTU": "1500"}})
	f.returns("VIF.get_record", map[string]any{"uuid": "v", "device": "0", "network": "OpaqueRef:n", "VM": "OpaqueRef:vm", "MAC": "aa:bb:cc:dd:ee:ff", "MTU": 9000, "MAC_autogenerated": true, "currently_attached": true})
	f.returns("VM_guest_metrics.get_record", map[string]any{"PV_drivers_detected": true, "PV_drivers_version": map[string]any{"major": "9"}, "os_version": map[string]any{"name": "Debian 12"}, "other": map[string]any{"feature-quiesce": "1"}})
	f.returns("VM.get_by_name_label", []string{"OpaqueRef:v1", "OpaqueRef:v2"})
	f.handle("VM.get_record", func(p []json.RawMessage) (any, error) { return map[string]any{"uuid": str(p[0])}, nil })
	c := f.connect(t)
	ctx := context.Background()

	srs, err := c.SRs(ctx)
	if err != nil || len(srs) != 3 || srs[0].Ref != "OpaqueRef:c" || srs[1].PhysicalSize != 100<<30 || srs[2].Ref != "OpaqueRef:a" || !srs[2].Shared {
		t.Errorf("SRs = %+v, %v", srs, err)
	}
	hosts, err := c.Hosts(ctx)
	if err != nil || len(hosts) != 1 || hosts[0].SoftwareVersion["product_version"] != "8.3.0" || hosts[0].Address != "10.0.0.5" {
		t.Errorf("Hosts = %+v, %v", hosts, err)
	}
	nets, err := c.Networks(ctx)
	if err != nil || len(nets) != 1 || nets[0].MTU != 1500 || nets[0].Bridge != "xenbr0" {
		t.Errorf("Networks = %+v, %v", nets, err)
	}
	vif, err := c.VIF(ctx, "OpaqueRef:vif")
	if err != nil || vif.MTU != 9000 || !vif.MACAutogenerated || vif.Network != "OpaqueRef:n" {
		t.Errorf("VIF = %+v, %v", vif, err)
	}
	gm, err := c.GuestMetrics(ctx, "OpaqueRef:gm")
	if err != nil || !gm.PVDriversDetected || gm.Other["feature-quiesce"] != "1" {
		t.Errorf("GuestMetrics = %+v, %v", gm, err)
	}
	vms, err := c.VMsByName(ctx, "web")
	if err != nil || len(vms) != 2 || vms[1].UUID != "OpaqueRef:v2" || vms[1].Ref != "OpaqueRef:v2" {
		t.Errorf("VMsByName = %+v, %v", vms, err)
	}
}
