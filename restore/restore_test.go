package restore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/ahvfs/ahvfs/restore"
)

func connect(t *testing.T, s *prismsim.Sim, api nutanix.APIVersion) *nutanix.Client {
	t.Helper()
	c, err := nutanix.Connect(context.Background(), nutanix.Options{Endpoint: s.URL(), User: s.User(), PasswordFile: s.PasswordFile(),
		CACertFile: s.CAFile(), API: api, TaskTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// simConfig is the configuration of a VM on cluster-a, vlan10, in the
// shape of a Prism VM (an unversioned document, as `ahvfs import
// --config` takes it).
func simConfig(t *testing.T, c nutanix.Cluster, uuid string, sizes ...int64) map[string]any {
	t.Helper()
	cfg := map[string]any{"Name": "web01", "UUID": uuid, "NumSockets": 2, "CoresPerSocket": 2, "VCPUs": 4,
		"MemoryBytes": 3 << 30, "BootType": "UEFI", "MachineType": "Q35"}
	cls, err := c.ListClusters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cls {
		if cl.Name == "cluster-a" {
			cfg["ClusterUUID"], cfg["ClusterName"] = cl.UUID, cl.Name
		}
	}
	var disks []map[string]any
	for i, sz := range sizes {
		disks = append(disks, map[string]any{"Bus": "SCSI", "Index": i, "SizeBytes": sz})
	}
	cfg["Disks"] = disks
	cfg["NICs"] = []map[string]any{{"SubnetName": "vlan10", "MAC": "50:6b:8d:aa:bb:01", "Model": "VIRTIO", "IsConnected": true}}
	return cfg
}

// leftovers lists images and volume groups on the simulator (the client
// has no list calls for them).
func leftovers(t *testing.T, s *prismsim.Sim) (images, vgs []string) {
	t.Helper()
	hc := simtest.HTTPClient(t, s)
	do := func(method, path, body string, out any) {
		rq, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		rq.SetBasicAuth(s.User(), s.Password())
		rq.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %s", method, path, b)
		}
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
	var il struct {
		Entities []struct {
			Spec struct{ Name string }
		}
	}
	do("POST", "/api/nutanix/v3/images/list", `{"kind":"image","length":500}`, &il)
	for _, e := range il.Entities {
		images = append(images, e.Spec.Name)
	}
	var vl struct {
		Data []struct{ Name string }
	}
	do("GET", "/api/volumes/v4.0/config/volume-groups", "", &vl)
	for _, v := range vl.Data {
		vgs = append(vgs, v.Name)
	}
	return images, vgs
}

func assertClean(t *testing.T, s *prismsim.Sim, vmsBefore int) {
	t.Helper()
	ims, vgs := leftovers(t, s)
	if len(ims) > 0 || len(vgs) > 0 {
		t.Errorf("left behind: images %v, volume groups %v", ims, vgs)
	}
	if n := len(s.VMs()); n != vmsBefore {
		t.Errorf("%d VMs, want %d: %+v", n, vmsBefore, s.VMs())
	}
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s differs from %s (%d vs %d bytes)", got, want, len(a), len(b))
	}
}

func subnetUUID(t *testing.T, c nutanix.Cluster, name, cluster string) string {
	t.Helper()
	sns, err := c.ListSubnets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sns {
		if s.Name == name && s.ClusterUUID == cluster {
			return s.UUID
		}
	}
	t.Fatalf("no subnet %s on %s", name, cluster)
	return ""
}

func findVM(t *testing.T, c nutanix.Cluster, uuid string) nutanix.VM {
	t.Helper()
	v, err := c.GetVM(context.Background(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRestoreREST: a two-disk VM (real ext4 + data disk) restored to
// cluster-b under a new name with vlan10 mapped to vlan20 and powered on,
// through the images API: the simulator's disk files equal the backed-up
// disks byte for byte, the VM keeps CPU, memory, firmware, machine type,
// bus/index and NIC model, and no image is left. Then a selective restore
// of disk-1 only.
func TestRestoreREST(t *testing.T) {
	src := []string{enginetest.Ext4Image(t, 64<<20, 3), dataDisk(t, 32<<20, 4)}
	for _, api := range []nutanix.APIVersion{nutanix.APIV4, nutanix.APIV3} {
		t.Run(string(api), func(t *testing.T) {
			s := simtest.Start(t, simtest.Options{})
			c := connect(t, s, api)
			repo, rp := importVM(t, "web01", simConfig(t, c, "9d1c0e8e-0000-4000-8000-00000000dead", 64<<20, 32<<20), src...)
			ctx := context.Background()
			res, err := restore.Restore(ctx, repo, c, rp, restore.Options{Name: "web01-restored", TargetCluster: "cluster-b",
				NetworkMap: map[string]string{"vlan10": "vlan20"}, PowerOn: true, DataPath: restore.DataPathREST})
			if err != nil {
				t.Fatal(err)
			}
			vi, ok := s.VM("web01-restored")
			if !ok || len(vi.Disks) != 2 {
				t.Fatalf("simulator VM %+v %v", vi, ok)
			}
			for i := range src {
				sameFile(t, vi.Disks[i], src[i])
			}
			v := findVM(t, c, res.VMUUID)
			if res.Cluster != "cluster-b" || v.PowerState != nutanix.PowerOn || v.MemoryBytes != 3<<30 || v.VCPUs != 4 ||
				v.BootType != nutanix.BootUEFI || len(v.NICs) != 1 || v.NICs[0].SubnetUUID != subnetUUID(t, c, "vlan20", v.ClusterUUID) ||
				v.NICs[0].MAC != "50:6b:8d:aa:bb:01" || !res.KeptMACs || !res.PoweredOn {
				t.Errorf("restored VM %+v\nresult %+v", v, res)
			}
			if len(v.Disks) != 2 || v.Disks[1].Bus != "SCSI" || v.Disks[1].Index != 1 {
				t.Errorf("disks %+v", v.Disks)
			}
			assertClean(t, s, 1)

			// Selective: disk-1 only, under another name, default network
			// (vlan10 exists on cluster-a).
			res, err = restore.Restore(ctx, repo, c, rp, restore.Options{Name: "web01-d1", Disks: []int{1}, DataPath: restore.DataPathREST})
			if err != nil {
				t.Fatal(err)
			}
			vi, _ = s.VM("web01-d1")
			if len(vi.Disks) != 1 || len(res.Disks) != 1 || res.Cluster != "cluster-a" {
				t.Fatalf("selective restore: %+v, %+v", vi, res)
			}
			sameFile(t, vi.Disks[0], src[1])
			assertClean(t, s, 2)
		})
	}
}

// TestRestoreValidation: every problem is reported before anything is
// created.
func TestRestoreValidation(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	c := connect(t, s, nutanix.APIAuto)
	cfg := simConfig(t, c, "", 1<<20)
	cfg["NICs"] = []map[string]any{{"SubnetName": "vlan99", "Model": "VIRTIO"}}
	repo, rp := importVM(t, "web01", cfg, dataDisk(t, 1<<20, 1))
	if _, err := s.AddVM(context.Background(), "taken", nil, prismsim.VMOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := restore.Restore(context.Background(), repo, c, rp, restore.Options{Name: "taken", TargetCluster: "cluster-z", Disks: []int{7},
		NetworkMap: map[string]string{"vlan42": "vlan20"}, DataPath: restore.DataPathREST})
	if err == nil {
		t.Fatal("restore with bad options succeeded")
	}
	for _, want := range []string{"cluster-z", "disk-7", "vlan99", "vlan42"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	_, err = restore.Restore(context.Background(), repo, c, rp, restore.Options{Name: "taken", TargetCluster: "cluster-a",
		NetworkMap: map[string]string{"vlan99": "vlan20"}, DataPath: restore.DataPathREST})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("name clash: %v", err)
	}
	assertClean(t, s, 1)
}

// TestRestoreOverwrite replaces a running VM: the new VM holds the restore
// point's data under the original name, the original is gone, and the MAC
// is a new one (the original existed when the new VM was created).
func TestRestoreOverwrite(t *testing.T) {
	s := simtest.Start(t, simtest.Options{})
	c := connect(t, s, nutanix.APIAuto)
	live := dataDisk(t, 16<<20, 9)
	orig, err := s.AddVM(context.Background(), "web01", []string{copyFile(t, live)}, prismsim.VMOptions{PowerState: "ON"})
	if err != nil {
		t.Fatal(err)
	}
	backed := dataDisk(t, 16<<20, 10)
	repo, rp := importVM(t, "web01", simConfig(t, c, orig.UUID, 16<<20), backed)
	res, err := restore.Restore(context.Background(), repo, c, rp, restore.Options{Overwrite: true, PowerOn: true, DataPath: restore.DataPathREST})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != orig.UUID || res.KeptMACs {
		t.Errorf("result %+v", res)
	}
	if _, err := c.GetVM(context.Background(), orig.UUID); err == nil {
		t.Error("the original VM still exists")
	}
	vi, ok := s.VM("web01")
	if !ok || vi.UUID == orig.UUID {
		t.Fatalf("new VM %+v", vi)
	}
	sameFile(t, vi.Disks[0], backed)
	if v := findVM(t, c, vi.UUID); v.PowerState != nutanix.PowerOn || v.NICs[0].MAC == "50:6b:8d:aa:bb:01" {
		t.Errorf("new VM %+v", v)
	}
	assertClean(t, s, 1)
}

// TestRestoreFaults: a task failing at each step of the REST path leaves
// nothing behind; with --overwrite the original VM survives, powered on
// again.
func TestRestoreFaults(t *testing.T) {
	// The simulator's task names for each step, per API version (images
	// are created through v3 by both clients).
	cases := []struct {
		api nutanix.APIVersion
		op  string
	}{
		{nutanix.APIV3, "ImageCreate"}, {nutanix.APIV3, "VmCreate"},
		{nutanix.APIV4, "ImageCreate"}, {nutanix.APIV4, "CreateVm"},
	}
	for _, tc := range cases {
		op := tc.op
		t.Run(string(tc.api)+"/"+op, func(t *testing.T) {
			s := simtest.Start(t, simtest.Options{})
			c := connect(t, s, tc.api)
			orig, err := s.AddVM(context.Background(), "web01", []string{dataDisk(t, 8<<20, 1)}, prismsim.VMOptions{PowerState: "ON"})
			if err != nil {
				t.Fatal(err)
			}
			repo, rp := importVM(t, "web01", simConfig(t, c, orig.UUID, 8<<20, 8<<20), dataDisk(t, 8<<20, 2), dataDisk(t, 8<<20, 3))
			if err := s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{op}}); err != nil {
				t.Fatal(err)
			}
			_, err = restore.Restore(context.Background(), repo, c, rp, restore.Options{Overwrite: true, DataPath: restore.DataPathREST})
			s.SetFaults(prismsim.Faults{})
			if err == nil {
				t.Fatalf("restore succeeded although the %s task failed", op)
			}
			t.Logf("error: %v", err)
			assertClean(t, s, 1)
			if v := findVM(t, c, orig.UUID); v.PowerState != nutanix.PowerOn {
				t.Errorf("original VM %+v", v)
			}
		})
	}
}
