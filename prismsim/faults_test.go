package prismsim_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestFaults: injected 429 (v3 and v4 envelopes, Retry-After) and 500 at
// the configured rate, latency, failing tasks (v3 FAILED with error_detail,
// v4 FAILED with errorMessages, no entity left behind), a snapshot deleted
// behind the client's back, and the /sim/faults admin endpoint.
func TestFaults(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	v := addVMs(t, s, 1, 16*blk)[0]

	if err := s.SetFaults(prismsim.Faults{Rate429: 1}); err != nil {
		t.Fatal(err)
	}
	r := a.do("POST", "/api/nutanix/v3/vms/list", "{}").must(t, 429)
	if str(r.body, "message_list[0].reason") != "TOO_MANY_REQUESTS" || r.header.Get("Retry-After") == "" {
		t.Errorf("v3 429: %s", r.raw)
	}
	r = a.do("GET", "/api/vmm/v4.0/ahv/config/vms", nil).must(t, 429)
	if str(r.body, "data.$objectType") != "vmm.v4.error.ErrorResponse" {
		t.Errorf("v4 429: %s", r.raw)
	}
	a.do("GET", "/sim/faults", nil).must(t, 200) // the admin endpoint is exempt

	// A 30% rate of 500s over 200 requests.
	s.SetFaults(prismsim.Faults{Rate500: 0.3})
	n500 := 0
	for i := 0; i < 200; i++ {
		if a.do("POST", "/api/nutanix/v3/clusters/list", "{}").code == 500 {
			n500++
		}
	}
	if n500 < 30 || n500 > 95 || s.InjectedErrors(500) != n500 {
		t.Errorf("500s: %d of 200 (counted %d)", n500, s.InjectedErrors(500))
	}

	// Latency through the admin endpoint.
	a.do("PUT", "/sim/faults", map[string]any{"latency": "150ms"}).must(t, 200)
	start := time.Now()
	a.do("POST", "/api/nutanix/v3/clusters/list", "{}").must(t, 200)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("latency %v", d)
	}
	var f prismsim.Faults
	b, _ := json.Marshal(a.do("GET", "/sim/faults", nil).body)
	json.Unmarshal(b, &struct{ *prismsim.Faults }{&f})
	s.SetFaults(prismsim.Faults{})

	// Failing tasks: the next snapshot task fails and leaves nothing.
	s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"snapshot"}})
	r = a.do("POST", "/api/nutanix/v3/vm_snapshots", map[string]any{"spec": map[string]any{"name": "x",
		"resources": map[string]any{"entity_uuid": v.UUID}}}).must(t, 202)
	st := a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	if str(st, "status") != "FAILED" || str(st, "error_detail") == "" {
		t.Errorf("task: %v", st)
	}
	a.do("GET", "/api/nutanix/v3/vm_snapshots/"+str(r.body, "metadata.uuid"), nil).must(t, 404)
	s.SetFaults(prismsim.Faults{FailTaskRate: 1})
	r = a.v4("POST", "/api/dataprotection/v4.0/config/recovery-points", map[string]any{"vmRecoveryPoints": []any{map[string]any{"vmExtId": v.UUID}}}).must(t, 202)
	t4 := a.waitV4Task(str(r.body, "data.extId"))
	if str(t4, "status") != "FAILED" || str(t4, "errorMessages[0].message") == "" {
		t.Errorf("v4 task: %v", t4)
	}
	s.SetFaults(prismsim.Faults{})

	// A snapshot deleted behind the client's back.
	snap := v3Snapshot(t, a, v.UUID, "gone", "CRASH_CONSISTENT")
	id := str(snap, "metadata.uuid")
	a.do("DELETE", "/sim/snapshots/"+id, nil).must(t, 204)
	a.do("GET", "/api/nutanix/v3/vm_snapshots/"+id, nil).must(t, 404)
	a.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": str(snap, "status.snapshot_file_list[0].snapshot_file_path")}).must(t, 400)
	rp, _ := v4RecoveryPoint(t, a, v.UUID, "CRASH_CONSISTENT")
	if err := s.DeleteSnapshotBehindBack(str(rp, "extId")); err != nil {
		t.Fatal(err)
	}
	a.do("GET", "/api/dataprotection/v4.0/config/recovery-points/"+str(rp, "extId"), nil).must(t, 404)
}

