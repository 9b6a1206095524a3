package failover_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/failover"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestCheckCapacity: the dry run sets the memory of the plan's VMs
// (overrides first) against the DR cluster's free memory, and the data of
// their disks against each storage container's free space (the named
// one's, the default's the most any reports) and all of it against the
// storage pool the containers share, through the v3+v2.0 and the v4 APIs.
// A cluster with just enough room passes; a pool that holds either
// container's data but not both, and one VM more running there with its
// disk, are problems.
func TestCheckCapacity(t *testing.T) {
	ctx := context.Background()
	prod := simtest.Start(t, simtest.Options{})
	for i, v := range []struct {
		name string
		mib  int64
	}{{"db01", 4096}, {"web01", 3072}} {
		if _, err := prod.AddVM(ctx, v.name, []string{enginetest.Ext4Image(t, 16<<20, uint64(i+1))}, prismsim.VMOptions{MemoryMiB: v.mib}); err != nil {
			t.Fatal(err)
		}
	}
	repo := backUp(t, prod)
	w := enginetest.Open(t, repo, engine.OpenOptions{})
	data := map[string]int64{}
	rps, err := w.ListRestorePoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, rp := range rps {
		for i := range rp.Disks {
			data[rp.VM] += must(w.DataBytes(ctx, &rp.Disks[i]))
		}
	}
	w.Close()
	if data["db01"] == 0 || data["web01"] == 0 {
		t.Fatalf("data of the points: %v", data)
	}
	for _, api := range []string{"v3", "v4"} {
		t.Run(api, func(t *testing.T) {
			drs := simtest.Start(t, simtest.Options{})
			if err := drs.AddContainer("cluster-b", "fast"); err != nil {
				t.Fatal(err)
			}
			// web01 is overridden to 1 GiB and goes to container fast: the
			// VMs need 5 GiB of memory; db01's data goes to the default
			// container. Both containers draw from one pool.
			pool := data["db01"] + data["web01"]
			if err := drs.SetCapacity("cluster-b", 5<<30, pool); err != nil {
				t.Fatal(err)
			}
			site := strings.Replace(siteTable("dr", drs), `api = "v3"`, fmt.Sprintf("api = %q", api), 1)
			plan, err := failover.Parse("p.toml", fmt.Sprintf(`source_cluster = "dr"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
test_network_map = ["vlan10=vlan20"]
[[stage]]
vms = ["db01"]
[[stage]]
vms = ["web01"]
[[vm]]
name = "web01"
memory = "1GiB"
container = "fast"
`, repo)+site, nil)
			if err != nil {
				t.Fatal(err)
			}
			check := func() (failover.Room, error) {
				return failover.Check(ctx, plan, failover.Options{TuneCluster: tune}, failover.ModeTest)
			}
			// Just enough room.
			room, err := check()
			if err != nil {
				t.Fatalf("dry run on a cluster with just enough room: %v\n%s", err, room)
			}
			if len(room.Clusters) != 1 || len(room.Clusters[0].Storage) != 2 {
				t.Fatalf("room: %+v", room)
			}
			c := room.Clusters[0]
			dflt, named := c.Storage[0], c.Storage[1]
			if c.Name != "cluster-b" || c.VMs != 2 || c.MemoryNeed != 5<<30 || c.MemoryFree != 5<<30 || c.MemoryTotal != 5<<30 ||
				c.StorageNeed != pool || c.StorageFree != pool ||
				named.Container != "fast" || named.Need != data["web01"] || named.Free != pool ||
				dflt.Container != "" || dflt.Need != data["db01"] || dflt.Free != pool || dflt.Largest == "" {
				t.Fatalf("room:\n%s%+v", room, room)
			}
			if !strings.Contains(room.String(), "DR cluster cluster-b: 2 VMs need 5.0 GiB of memory; 5.0 GiB free of 5.0 GiB") {
				t.Errorf("room as printed:\n%s", room)
			}
			// A pool each container's data fits in, but not both together.
			if err := drs.SetCapacity("cluster-b", 0, max(data["db01"], data["web01"])); err != nil {
				t.Fatal(err)
			}
			_, err = check()
			if err == nil || !strings.Contains(err.Error(), "in all, and its storage pool has") || !strings.Contains(err.Error(), "1 problem(s)") {
				t.Errorf("dry run with a pool too small for both containers' data: %v", err)
			}
			// A VM running on the DR cluster takes memory, and its written
			// disk more than the pool has.
			if err := drs.SetCapacity("cluster-b", 0, pool); err != nil {
				t.Fatal(err)
			}
			full := filepath.Join(t.TempDir(), "full.raw")
			if err := os.WriteFile(full, bytes.Repeat([]byte{0x5a}, int(pool)+(1<<20)), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := drs.AddVM(ctx, "other", []string{full}, prismsim.VMOptions{Cluster: "cluster-b", MemoryMiB: 512}); err != nil {
				t.Fatal(err)
			}
			_, err = check()
			for _, want := range []string{
				"DR cluster cluster-b: the plan's 2 VMs need 5.0 GiB of memory, and 4.5 GiB of its 5.0 GiB is free",
				"the disks bound for storage container fast hold",
				"for the default storage container; the one with the most room",
				"3 problem(s)",
			} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("dry run with a VM more at DR: no %q in:\n%v", want, err)
				}
			}
		})
	}
}
