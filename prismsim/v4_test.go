package prismsim_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// v4RecoveryPoint creates an RP of one VM and returns it (GET data) and its ETag.
func v4RecoveryPoint(t *testing.T, a *api, vmUUID, typ string) (map[string]any, string) {
	t.Helper()
	r := a.v4("POST", "/api/dataprotection/v4.0/config/recovery-points", map[string]any{
		"name": "bk", "expirationTime": "2099-01-01T00:00:00Z", "recoveryPointType": typ,
		"vmRecoveryPoints": []any{map[string]any{"vmExtId": vmUUID, "recoveryPointType": typ}}}).must(t, 202)
	if str(r.body, "data.$objectType") != "prism.v4.config.TaskReference" || !strings.HasPrefix(str(r.body, "data.extId"), "ZXJnb24=:") {
		t.Fatalf("task reference: %s", r.raw)
	}
	task := a.waitV4Task(str(r.body, "data.extId"))
	var rpID string
	for _, kv := range list(task, "completionDetails") {
		if str(kv, "name") == "recoveryPointExtId" {
			rpID = str(kv, "value")
		}
	}
	if str(task, "status") != "SUCCEEDED" || rpID == "" {
		t.Fatalf("task: %v", task)
	}
	g := a.do("GET", "/api/dataprotection/v4.0/config/recovery-points/"+rpID, nil).must(t, 200)
	return g.body["data"].(map[string]any), g.header.Get("ETag")
}

func diskRPRef(rp map[string]any) map[string]any {
	return map[string]any{"$objectType": "dataprotection.v4.content.VmDiskRecoveryPointReference",
		"recoveryPointExtId": str(rp, "extId"), "vmRecoveryPointExtId": str(rp, "vmRecoveryPoints[0].extId"),
		"diskRecoveryPointExtId": str(rp, "vmRecoveryPoints[0].diskRecoveryPoints[0].diskRecoveryPointExtId")}
}