// TestRestartKeepsState: a new simulator on the same state directory keeps
// VMs, snapshots and the password.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{StateDir: dir}})
	a := newAPI(t, s)
	v := addVMs(t, s, 2, 16*blk)[0]
	snap := v3Snapshot(t, a, v.UUID, "keep", "CRASH_CONSISTENT")
	pw := s.Password()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := prismsim.New(context.Background(), prismsim.Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Password() != pw || len(s2.VMs()) != 2 {
		t.Fatalf("after restart: %d VMs", len(s2.VMs()))
	}
	a2 := newAPI(t, s2)
	g := a2.do("GET", "/api/nutanix/v3/vm_snapshots/"+str(snap, "metadata.uuid"), nil).must(t, 200)
	a2.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": str(g.body, "status.snapshot_file_list[0].snapshot_file_path")}).must(t, 200)
}

// TestFaultFailFirst: the first N requests of every distinct method and
// path are answered 500, the next one goes through; the query does not
// make a request distinct; setting the faults (here through /sim/faults)
// starts the counts again.
func TestFaultFailFirst(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	if err := s.SetFaults(prismsim.Faults{FailFirst: 2}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/vmm/v4.0/ahv/config/vms", "/api/nutanix/v3/clusters/list"} {
		method, body := "GET", any(nil)
		if strings.HasSuffix(p, "/list") {
			method, body = "POST", "{}"
		}
		r := a.do(method, p+"?x=1", body).must(t, 500)
		if !strings.Contains(string(r.raw), "injected") {
			t.Errorf("%s: %s", p, r.raw)
		}
		a.do(method, p+"?x=2", body).must(t, 500)
		a.do(method, p, body).must(t, 200)
		a.do(method, p, body).must(t, 200)
	}
	if n := s.InjectedErrors(500); n != 4 {
		t.Errorf("InjectedErrors(500) = %d, want 4", n)
	}
	r := a.do("PUT", "/sim/faults", map[string]any{"fail_first": 1}).must(t, 200)
	if num(r.body, "fail_first") != 1 {
		t.Errorf("/sim/faults: %s", r.raw)
	}
	a.do("GET", "/api/vmm/v4.0/ahv/config/vms", nil).must(t, 500)
	a.do("GET", "/api/vmm/v4.0/ahv/config/vms", nil).must(t, 200)
	a.do("PUT", "/sim/faults", map[string]any{"fail_first": -1}).must(t, 400)
}

// TestFaultSnapshotVisibility: HideV3CBT hides vm_snapshots and
// changed_regions as Prism Central does; SeparateSnapshotAPIs makes a
// snapshot unreachable by ID through an API other than its own.
func TestFaultSnapshotVisibility(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	v := addVMs(t, s, 1, 16*blk)[0]
	v3 := str(v3Snapshot(t, a, v.UUID, "v3", "CRASH_CONSISTENT"), "metadata.uuid")
	v2 := "0f6e2a44-5d1c-4c3e-9a55-2b9d7c1e8f00"
	r := a.do("POST", "/api/nutanix/v2.0/snapshots/", map[string]any{"snapshot_specs": []any{
		map[string]any{"vm_uuid": v.UUID, "snapshot_name": "v2", "uuid": v2}}}).must(t, 201)
	if st := a.waitV2Task(str(r.body, "task_uuid")); str(st, "progress_status") != "Succeeded" {
		t.Fatalf("v2 snapshot task: %v", st)
	}
	both := func(code3, code2 int) {
		t.Helper()
		for _, id := range []string{v3, v2} {
			a.do("GET", "/api/nutanix/v3/vm_snapshots/"+id, nil).must(t, map[string]int{v3: 200, v2: code3}[id])
			a.do("GET", "/api/nutanix/v2.0/snapshots/"+id, nil).must(t, map[string]int{v3: code2, v2: 200}[id])
			a.do("GET", "/PrismGateway/services/rest/v2.0/snapshots/"+id, nil).must(t, map[string]int{v3: code2, v2: 200}[id])
		}
	}
	both(200, 200) // by default every snapshot is seen through both
	s.SetFaults(prismsim.Faults{SeparateSnapshotAPIs: true})
	both(404, 404)
	a.do("DELETE", "/api/nutanix/v2.0/snapshots/"+v3, nil).must(t, 404)
	a.do("POST", "/api/nutanix/v3/vm_snapshots/list", "{}").must(t, 200)

	s.SetFaults(prismsim.Faults{HideV3CBT: true})
	a.do("POST", "/api/nutanix/v3/vm_snapshots/list", "{}").must(t, 404)
	a.do("GET", "/api/nutanix/v3/vm_snapshots/"+v3, nil).must(t, 404)
	a.do("POST", "/api/nutanix/v3/data/changed_regions", "{}").must(t, 404)
	a.do("GET", "/api/nutanix/v2.0/snapshots/"+v3, nil).must(t, 200)
	a.do("POST", "/api/nutanix/v3/clusters/list", "{}").must(t, 200)
	s.SetFaults(prismsim.Faults{})
	a.do("POST", "/api/nutanix/v3/data/changed_regions", "{}").must(t, 422)
}
