package prismsim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

func addVMs(t *testing.T, s *prismsim.Sim, n int, size int64) []prismsim.VMInfo {
	t.Helper()
	var out []prismsim.VMInfo
	for i := 0; i < n; i++ {
		img := makeDisk(t, t.TempDir(), size, 0, 3)
		v, err := s.AddVM(context.Background(), fmt.Sprintf("vm-%02d", i), []string{img}, prismsim.VMOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestAuth: 401 (non-JSON) without or with wrong credentials on every API
// family; Basic works and issues a session cookie that works alone.
func TestAuth(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	a.user = ""
	for _, p := range []string{"/api/nutanix/v3/clusters/list", "/PrismGateway/services/rest/v2.0/cluster", "/api/vmm/v4.0/ahv/config/vms", "/sim/faults"} {
		method := "GET"
		if strings.HasSuffix(p, "/list") {
			method = "POST"
		}
		r := a.do(method, p, nil)
		if r.code != 401 || r.body != nil {
			t.Errorf("%s without auth: %d %s, want 401 with a non-JSON body", p, r.code, r.raw)
		}
	}
	a.user, a.pass = "admin", "wrong"
	a.do("POST", "/api/nutanix/v3/clusters/list", "{}").must(t, 401)
	a.pass = s.Password()
	r := a.do("POST", "/api/nutanix/v3/clusters/list", "{}").must(t, 200)
	var cookie string
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "NTNX_IGW_SESSION=") {
			cookie = strings.SplitN(c, ";", 2)[0]
		}
	}
	if cookie == "" {
		t.Fatalf("no session cookie in %v", r.header)
	}
	a.user = ""
	a.do("POST", "/api/nutanix/v3/clusters/list", "{}", "Cookie", cookie).must(t, 200)
	s.ExpireSessions()
	a.do("POST", "/api/nutanix/v3/clusters/list", "{}", "Cookie", cookie).must(t, 401)
	if pw, _ := os.ReadFile(s.PasswordFile()); strings.TrimSpace(string(pw)) != s.Password() {
		t.Errorf("password file holds %q", pw)
	}
}

// TestV3ListPagingAndFilter: offset/length paging covers every VM exactly
// once and total_matches is right; FIQL vm_name filter works.
func TestV3ListPagingAndFilter(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	addVMs(t, s, 5, 1<<20)
	a := newAPI(t, s)
	var seen []string
	for off := 0; ; off += 2 {
		r := a.do("POST", "/api/nutanix/v3/vms/list", map[string]any{"kind": "vm", "offset": off, "length": 2}).must(t, 200)
		if num(r.body, "metadata.total_matches") != 5 {
			t.Fatalf("total_matches: %s", r.raw)
		}
		for _, e := range list(r.body, "entities") {
			seen = append(seen, str(e, "metadata.uuid"))
		}
		if int64(off+2) >= num(r.body, "metadata.total_matches") {
			break
		}
	}
	slices.Sort(seen)
	if len(slices.Compact(seen)) != 5 {
		t.Fatalf("paging saw %v", seen)
	}
	r := a.do("POST", "/api/nutanix/v3/vms/list", map[string]any{"filter": "vm_name==vm-03"}).must(t, 200)
	if e := list(r.body, "entities"); len(e) != 1 || str(e[0], "spec.name") != "vm-03" || num(r.body, "metadata.total_matches") != 1 {
		t.Fatalf("filter: %s", r.raw)
	}
	// Topology: PC + two clusters with DSIP; two subnets per cluster.
	r = a.do("POST", "/api/nutanix/v3/clusters/list", map[string]any{}).must(t, 200)
	var names []string
	for _, e := range list(r.body, "entities") {
		names = append(names, str(e, "status.name"))
		svc := list(e, "status.resources.config.service_list")
		if svc[0] == "AOS" && str(e, "status.resources.network.external_data_services_ip") == "" {
			t.Errorf("cluster %s has no external_data_services_ip", str(e, "status.name"))
		}
	}
	if strings.Join(names, ",") != "prism-central,cluster-a,cluster-b" {
		t.Errorf("clusters: %v", names)
	}
	r = a.do("POST", "/api/nutanix/v3/subnets/list", map[string]any{"length": 100}).must(t, 200)
	if num(r.body, "metadata.total_matches") != 4 {
		t.Errorf("subnets: %s", r.raw)
	}
}

// TestV3Errors: the v3 error envelope (state ERROR, code, message_list with
// reason) for 404, type errors (422) and version conflicts (409).
func TestV3Errors(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	r := a.do("GET", "/api/nutanix/v3/vms/5e8c0a49-4c1b-4ad2-8b2c-000000000000", nil).must(t, 404)
	if str(r.body, "state") != "ERROR" || num(r.body, "code") != 404 || str(r.body, "kind") != "vm" ||
		str(r.body, "message_list[0].reason") != "ENTITY_NOT_FOUND" || str(r.body, "api_version") != "3.1" {
		t.Errorf("404 envelope: %s", r.raw)
	}
	r = a.do("POST", "/api/nutanix/v3/vms/list", `{"offset":"0"}`).must(t, 422)
	if !strings.Contains(str(r.body, "message_list[0].message"), "is not of type 'integer'") {
		t.Errorf("422: %s", r.raw)
	}
	a.do("POST", "/api/nutanix/v3/data/changed_regions", "").must(t, 422)
}

// TestV3VMLifecycle: image upload → VM create from the image → the disk file
// holds the image; power off via PUT spec (spec_version checked, stale →
// 409); delete.
func TestV3VMLifecycle(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	img := make([]byte, 3<<20)
	rand.Read(img[1<<20 : 2<<20])
	imID := createImage(t, a, "restore-img", img)

	r := a.do("POST", "/api/nutanix/v3/subnets/list", map[string]any{"filter": "name==vlan20"}).must(t, 200)
	subnet := str(r.body, "entities[0].metadata.uuid")
	body := map[string]any{"metadata": map[string]any{"kind": "vm"}, "spec": map[string]any{"name": "restored",
		"resources": map[string]any{"num_sockets": 2, "memory_size_mib": 1024, "power_state": "ON",
			"disk_list": []any{
				map[string]any{"device_properties": map[string]any{"device_type": "DISK", "disk_address": map[string]any{"adapter_type": "SCSI", "device_index": 0}},
					"data_source_reference": map[string]any{"kind": "image", "uuid": imID}},
				map[string]any{"disk_size_mib": 8, "device_properties": map[string]any{"device_type": "DISK", "disk_address": map[string]any{"adapter_type": "SCSI", "device_index": 1}}},
			},
			"nic_list": []any{map[string]any{"subnet_reference": map[string]any{"kind": "subnet", "uuid": subnet}}}}}}
	r = a.do("POST", "/api/nutanix/v3/vms", body).must(t, 202)
	vmID := str(r.body, "metadata.uuid")
	if st := a.waitV3Task(str(r.body, "status.execution_context.task_uuid")); str(st, "status") != "SUCCEEDED" {
		t.Fatalf("create task: %v", st)
	}
	info, ok := s.VM("restored")
	if !ok || len(info.Disks) != 2 || !strings.HasSuffix(info.Disks[0], "/vms/restored/disk-0.raw") {
		t.Fatalf("vm: %+v", info)
	}
	if !bytes.Equal(readAll(t, info.Disks[0]), img) {
		t.Errorf("restored disk-0 differs from the image")
	}
	vmr := a.do("GET", "/api/nutanix/v3/vms/"+vmID, nil).must(t, 200)
	if str(vmr.body, "status.state") != "COMPLETE" || str(vmr.body, "status.resources.power_state") != "ON" ||
		str(vmr.body, "spec.resources.nic_list[0].subnet_reference.name") != "vlan20" ||
		num(vmr.body, "status.resources.disk_list[1].disk_size_bytes") != 8<<20 {
		t.Errorf("vm: %s", vmr.raw)
	}
	// Power off via PUT.
	spec := vmr.body["spec"].(map[string]any)
	spec["resources"].(map[string]any)["power_state"] = "OFF"
	put := map[string]any{"api_version": "3.1", "metadata": vmr.body["metadata"], "spec": spec}
	r = a.do("PUT", "/api/nutanix/v3/vms/"+vmID, put).must(t, 202)
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	a.do("PUT", "/api/nutanix/v3/vms/"+vmID, put).must(t, 409) // stale spec_version
	vmr = a.do("GET", "/api/nutanix/v3/vms/"+vmID, nil).must(t, 200)
	if str(vmr.body, "status.resources.power_state") != "OFF" || num(vmr.body, "metadata.spec_version") != 1 {
		t.Errorf("after power off: %s", vmr.raw)
	}
	r = a.do("DELETE", "/api/nutanix/v3/vms/"+vmID, nil).must(t, 202)
	if str(r.body, "status.state") != "DELETE_PENDING" {
		t.Errorf("delete: %s", r.raw)
	}
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	a.do("GET", "/api/nutanix/v3/vms/"+vmID, nil).must(t, 404)
	if _, err := os.Stat(info.Disks[0]); !os.IsNotExist(err) {
		t.Errorf("disk file left after delete: %v", err)
	}
}

func createImage(t *testing.T, a *api, name string, data []byte) string {
	t.Helper()
	r := a.do("POST", "/api/nutanix/v3/images", map[string]any{"metadata": map[string]any{"kind": "image"},
		"spec": map[string]any{"name": name, "resources": map[string]any{"image_type": "DISK_IMAGE"}}}).must(t, 202)
	id := str(r.body, "metadata.uuid")
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	sum := sha256.Sum256(data)
	a.do("PUT", "/api/nutanix/v3/images/"+id+"/file", data, "Content-Type", "application/octet-stream",
		"X-Nutanix-Checksum-Type", "SHA_256", "X-Nutanix-Checksum-Bytes", hex.EncodeToString(sum[:])).must(t, 200)
	return id
}

// TestImagesUploadDownloadRange: upload with checksum, bad checksum refused,
// second upload refused, size reported, full and ranged downloads exact.
func TestImagesUploadDownloadRange(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	id := createImage(t, a, "img", data)
	a.do("PUT", "/api/nutanix/v3/images/"+id+"/file", data).must(t, 409)

	r := a.do("POST", "/api/nutanix/v3/images", map[string]any{"spec": map[string]any{"name": "bad", "resources": map[string]any{}}}).must(t, 202)
	bad := str(r.body, "metadata.uuid")
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	a.do("PUT", "/api/nutanix/v3/images/"+bad+"/file", data, "X-Nutanix-Checksum-Type", "SHA_256", "X-Nutanix-Checksum-Bytes", strings.Repeat("0", 64)).must(t, 400)

	r = a.do("GET", "/api/nutanix/v3/images/"+id, nil).must(t, 200)
	if num(r.body, "status.resources.size_bytes") != int64(len(data)) || str(r.body, "status.state") != "COMPLETE" {
		t.Errorf("image: %s", r.raw)
	}
	r = a.do("GET", "/api/nutanix/v3/images/"+id+"/file", nil).must(t, 200)
	if !bytes.Equal(r.raw, data) {
		t.Errorf("download differs (%d bytes)", len(r.raw))
	}
	r = a.do("GET", "/api/nutanix/v3/images/"+id+"/file", nil, "Range", "bytes=1048570-2097159").must(t, 206)
	if !bytes.Equal(r.raw, data[1048570:2097160]) || r.header.Get("Content-Range") != fmt.Sprintf("bytes 1048570-2097159/%d", len(data)) {
		t.Errorf("range: %d bytes, %s", len(r.raw), r.header.Get("Content-Range"))
	}
	// v4 download of the same image.
	r = a.do("GET", "/api/vmm/v4.0/content/images/"+id+"/file", nil, "Range", "bytes=0-99").must(t, 206)
	if !bytes.Equal(r.raw, data[:100]) {
		t.Errorf("v4 range differs")
	}
}

// TestV3CreateIdempotent: a v3 create sent again with the same
// metadata.uuid (a client retrying after a lost answer) gets the first
// answer and makes nothing more; another uuid makes another snapshot.
func TestV3CreateIdempotent(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	vm, err := s.AddVM(context.Background(), "web01", nil, prismsim.VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPI(t, s)
	body := func(uuid string) map[string]any {
		return map[string]any{"api_version": "3.0", "metadata": map[string]any{"kind": "vm_snapshot", "uuid": uuid},
			"spec": map[string]any{"name": "s", "resources": map[string]any{"entity_uuid": vm.UUID}}}
	}
	first := a.do("POST", "/api/nutanix/v3/vm_snapshots", body("0b6d5c1e-0000-4000-8000-000000000001")).must(t, 202)
	again := a.do("POST", "/api/nutanix/v3/vm_snapshots", body("0b6d5c1e-0000-4000-8000-000000000001")).must(t, 202)
	if str(first.body, "metadata.uuid") != str(again.body, "metadata.uuid") {
		t.Fatalf("the repeated create answered another snapshot: %s vs %s", first.raw, again.raw)
	}
	s.WaitTasks(10 * time.Second)
	if n := len(s.Objects().Snapshots); n != 1 {
		t.Fatalf("%d snapshots after a repeated create, want 1", n)
	}
	a.do("POST", "/api/nutanix/v3/vm_snapshots", body("0b6d5c1e-0000-4000-8000-000000000002")).must(t, 202)
	s.WaitTasks(10 * time.Second)
	if n := len(s.Objects().Snapshots); n != 2 {
		t.Fatalf("%d snapshots after a second create, want 2", n)
	}
}