// TestV4RecoveryPointsAndChangedRegions: the v4 CBT flow field for field:
// RP create (NTNX-Request-Id required, replay-idempotent) → prism task with
// completionDetails → RP with vm/disk recovery points → discover-cluster
// (own address + JWT) → compute-changed-regions on the JWT cookie only, v4.0
// scope (v4.1 → 401), blockSizeByte alignment, nextOffset/fileSize in
// metadata.extraInfo → ETag/If-Match on delete (412/428).
func TestV4RecoveryPointsAndChangedRegions(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	img := makeDisk(t, t.TempDir(), 64*blk, 0, 9, 30)
	v, err := s.AddVM(context.Background(), "v4vm", []string{img}, prismsim.VMOptions{NGT: prismsim.NGTVSS})
	if err != nil {
		t.Fatal(err)
	}
	// Request id is required and replays.
	a.do("POST", "/api/dataprotection/v4.0/config/recovery-points", map[string]any{"vmRecoveryPoints": []any{map[string]any{"vmExtId": v.UUID}}}).must(t, 400)
	body := map[string]any{"name": "idem", "vmRecoveryPoints": []any{map[string]any{"vmExtId": v.UUID}}}
	r1 := a.do("POST", "/api/dataprotection/v4.1/config/recovery-points", body, "NTNX-Request-Id", "fixed-id-1").must(t, 202)
	r2 := a.do("POST", "/api/dataprotection/v4.1/config/recovery-points", body, "NTNX-Request-Id", "fixed-id-1").must(t, 202)
	if str(r1.body, "data.extId") != str(r2.body, "data.extId") {
		t.Errorf("repeated NTNX-Request-Id made a second task")
	}
	a.waitV4Task(str(r1.body, "data.extId"))
	a.do("GET", "/api/dataprotection/v4.2/config/recovery-points", nil).must(t, 404)

	rp1, _ := v4RecoveryPoint(t, a, v.UUID, "APPLICATION_CONSISTENT")
	if str(rp1, "$objectType") != "dataprotection.v4.config.RecoveryPoint" || str(rp1, "status") != "COMPLETE" ||
		str(rp1, "vmRecoveryPoints[0].vmExtId") != v.UUID || str(rp1, "recoveryPointType") != "APPLICATION_CONSISTENT" ||
		str(rp1, "vmRecoveryPoints[0].diskRecoveryPoints[0].diskExtId") == "" || len(list(rp1, "locationReferences")) != 1 {
		t.Fatalf("recovery point: %v", rp1)
	}
	vmrp := a.do("GET", "/api/dataprotection/v4.0/config/recovery-points/"+str(rp1, "extId")+"/vm-recovery-points/"+str(rp1, "vmRecoveryPoints[0].extId"), nil).must(t, 200)
	if str(vmrp.body, "data.$objectType") != "dataprotection.v4.config.VmRecoveryPoint" {
		t.Errorf("vm recovery point: %s", vmrp.raw)
	}
	live, _ := os.OpenFile(v.Disks[0], os.O_RDWR, 0)
	writeBlock(t, live, 9, false)
	writeBlock(t, live, 50, true)
	live.Close()
	rp2, etag2 := v4RecoveryPoint(t, a, v.UUID, "CRASH_CONSISTENT")

	// discover-cluster needs the $objectType discriminators.
	a.v4("POST", "/api/dataprotection/v4.0/config/recovery-points/"+str(rp2, "extId")+"/$actions/discover-cluster",
		map[string]any{"operation": "COMPUTE_CHANGED_REGIONS"}).must(t, 400)
	d := a.v4("POST", "/api/dataprotection/v4.1/config/recovery-points/"+str(rp2, "extId")+"/$actions/discover-cluster", map[string]any{
		"$objectType": "dataprotection.v4.content.ClusterDiscoverSpec", "operation": "COMPUTE_CHANGED_REGIONS",
		"$specItemDiscriminator": "dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec",
		"spec": map[string]any{"$objectType": "dataprotection.v4.content.ComputeChangedRegionsClusterDiscoverSpec",
			"diskRecoveryPoint": diskRPRef(rp2), "referenceDiskRecoveryPoint": diskRPRef(rp1)}}).must(t, 200)
	jwt := str(d.body, "data.jwtToken")
	if str(d.body, "data.$objectType") != "dataprotection.v4.common.ClusterInfo" || jwt == "" ||
		!strings.Contains(s.URL(), str(d.body, "data.clusterIp.ipv4.value")) {
		t.Fatalf("discover: %s", d.raw)
	}
	path := func(rev string, rp map[string]any) string {
		ref := diskRPRef(rp)
		return fmt.Sprintf("/api/dataprotection/%s/content/recovery-points/%s/vm-recovery-points/%s/disk-recovery-points/%s/$actions/compute-changed-regions",
			rev, ref["recoveryPointExtId"], ref["vmRecoveryPointExtId"], ref["diskRecoveryPointExtId"])
	}
	spec := map[string]any{"$objectType": "dataprotection.v4.content.VmRecoveryPointChangedRegionsComputeSpec",
		"offset": 0, "blockSizeByte": 131072,
		"referenceRecoveryPointExtId": str(rp1, "extId"), "referenceVmRecoveryPointExtId": str(rp1, "vmRecoveryPoints[0].extId"),
		"referenceDiskRecoveryPointExtId": str(rp1, "vmRecoveryPoints[0].diskRecoveryPoints[0].diskRecoveryPointExtId")}
	cookie := "NTNX_IGW_SESSION=" + jwt
	a.v4("POST", path("v4.0", rp2), spec).must(t, 401) // basic auth is not enough on the PE action
	a.user = ""
	a.v4("POST", path("v4.1", rp2), spec, "Cookie", cookie).must(t, 401) // JWT scoped to v4.0
	r := a.v4("POST", path("v4.0", rp2), spec, "Cookie", cookie).must(t, 200)
	got := regionsOf(list(r.body, "data"), "regionType")
	// Block 9 zeroed (64K) in 128K block 4 (whole 128K block 4 now: [512K,640K) had 9 = non-zero half → still non-zero? block 8 is zero, 9 was data):
	// 128K block 4 covers 64K blocks 8,9: before [0, data], after [0, 0] → ZEROED.
	// 128K block 25 covers 64K blocks 50,51: before zero, after [data,0] → REGULAR.
	want := []string{fmt.Sprintf("%d+%d:ZEROED", 4*131072, 131072), fmt.Sprintf("%d+%d:REGULAR", 25*131072, 131072)}
	if !slices.Equal(got, want) || str(r.body, "data[0].$objectType") != "dataprotection.v4.content.ChangedRegion" {
		t.Errorf("changed regions %v, want %v: %s", got, want, r.raw)
	}
	extra := map[string]int64{}
	for _, kv := range list(r.body, "metadata.extraInfo") {
		extra[str(kv, "name")] = num(kv, "value")
	}
	if extra["fileSize"] != 64*blk {
		t.Errorf("extraInfo: %v", extra)
	}
	if _, ok := extra["nextOffset"]; ok {
		t.Errorf("nextOffset present at the end: %v", extra)
	}
	// Paging by length: nextOffset = end of the window.
	spec["length"] = 1 << 20
	r = a.v4("POST", path("v4.0", rp2), spec, "Cookie", cookie).must(t, 200)
	for _, kv := range list(r.body, "metadata.extraInfo") {
		extra[str(kv, "name")] = num(kv, "value")
	}
	if extra["nextOffset"] != 1<<20 || len(list(r.body, "data")) != 1 {
		t.Errorf("windowed: %s", r.raw)
	}
	spec["blockSizeByte"] = 4096
	a.v4("POST", path("v4.0", rp2), spec, "Cookie", cookie).must(t, 400)
	a.user = "admin"

	// List paging.
	r = a.do("GET", "/api/dataprotection/v4.0/config/recovery-points?$limit=1&$page=1", nil).must(t, 200)
	if num(r.body, "metadata.totalAvailableResults") != 3 || len(list(r.body, "data")) != 1 {
		t.Errorf("list: %s", r.raw)
	}
	a.do("GET", "/api/dataprotection/v4.0/config/recovery-points?$limit=101", nil).must(t, 400)

	// ETag / If-Match on delete.
	rpPath := "/api/dataprotection/v4.0/config/recovery-points/" + str(rp2, "extId")
	a.v4("DELETE", rpPath, nil).must(t, 428)
	a.v4("DELETE", rpPath, nil, "If-Match", `"nope"`).must(t, 412)
	r = a.v4("DELETE", rpPath, nil, "If-Match", etag2).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	a.do("GET", rpPath, nil).must(t, 404)
	r = a.do("GET", "/api/dataprotection/v4.0/config/recovery-points/nope", nil).must(t, 404)
	if str(r.body, "data.$objectType") != "dataprotection.v4.error.ErrorResponse" || !strings.HasPrefix(str(r.body, "data.error[0].code"), "DP-") {
		t.Errorf("v4 error envelope: %s", r.raw)
	}
}

