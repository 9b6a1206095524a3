package nutanix_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// simSnapshotExists asks the simulator itself whether a snapshot (a v3 or
// v2.0 snapshot, or the VM recovery point of a v4 one) still exists.
func simSnapshotExists(s *prismsim.Sim, snap nutanix.Snapshot) bool {
	id := snap.ID
	if snap.API == nutanix.APIV4 {
		id = snap.VMRecoveryPointID
	}
	_, err := s.SnapshotDiskFiles(id)
	return err == nil
}

// v2SnapshotClient is a v3 client probed while the simulator hides
// vm_snapshots (as Prism Central does): it snapshots through v2.0.
func v2SnapshotClient(t *testing.T, s *prismsim.Sim) *nutanix.Client {
	t.Helper()
	f := s.Faults()
	s.SetFaults(prismsim.Faults{HideV3CBT: true})
	c := simClient(t, s, nutanix.APIV3)
	s.SetFaults(f)
	if c.Report().V3CBT || c.Report().V3Snapshots {
		t.Fatalf("report %+v: vm_snapshots still seen", c.Report())
	}
	return c
}

// TestSimDeleteSnapshotWhicheverAPI: a snapshot made through v4, v3 or
// v2.0 is read and deleted by a v4 client, a v3 client and a v3 client
// whose probe found no vm_snapshots alike, and after DeleteSnapshot
// returns nil the simulator no longer has it. With SeparateSnapshotAPIs
// the namespaces are distinct, as they may be on a cluster. Before, a v4
// client deleting a v3 snapshot, a v3 client deleting a recovery point and
// a v3 client without CBT deleting a vm_snapshot got a 404 and reported
// success while the snapshot stayed.
func TestSimDeleteSnapshotWhicheverAPI(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	vm, err := s.AddVM(ctx, "d", []string{diskImage(t, 1<<20, 3)}, prismsim.VMOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	makers := map[nutanix.APIVersion]*nutanix.Client{
		nutanix.APIV4: simClient(t, s, nutanix.APIV4),
		nutanix.APIV3: simClient(t, s, nutanix.APIV3),
		nutanix.APIV2: v2SnapshotClient(t, s),
	}
	deleters := map[string]*nutanix.Client{"v4": makers[nutanix.APIV4], "v3": makers[nutanix.APIV3], "v3-without-cbt": makers[nutanix.APIV2]}
	for _, separate := range []bool{false, true} {
		for _, made := range []nutanix.APIVersion{nutanix.APIV4, nutanix.APIV3, nutanix.APIV2} {
			for _, by := range []string{"v4", "v3", "v3-without-cbt"} {
				t.Run(fmt.Sprintf("separate=%v/%s-made/by-%s", separate, made, by), func(t *testing.T) {
					s.SetFaults(prismsim.Faults{SeparateSnapshotAPIs: separate})
					defer s.SetFaults(prismsim.Faults{})
					snap, err := makers[made].CreateSnapshot(ctx, vm.UUID, "del-"+string(made)+"-"+by, false)
					if err != nil {
						t.Fatal(err)
					}
					if snap.API != made || !simSnapshotExists(s, snap) {
						t.Fatalf("made %+v", snap)
					}
					c := deleters[by]
					got, err := c.GetSnapshot(ctx, snap.ID)
					if err != nil || got.ID != snap.ID || (separate && got.API != made) {
						t.Errorf("GetSnapshot = %+v, %v", got, err)
					}
					if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
						t.Fatalf("DeleteSnapshot: %v", err)
					}
					if simSnapshotExists(s, snap) {
						t.Fatal("DeleteSnapshot returned nil, but the snapshot is still there")
					}
					if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
						t.Errorf("deleting it again: %v", err)
					}
					if _, err := c.GetSnapshot(ctx, snap.ID); !errors.Is(err, nutanix.ErrNotFound) {
						t.Errorf("GetSnapshot after delete: %v, want ErrNotFound", err)
					}
				})
			}
		}
	}
}

