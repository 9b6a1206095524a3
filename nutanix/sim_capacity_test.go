package nutanix_test

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// TestSimCapacity reads a cluster's memory and containers' free space
// through each API: v3 with v2.0 (hosts' ppm strings, usage_stats
// strings), v3 alone (host memory only, the rest reported unknown) and v4
// (host config plus the stats series). The figures must follow what runs
// and what is written on the cluster, and leave the other cluster out.
func TestSimCapacity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		api    nutanix.APIVersion
		hideV2 bool
	}{{"v3+v2", nutanix.APIV3, false}, {"v3", nutanix.APIV3, true}, {"v4", nutanix.APIV4, false}} {
		t.Run(tc.name, func(t *testing.T) { capacitySuite(t, tc.api, tc.hideV2) })
	}
}

func capacitySuite(t *testing.T, api nutanix.APIVersion, hideV2 bool) {
	const (
		memory   = 64 << 30
		capacity = 100 << 30
		diskSize = 32 << 20
		slack    = 1 << 20 // file system metadata blocks
	)
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	if err := s.SetCapacity("cluster-a", memory, capacity); err != nil {
		t.Fatal(err)
	}
	full := func(n int) string { // a disk file with every block written
		p := filepath.Join(t.TempDir(), "full.raw")
		b := make([]byte, diskSize)
		rand.Read(b)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, v := range []struct {
		name    string
		o       prismsim.VMOptions
		written bool
	}{
		{"on-a", prismsim.VMOptions{MemoryMiB: 4096}, true},
		{"off-a", prismsim.VMOptions{MemoryMiB: 8192, PowerState: "OFF"}, false},
		{"on-b", prismsim.VMOptions{MemoryMiB: 16384, Cluster: "cluster-b"}, true},
	} {
		img := diskImage(t, diskSize, 1)
		if v.written {
			img = full(1)
		}
		if _, err := s.AddVM(ctx, v.name, []string{img}, v.o); err != nil {
			t.Fatal(err)
		}
	}
	if hideV2 {
		s.SetFaults(prismsim.Faults{HideV2: true})
	}
	c := simClient(t, s, api)
	clusters, err := c.ListClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uuid := map[string]string{}
	for _, cl := range clusters {
		uuid[cl.Name] = cl.UUID
	}
	got, err := c.ClusterCapacity(ctx, uuid["cluster-a"])
	if err != nil {
		t.Fatal(err)
	}
	if got.MemoryBytes != memory {
		t.Errorf("memory %d, want %d", got.MemoryBytes, int64(memory))
	}
	if hideV2 && api == nutanix.APIV3 {
		if got.MemoryUsedBytes != nutanix.Unknown || got.Containers != nil || len(got.Notes) == 0 ||
			!strings.Contains(got.Notes[0], "unknown") {
			t.Errorf("v3 alone: %+v, want memory in use and containers unknown, with a note", got)
		}
		return
	}
	if want := int64(4096 << 20); got.MemoryUsedBytes < want-slack || got.MemoryUsedBytes > want+slack {
		t.Errorf("memory in use %d, want %d (the powered-on VM of cluster-a only)", got.MemoryUsedBytes, want)
	}
	if len(got.Containers) != 1 || got.Containers[0].Name != "default" || got.Containers[0].ClusterUUID != uuid["cluster-a"] {
		t.Fatalf("containers %+v, want cluster-a's default", got.Containers)
	}
	free := got.Containers[0].FreeBytes
	if used := int64(capacity) - free; used < diskSize || used > 2*diskSize+slack {
		t.Errorf("container free %d: %d used, want the written disk (%d) and at most the sparse one", free, used, diskSize)
	}
	// Another written disk on cluster-a takes its size from the free
	// space, and powering the VM on takes its memory.
	if _, err := s.AddVM(ctx, "more-a", []string{full(2)}, prismsim.VMOptions{MemoryMiB: 2048}); err != nil {
		t.Fatal(err)
	}
	after, err := c.ClusterCapacity(ctx, uuid["cluster-a"])
	if err != nil {
		t.Fatal(err)
	}
	if d := free - after.Containers[0].FreeBytes; d < diskSize-slack || d > diskSize+slack {
		t.Errorf("a %d-byte disk took %d bytes of free space", diskSize, d)
	}
	if d := after.MemoryUsedBytes - got.MemoryUsedBytes; d < 2048<<20-slack || d > 2048<<20+slack {
		t.Errorf("a 2 GiB VM powered on took %d bytes of memory", d)
	}
	if _, err := c.ClusterCapacity(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, nutanix.ErrNotFound) {
		t.Errorf("capacity of a cluster that does not exist: %v, want ErrNotFound", err)
	}
}