// TestV4VMs: vmm VM shape (disks/nics/guestTools/bootConfig with
// $objectType), guest-tools per NGT state, $page/$limit, power actions
// through prism tasks, ETag/If-Match on update, create with a disk from a
// VmDiskRecoveryPointReference and delete.
func TestV4VMs(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	for i, n := range []prismsim.NGT{prismsim.NGTAbsent, prismsim.NGTInstalled, prismsim.NGTVSS} {
		img := makeDisk(t, t.TempDir(), 16*blk, 1)
		if _, err := s.AddVM(context.Background(), fmt.Sprintf("n%d", i), []string{img}, prismsim.VMOptions{NGT: n}); err != nil {
			t.Fatal(err)
		}
	}
	r := a.do("GET", "/api/vmm/v4.0/ahv/config/vms?$limit=2&$page=0", nil).must(t, 200)
	if num(r.body, "metadata.totalAvailableResults") != 3 || len(list(r.body, "data")) != 2 || str(r.body, "$objectType") != "vmm.v4.ahv.config.ListVmsApiResponse" {
		t.Fatalf("list: %s", r.raw)
	}
	var rels []string
	for _, l := range list(r.body, "metadata.links") {
		rels = append(rels, str(l, "rel"))
	}
	if !slices.Contains(rels, "next") {
		t.Errorf("links: %v", rels)
	}
	vm0 := list(r.body, "data")[0]
	for _, p := range []string{"extId", "name", "powerState", "disks[0].extId", "disks[0].diskAddress.busType", "disks[0].backingInfo.$objectType",
		"disks[0].backingInfo.diskExtId", "disks[0].backingInfo.storageContainer.extId", "nics[0].networkInfo.subnet.extId",
		"nics[0].backingInfo.macAddress", "cluster.extId", "bootConfig.$objectType", "guestTools.$objectType"} {
		if get(vm0, p) == nil {
			t.Errorf("v4 VM lacks %s", p)
		}
	}
	vms := s.VMs()
	gt := a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+vms[2].UUID+"/guest-tools", nil).must(t, 200)
	if get(gt.body, "data.isVssSnapshotCapable") != true || !slices.Contains(list(gt.body, "data.capabilities"), any("VSS_SNAPSHOT")) {
		t.Errorf("guest tools vss: %s", gt.raw)
	}
	gt = a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID+"/guest-tools", nil).must(t, 200)
	if get(gt.body, "data.isInstalled") != false {
		t.Errorf("guest tools absent: %s", gt.raw)
	}
	// Power off, then update with If-Match.
	r = a.v4("POST", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID+"/$actions/power-off", nil).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	g := a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID, nil).must(t, 200)
	if str(g.body, "data.powerState") != "OFF" || g.header.Get("ETag") == "" {
		t.Fatalf("after power-off: %s %v", g.raw, g.header)
	}
	upd := g.body["data"].(map[string]any)
	upd["name"] = "renamed"
	a.v4("PUT", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID, upd, "If-Match", `"stale"`).must(t, 412)
	r = a.v4("PUT", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID, upd, "If-Match", g.header.Get("ETag")).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	a.v4("PUT", "/api/vmm/v4.0/ahv/config/vms/"+vms[0].UUID, upd, "If-Match", g.header.Get("ETag")).must(t, 412)

	// Create a VM whose disk comes from a disk recovery point (restore).
	rp, _ := v4RecoveryPoint(t, a, vms[1].UUID, "CRASH_CONSISTENT")
	sub := a.do("GET", "/api/networking/v4.0/config/subnets?$filter=name eq 'vlan20'", nil).must(t, 200)
	create := map[string]any{"name": "from-rp", "numSockets": 1, "numCoresPerSocket": 2, "memorySizeBytes": 1 << 30,
		"disks": []any{map[string]any{"diskAddress": map[string]any{"busType": "SCSI", "index": 0},
			"backingInfo": map[string]any{"$objectType": "vmm.v4.ahv.config.VmDisk", "dataSource": map[string]any{
				"reference": map[string]any{"$objectType": "vmm.v4.ahv.config.VmDiskRecoveryPointReference",
					"vmRecoveryPointExtId": str(rp, "vmRecoveryPoints[0].extId"), "diskRecoveryPointExtId": str(rp, "vmRecoveryPoints[0].diskRecoveryPoints[0].diskRecoveryPointExtId")}}}}},
		"nics": []any{map[string]any{"networkInfo": map[string]any{"subnet": map[string]any{"extId": str(sub.body, "data[0].extId")}}}}}
	r = a.v4("POST", "/api/vmm/v4.0/ahv/config/vms", create).must(t, 202)
	if st := a.waitV4Task(str(r.body, "data.extId")); str(st, "status") != "SUCCEEDED" {
		t.Fatalf("create: %v", st)
	}
	info, ok := s.VM("from-rp")
	if !ok || string(readAll(t, info.Disks[0])) != string(readAll(t, vms[1].Disks[0])) {
		t.Fatalf("restored VM disk differs from its source")
	}
	g = a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+info.UUID, nil).must(t, 200)
	r = a.v4("DELETE", "/api/vmm/v4.0/ahv/config/vms/"+info.UUID, nil, "If-Match", g.header.Get("ETag")).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	a.do("GET", "/api/vmm/v4.0/ahv/config/vms/"+info.UUID, nil).must(t, 404)

	// clustermgmt: DSIP under network.externalDataServiceIp.
	r = a.do("GET", "/api/clustermgmt/v4.0/config/clusters?$filter=name eq 'cluster-a'", nil).must(t, 200)
	if str(r.body, "data[0].network.externalDataServiceIp.ipv4.value") == "" {
		t.Errorf("cluster: %s", r.raw)
	}
}