// TestSimSnapshotNamespaceUnknown: when the probe got no answer about v4
// recovery points (dataprotection answering 500), a v3 client does not
// call a snapshot it cannot find elsewhere gone: the error says it may
// still exist. What it can find it still reads and deletes.
func TestSimSnapshotNamespaceUnknown(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	vm, err := s.AddVM(ctx, "u", []string{diskImage(t, 1<<20, 4)}, prismsim.VMOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	rp, err := simClient(t, s, nutanix.APIV4).CreateSnapshot(ctx, vm.UUID, "rp", false)
	if err != nil {
		t.Fatal(err)
	}
	s.SetFaults(prismsim.Faults{Rate500: 1, Paths: []string{"/api/dataprotection/"}})
	o := simOptions(s, nutanix.APIV3)
	o.MaxAttempts = 2
	c := newClient(t, o)
	if rep, err := c.Probe(ctx); err != nil || !rep.V3CBT {
		t.Fatalf("probe: %+v %v", rep, err)
	}
	for _, id := range []string{rp.ID, "00000000-0000-4000-8000-000000000000"} {
		if err := c.DeleteSnapshot(ctx, id); !errors.Is(err, nutanix.ErrUnsupported) {
			t.Errorf("DeleteSnapshot(%s) = %v, want ErrUnsupported", id, err)
		}
		if _, err := c.GetSnapshot(ctx, id); !errors.Is(err, nutanix.ErrUnsupported) || errors.Is(err, nutanix.ErrNotFound) {
			t.Errorf("GetSnapshot(%s) = %v, want ErrUnsupported", id, err)
		}
	}
	if !simSnapshotExists(s, rp) {
		t.Fatal("the recovery point is gone")
	}
	snap, err := c.CreateSnapshot(ctx, vm.UUID, "v3", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSnapshot(ctx, snap.ID); err != nil || simSnapshotExists(s, snap) {
		t.Fatalf("delete of a vm_snapshot: %v", err)
	}
}

// TestSimDeleteObjectsAcrossAPIs: volume groups, images and VMs made
// through one API are deleted through the other; nil means the simulator
// no longer has them, and deleting again is nil too.
func TestSimDeleteObjectsAcrossAPIs(t *testing.T) {
	s := startSim(t, prismsim.Options{})
	ctx := ctxT(t)
	vm, err := s.AddVM(ctx, "o", []string{diskImage(t, 1<<20, 5)}, prismsim.VMOptions{Move: true})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*nutanix.Client{"v4": simClient(t, s, nutanix.APIV4), "v3": simClient(t, s, nutanix.APIV3)}
	info, err := clients["v4"].GetVM(ctx, vm.UUID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []struct {
		name   string
		create func(c *nutanix.Client, name string) (string, error)
		delete func(c *nutanix.Client, id string) error
		exists func(id string) bool
	}{
		{"volume group",
			func(c *nutanix.Client, name string) (string, error) {
				vg, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name, ClusterUUID: info.ClusterUUID, DiskSizes: []int64{1 << 20}})
				return vg.UUID, err
			},
			func(c *nutanix.Client, id string) error { return c.DeleteVolumeGroup(ctx, id) },
			func(id string) bool { _, err := s.VolumeGroupDiskFiles(id); return err == nil }},
		{"image",
			func(c *nutanix.Client, name string) (string, error) {
				im, err := c.CreateImage(ctx, nutanix.ImageSpec{Name: name})
				return im.UUID, err
			},
			func(c *nutanix.Client, id string) error { return c.DeleteImage(ctx, id) },
			func(id string) bool {
				_, err := clients["v3"].GetImage(ctx, id)
				if err != nil && !errors.Is(err, nutanix.ErrNotFound) {
					t.Fatal(err)
				}
				return err == nil
			}},
		{"VM",
			func(c *nutanix.Client, name string) (string, error) {
				return c.CreateVM(ctx, nutanix.VMSpec{Name: name, ClusterUUID: info.ClusterUUID, MemoryBytes: 1 << 30})
			},
			func(c *nutanix.Client, id string) error { return c.DeleteVM(ctx, id) },
			func(id string) bool { _, ok := s.VM(id); return ok }},
	}
	for _, k := range kinds {
		for _, pair := range [][2]string{{"v3", "v4"}, {"v4", "v3"}, {"v4", "v4"}, {"v3", "v3"}} {
			t.Run(fmt.Sprintf("%s/made-%s/deleted-%s", k.name, pair[0], pair[1]), func(t *testing.T) {
				id, err := k.create(clients[pair[0]], "ahvfs-del-"+pair[0]+pair[1])
				if err != nil || id == "" || !k.exists(id) {
					t.Fatalf("create: %q %v", id, err)
				}
				if err := k.delete(clients[pair[1]], id); err != nil {
					t.Fatal(err)
				}
				if k.exists(id) {
					t.Fatal("delete returned nil, but it is still there")
				}
				if err := k.delete(clients[pair[1]], id); err != nil {
					t.Errorf("deleting it again: %v", err)
				}
			})
		}
	}
}
