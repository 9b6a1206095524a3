package prismsim_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestDiff: Diff names what appeared (with its fields), disappeared and
// changed (field by field), per kind, matched by uuid; a task running only
// in after counts, one that ended or already ran does not.
func TestDiff(t *testing.T) {
	vm := prismsim.VMObject{UUID: "v1", Name: "web", State: "COMPLETE", PowerState: "ON", Disks: 1}
	snap := prismsim.SnapshotObject{UUID: "s1", Name: "ahvfs-1", VMUUID: "v1", VMName: "web", API: "v3", State: "COMPLETE"}
	vg := prismsim.VolumeGroupObject{UUID: "g1", Name: "ahvfs-restore-1", API: "v2", Disks: 1, Clients: []string{}}
	vgAttached := vg
	vgAttached.Clients = []string{"iqn.2024-01.org.ahvfs:host"}
	img := prismsim.ImageObject{UUID: "i1", Name: "ahvfs-disk-0", State: "COMPLETE", Size: 1 << 20}
	task := prismsim.TaskObject{UUID: "t1", Op: "VmSnapshotCreate", Status: "RUNNING", Entities: []string{"vm_snapshot s2 x"}}
	rp := prismsim.RecoveryPointObject{UUID: "r1", Name: "ahvfs-rp", State: "COMPLETE", Snapshots: []string{"s1"}}
	off := vm
	off.PowerState = "OFF"

	for _, tc := range []struct {
		name          string
		before, after prismsim.Objects
		want          []string
	}{
		{"nothing", prismsim.Objects{}, prismsim.Objects{}, nil},
		{"same objects", prismsim.Objects{VMs: []prismsim.VMObject{vm}, Snapshots: []prismsim.SnapshotObject{snap}},
			prismsim.Objects{VMs: []prismsim.VMObject{vm}, Snapshots: []prismsim.SnapshotObject{snap}}, nil},
		{"snapshot left", prismsim.Objects{VMs: []prismsim.VMObject{vm}},
			prismsim.Objects{VMs: []prismsim.VMObject{vm}, Snapshots: []prismsim.SnapshotObject{snap}},
			[]string{`+ snapshot "ahvfs-1" (s1): api=v3, state=COMPLETE, vm_name=web, vm_uuid=v1`}},
		{"volume group and image left", prismsim.Objects{},
			prismsim.Objects{VolumeGroups: []prismsim.VolumeGroupObject{vgAttached}, Images: []prismsim.ImageObject{img}},
			[]string{`+ volume group "ahvfs-restore-1" (g1): api=v2, clients=[iqn.2024-01.org.ahvfs:host], disks=1`,
				`+ image "ahvfs-disk-0" (i1): size=1.048576e+06, state=COMPLETE`}},
		{"attachment left", prismsim.Objects{VolumeGroups: []prismsim.VolumeGroupObject{vg}},
			prismsim.Objects{VolumeGroups: []prismsim.VolumeGroupObject{vgAttached}},
			[]string{`~ volume group "ahvfs-restore-1" (g1): clients: [] → [iqn.2024-01.org.ahvfs:host]`}},
		{"VM deleted, recovery point gone", prismsim.Objects{VMs: []prismsim.VMObject{vm}, RecoveryPoints: []prismsim.RecoveryPointObject{rp}},
			prismsim.Objects{}, []string{`- VM "web" (v1)`, `- recovery point "ahvfs-rp" (r1)`}},
		{"VM powered off", prismsim.Objects{VMs: []prismsim.VMObject{vm}}, prismsim.Objects{VMs: []prismsim.VMObject{off}},
			[]string{`~ VM "web" (v1): power_state: ON → OFF`}},
		{"task still running", prismsim.Objects{}, prismsim.Objects{RunningTasks: []prismsim.TaskObject{task}},
			[]string{`+ running task "VmSnapshotCreate" (t1): entities=[vm_snapshot s2 x], status=RUNNING`}},
		{"task ended", prismsim.Objects{RunningTasks: []prismsim.TaskObject{task}}, prismsim.Objects{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := prismsim.Diff(tc.before, tc.after)
			var got []string
			for _, c := range d {
				got = append(got, c.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if want := strings.Join(tc.want, "\n"); strings.TrimSuffix(d.String(), "\n") != want {
				t.Errorf("Changes.String() = %q, want %q", d.String(), want)
			}
		})
	}
}

// TestObjects: objects made through v2, v3 and v4 show in Sim.Objects and
// in the admin API's inventory alike, with their names and VM; Diff names
// each, then an attachment's removal, and finds nothing once all is
// deleted.
func TestObjects(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	v := addVMs(t, s, 1, 64<<10)[0]
	ctx := context.Background()
	before := s.Objects()
	if len(before.VMs) != 1 || before.VMs[0].Name != "vm-00" || len(before.Snapshots)+len(before.VolumeGroups)+len(before.Images) != 0 {
		t.Fatalf("before: %+v", before)
	}

	// v3 snapshot, v4 recovery point, v2 volume group attached, v3 image.
	r := a.do("POST", "/api/nutanix/v3/vm_snapshots", map[string]any{
		"spec": map[string]any{"name": "bk-v3", "resources": map[string]any{"entity_uuid": v.UUID}}}).must(t, 202)
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	v3Snap := str(r.body, "metadata.uuid")
	rpData, _ := v4RecoveryPoint(t, a, v.UUID, prismsim.CrashConsistent)
	rpID := str(rpData, "extId")
	r = a.do("POST", "/PrismGateway/services/rest/v2.0/volume_groups/", map[string]any{"name": "bk-vg",
		"disk_list": []any{map[string]any{"create_config": map[string]any{"size": 1 << 20}}}}).must(t, 201)
	vgID := str(a.waitV2Task(str(r.body, "task_uuid")), "entity_list[0].entity_id")
	const iqn = "iqn.2024-01.org.ahvfs:inventory"
	vgPath := "/PrismGateway/services/rest/v2.0/volume_groups/" + vgID
	a.do("POST", vgPath+"/open", map[string]any{"uuid": vgID, "operation": "ATTACH",
		"iscsi_client": map[string]any{"client_address": iqn}}).must(t, 200)
	imgID := createImage(t, a, "bk-img", make([]byte, 4096))

	after := s.Objects()
	remote, err := simtest.Inventory(ctx, simtest.RemoteOf(s), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(remote, after) {
		t.Errorf("GET /sim/inventory:\n%+v\nSim.Objects:\n%+v", remote, after)
	}
	got := map[string]prismsim.Change{}
	for _, c := range prismsim.Diff(before, after) {
		if c.Op != '+' {
			t.Errorf("unexpected change %s", c)
		}
		got[c.UUID] = c
	}
	var rpSnap string
	for _, sn := range after.Snapshots {
		if sn.RecoveryPoint == rpID {
			rpSnap = sn.UUID
		}
	}
	for _, want := range []struct{ uuid, kind, name, detail string }{
		{v3Snap, "snapshot", "bk-v3", "api=v3, state=COMPLETE, vm_name=vm-00, vm_uuid=" + v.UUID},
		{rpSnap, "snapshot", str(rpData, "name"), "api=v4"},
		{rpID, "recovery point", str(rpData, "name"), "snapshots=[" + rpSnap + "]"},
		{vgID, "volume group", "bk-vg", "clients=[" + iqn + "]"},
		{imgID, "image", "bk-img", "size=4096"},
	} {
		c, ok := got[want.uuid]
		if !ok || c.Kind != want.kind || c.Name != want.name || !strings.Contains(c.Detail, want.detail) {
			t.Errorf("change for %s %s: got %+v, want name %q and %q in the detail", want.kind, want.uuid, c, want.name, want.detail)
		}
		delete(got, want.uuid)
	}
	if len(got) > 0 {
		t.Errorf("more changes than made: %v", got)
	}

	// Detaching shows as a change of the volume group.
	a.do("POST", vgPath+"/close", map[string]any{"uuid": vgID, "operation": "DETACH",
		"iscsi_client": map[string]any{"client_address": iqn}}).must(t, 200)
	if d := prismsim.Diff(after, s.Objects()); len(d) != 1 || d[0].Op != '~' || d[0].UUID != vgID ||
		d[0].Detail != "clients: ["+iqn+"] → []" {
		t.Errorf("after detach: %s", d)
	}

	// Deleting everything leaves the cluster as it was.
	r = a.do("DELETE", "/api/nutanix/v3/vm_snapshots/"+v3Snap, nil).must(t, 202)
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	r = a.do("GET", "/api/dataprotection/v4.0/config/recovery-points/"+rpID, nil).must(t, 200)
	r = a.v4("DELETE", "/api/dataprotection/v4.0/config/recovery-points/"+rpID, nil, "If-Match", r.header.Get("ETag")).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	a.waitV2Task(str(a.do("DELETE", vgPath, nil).must(t, 201).body, "task_uuid"))
	r = a.do("DELETE", "/api/nutanix/v3/images/"+imgID, nil).must(t, 202)
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	final, err := simtest.Inventory(ctx, simtest.RemoteOf(s), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	simtest.RequireUnchanged(t, before, final)
}

// TestObjectsRunningTask: a task that has not ended is listed, and Diff
// reports it with the snapshot it is making; Inventory's wait gives up
// after its duration.
func TestObjectsRunningTask(t *testing.T) {
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{TaskDelay: time.Hour}})
	a := newAPI(t, s)
	v := addVMs(t, s, 1, 64<<10)[0]
	before := s.Objects()
	r := a.do("POST", "/api/nutanix/v3/vm_snapshots", map[string]any{
		"spec": map[string]any{"name": "slow", "resources": map[string]any{"entity_uuid": v.UUID}}}).must(t, 202)
	task, snap := str(r.body, "status.execution_context.task_uuid"), str(r.body, "metadata.uuid")
	after, err := simtest.Inventory(context.Background(), simtest.RemoteOf(s), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	d := prismsim.Diff(before, after)
	if len(d) != 2 || d[0].Kind != "snapshot" || d[0].UUID != snap || !strings.Contains(d[0].Detail, "state=PENDING") ||
		d[1].Kind != "running task" || d[1].UUID != task || d[1].Name != "VmSnapshotCreate" {
		t.Errorf("Diff:\n%s", d)
	}
}
