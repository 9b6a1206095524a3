package prismsim_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestNoV3Snapshots: with Options.NoV3Snapshots the v3 vm_snapshots and
// data/changed_regions endpoints answer 404; the Prism client's v3 backend
// then probes them as missing and takes, lists, clones and deletes its
// snapshots through the v2.0 API, and has no changed regions. Without the
// option the same client takes v3 vm_snapshots.
func TestNoV3Snapshots(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noV3       bool
		listStatus int // POST vm_snapshots/list
		crStatus   int // POST data/changed_regions with an empty body
		wantAPI    nutanix.APIVersion
	}{
		{"v3 snapshots served", false, 200, 422, nutanix.APIV3},
		{"NoV3Snapshots", true, 404, 404, nutanix.APIV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := simtest.Start(t, simtest.Options{Options: prismsim.Options{NoV3Snapshots: tc.noV3}})
			a := newAPI(t, s)
			a.do("POST", "/api/nutanix/v3/vm_snapshots/list", map[string]any{"kind": "vm_snapshot"}).must(t, tc.listStatus)
			a.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{}).must(t, tc.crStatus)
			a.do("GET", "/api/nutanix/v3/vm_snapshots/00000000-0000-0000-0000-000000000000", nil).must(t, 404)
			v := addVMs(t, s, 1, 64<<10)[0]
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			c, err := nutanix.New(nutanix.Options{Endpoint: s.URL(), User: s.User(), PasswordFile: s.PasswordFile(),
				CACertFile: s.CAFile(), API: nutanix.APIV3, TaskPollInterval: time.Millisecond, RateLimit: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rep, err := c.Probe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Selected != nutanix.APIV3 || !rep.V2 || rep.V3CBT == tc.noV3 {
				t.Fatalf("probe: selected %s, v2 %v, v3 CBT %v", rep.Selected, rep.V2, rep.V3CBT)
			}

			before := s.Objects()
			snap, err := c.CreateSnapshot(ctx, v.UUID, "ahvfs-test", false)
			if err != nil {
				t.Fatal(err)
			}
			if snap.API != tc.wantAPI || snap.VMUUID != v.UUID || len(snap.Disks) != 1 {
				t.Fatalf("snapshot: %+v", snap)
			}
			d := prismsim.Diff(before, s.Objects())
			if len(d) != 1 || d[0].Kind != "snapshot" || d[0].UUID != snap.ID {
				t.Fatalf("on the cluster: %s", d)
			}
			if got := s.Objects().Snapshots[0].API; got != string(tc.wantAPI) {
				t.Errorf("the simulator saw the snapshot taken through %s, want %s", got, tc.wantAPI)
			}
			list, err := c.ListSnapshots(ctx, v.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(list, func(x nutanix.Snapshot) bool { return x.ID == snap.ID && x.API == tc.wantAPI }) {
				t.Errorf("ListSnapshots lacks %s: %+v", snap.ID, list)
			}
			err = c.ChangedRegions(ctx, nutanix.RegionQuery{Snapshot: snap, DiskUUID: snap.Disks[0].DiskUUID}, func(nutanix.Region) error { return nil })
			if tc.noV3 != errors.Is(err, nutanix.ErrUnsupported) {
				t.Errorf("ChangedRegions: %v (want ErrUnsupported: %v)", err, tc.noV3)
			}
			// A full backup's data path: the snapshot disk cloned into a
			// volume group (v2 either way).
			vg, err := c.CreateVolumeGroupFromSnapshotDisk(ctx, snap, snap.Disks[0].DiskUUID, "ahvfs-test-vg")
			if err != nil {
				t.Fatal(err)
			}
			files, err := s.VolumeGroupDiskFiles(vg.UUID)
			if err != nil || len(files) != 1 {
				t.Fatalf("volume group files: %v %v", files, err)
			}
			if err := c.DeleteVolumeGroup(ctx, vg.UUID); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
				t.Fatal(err)
			}
			simtest.RequireUnchanged(t, before, s.Objects())
		})
	}
}
