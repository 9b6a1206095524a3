package restore_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/nfs"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/rptree"
)

// TestInstantRestore: the VM of a restore point runs at once with its
// disks on the repository's NFS export (ahvfs's own server, the
// simulator's NFS client); the guest reads the restore point before
// hydration and writes during it; finish waits for hydration, after
// which the disks equal the restore point plus the writes, and removes
// the external repository; cancel deletes a VM still hydrating and its
// repository. A cluster without the v4.2 APIs says so and is left as it
// was.
func TestInstantRestore(t *testing.T) {
	src := []string{enginetest.Ext4Image(t, 16<<20, 3), dataDisk(t, 8<<20, 4)}
	// The cluster keeps the source for a while after the last block
	// (0 bytes left): finish must wait for it, not fail on the refusal.
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{V4Revisions: []string{"v4.0", "v4.1", "v4.2"},
		HydrationSettle: 500 * time.Millisecond}})
	c := connect(t, s, nutanix.APIV4)
	repo, rp := importVM(t, "web01", simConfig(t, c, "9d1c0e8e-0000-4000-8000-00000000beef", 16<<20, 8<<20), src...)
	tree, err := rptree.New(repo, rptree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nfs.Serve(ctx, tree, ln, nfs.Options{}) }()
	t.Cleanup(func() { cancel(); <-done })
	// The simulator's hydrators go before their export does.
	t.Cleanup(func() { s.Close() })
	addr := ln.Addr().String()

	s.PauseHydration(true)
	start := time.Now()
	res, err := restore.Restore(ctx, repo, c, rp, restore.Options{Name: "web01-ir", NFS: addr, PowerOn: true,
		NetworkMap: map[string]string{"vlan10": "vlan20"}, TargetCluster: "cluster-b", DataPath: restore.DataPathInstant})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("powered on after %v", time.Since(start))
	x := res.ExternalRepository
	if !res.PoweredOn || res.DataPath != restore.DataPathInstant || x == nil || x.Address != addr || res.Written != 0 {
		t.Fatalf("result %+v (repository %+v)", res, x)
	}
	st, err := restore.InstantStatus(ctx, c, "")
	if err != nil || len(st) != 1 || st[0].Name != "web01-ir" || st[0].Hydrated || len(st[0].Disks) != 2 {
		t.Fatalf("status %+v %v", st, err)
	}
	for i, d := range st[0].Disks {
		if d.Status != "IN_PROGRESS" || d.Remaining != d.Size || d.Repository != x.ID || d.Path != rptree.DiskPath(rp, &rp.Disks[i]) {
			t.Errorf("disk %d: %+v", i, d)
		}
	}
	// The guest sees the restore point, and writes.
	var want [][]byte
	for i, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(b))
		if err := s.ReadDisk("web01-ir", i, 0, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("disk %d reads differently from the restore point before hydration", i)
		}
		w := bytes.Repeat([]byte{byte(0x40 + i)}, 5000)
		off := int64(len(b)/2 - 1000)
		if err := s.WriteDisk("web01-ir", i, off, w); err != nil {
			t.Fatal(err)
		}
		copy(b[off:], w)
		want = append(want, b)
	}
	s.PauseHydration(false)
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	defer fcancel()
	fin, err := restore.Finish(fctx, c, "web01-ir", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !fin.VM.Hydrated || len(fin.RemovedRepositories) != 1 || fin.RemovedRepositories[0] != x.Name {
		t.Fatalf("finish %+v", fin)
	}
	for i, b := range want {
		got := make([]byte, len(b))
		if err := s.ReadDisk("web01-ir", i, 0, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("disk %d after hydration is not the restore point plus the guest's writes", i)
		}
	}
	noRepositories(t, c)

	// Cancel: a second instant restore goes again, repository and all.
	s.PauseHydration(true)
	if _, err := restore.Restore(ctx, repo, c, rp, restore.Options{Name: "web01-ir2", NFS: addr, TargetCluster: "cluster-b",
		NetworkMap: map[string]string{"vlan10": "vlan20"}, DataPath: restore.DataPathInstant}); err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Cancel(ctx, c, "web01-ir"); err == nil {
		t.Error("cancel deleted a hydrated VM")
	}
	can, err := restore.Cancel(ctx, c, "web01-ir2")
	s.PauseHydration(false)
	if err != nil || len(can.RemovedRepositories) != 1 {
		t.Fatalf("cancel: %+v %v", can, err)
	}
	if _, ok := s.VM("web01-ir2"); ok {
		t.Error("the cancelled VM exists")
	}
	noRepositories(t, c)
	assertClean(t, s, 1) // web01-ir

	// No v4.2: unsupported, before anything is created.
	old := simtest.Start(t, simtest.Options{})
	for _, api := range []nutanix.APIVersion{nutanix.APIV4, nutanix.APIV3} {
		oc := connect(t, old, api)
		_, err := restore.Restore(ctx, repo, oc, rp, restore.Options{Name: "web01-" + strconv.Itoa(len(api)), NFS: addr,
			TargetCluster: "cluster-a", DataPath: restore.DataPathInstant})
		if !errors.Is(err, nutanix.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", api, err)
		}
	}
	assertClean(t, old, 0)
}

func noRepositories(t *testing.T, c *nutanix.Client) {
	t.Helper()
	l, err := c.ListExternalRepositories(context.Background(), "")
	if err != nil || len(l) != 0 {
		t.Fatalf("external repositories left: %+v %v", l, err)
	}
}
