package nutanix_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// blankVolumeGroup is the restore's iSCSI path on the client: a named
// storage container, a volume group of blank disks in order, listed by
// name, written (here straight into the simulator's files, as an
// initiator would), then a VM whose disks are clones of the VG disks; a
// failing disk or group task leaves no group behind; images by name.
func blankVolumeGroup(t *testing.T, s *prismsim.Sim, c nutanix.Cluster, src prismsim.VMInfo) {
	ctx := ctxT(t)
	vm0, err := c.GetVM(ctx, src.UUID)
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := c.ListStorageContainers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ctr, other nutanix.StorageContainer
	for _, x := range ctrs {
		switch {
		case x.UUID == "" || x.Name == "" || x.ClusterUUID == "":
			t.Errorf("storage container %+v lacks a field", x)
		case x.ClusterUUID == vm0.ClusterUUID && x.Name == "default":
			ctr = x
		case x.ClusterUUID != vm0.ClusterUUID:
			other = x
		}
	}
	if ctr.UUID == "" || other.UUID == "" {
		t.Fatalf("containers %+v: want a default one on %s and one elsewhere", ctrs, vm0.ClusterUUID)
	}
	sizes := []int64{3 << 20, 1 << 20}
	name := "ahvfs-restore-blank-" + string(c.API())
	if _, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name}); err == nil {
		t.Error("a volume group without disks was created")
	}
	// v4 names the cluster (v2 has no cluster field: the container's wins).
	if vg, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name, ClusterUUID: vm0.ClusterUUID,
		ContainerUUID: other.UUID, DiskSizes: sizes}); c.API() == nutanix.APIV4 && err == nil {
		t.Errorf("volume group on another cluster's container: %+v", vg)
	} else if err == nil {
		c.DeleteVolumeGroup(ctx, vg.UUID)
	}
	if l, err := c.ListVolumeGroups(ctx, name); err != nil || len(l) != 0 {
		t.Fatalf("after refused creates: %+v %v", l, err)
	}
	vg, err := c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name, Description: "test", ClusterUUID: vm0.ClusterUUID,
		ContainerUUID: ctr.UUID, DiskSizes: sizes})
	if err != nil {
		t.Fatal(err)
	}
	if vg.UUID == "" || len(vg.Disks) != 2 {
		t.Fatalf("volume group %+v", vg)
	}
	for i, d := range vg.Disks {
		if d.UUID == "" || d.Index != i || d.SizeBytes != sizes[i] {
			t.Errorf("disk %d: %+v, want index %d size %d", i, d, i, sizes[i])
		}
	}
	l, err := c.ListVolumeGroups(ctx, name)
	if err != nil || len(l) != 1 || l[0].UUID != vg.UUID || len(l[0].Disks) != 2 || l[0].Disks[1].UUID != vg.Disks[1].UUID {
		t.Fatalf("ListVolumeGroups(%q) = %+v, %v", name, l, err)
	}
	files, err := s.VolumeGroupDiskFiles(vg.UUID)
	if err != nil || len(files) != 2 {
		t.Fatalf("VG files %v %v", files, err)
	}
	data := [][]byte{make([]byte, 100_000), make([]byte, 4096)}
	for i, b := range data {
		rand.Read(b)
		writeAt(t, files[i], int64(i)*65536+512, b)
	}
	// VM disks in the opposite order: disk i of the VM is VG disk 1-i.
	id, err := c.CreateVM(ctx, nutanix.VMSpec{Name: name + "-vm", ClusterUUID: vm0.ClusterUUID, MemoryBytes: 1 << 30,
		Disks: []nutanix.DiskSpec{{Bus: "SCSI", Index: 0, VolumeDiskUUID: vg.Disks[1].UUID, ContainerUUID: ctr.UUID},
			{Bus: "SCSI", Index: 1, VolumeDiskUUID: vg.Disks[0].UUID, SizeBytes: sizes[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVM(ctx, nutanix.VMSpec{Name: name + "-bad", ClusterUUID: vm0.ClusterUUID, MemoryBytes: 1 << 30,
		Disks: []nutanix.DiskSpec{{VolumeDiskUUID: vg.Disks[0].UUID, ImageUUID: vg.Disks[1].UUID}}}); err == nil {
		t.Error("a disk with two sources was accepted")
	}
	if err := c.DeleteVolumeGroup(ctx, vg.UUID); err != nil {
		t.Fatal(err)
	}
	rv, err := c.GetVM(ctx, id)
	if err != nil || len(rv.Disks) != 2 || rv.Disks[0].SizeBytes != sizes[1] || rv.Disks[1].SizeBytes != sizes[0] {
		t.Fatalf("VM %+v %v", rv, err)
	}
	vi, _ := s.VM(id)
	for i, f := range vi.Disks {
		want := make([]byte, sizes[1-i])
		copy(want[int64(1-i)*65536+512:], data[1-i])
		if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got, want) {
			t.Errorf("VM disk %d differs from VG disk %d (%v)", i, 1-i, err)
		}
	}
	if err := c.DeleteVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	if l, err := c.ListVolumeGroups(ctx, name); err != nil || len(l) != 0 {
		t.Errorf("after delete: %+v %v", l, err)
	}

	// A failing task (v4: the second disk's, v2: the group's) leaves no
	// group behind.
	if err := s.SetFaults(prismsim.Faults{FailTasks: 1, FailOps: []string{"CreateVolumeDisk", "VolumeGroupCreate"}}); err != nil {
		t.Fatal(err)
	}
	vg, err = c.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: name + "-fail", DiskSizes: sizes})
	s.SetFaults(prismsim.Faults{})
	var te *nutanix.TaskError
	if !errors.As(err, &te) {
		t.Errorf("failing create: %+v %v, want a *TaskError", vg, err)
	}
	if err := c.DeleteVolumeGroup(ctx, vg.UUID); vg.UUID != "" && err != nil {
		t.Errorf("delete after failure: %v", err)
	}
	if l, err := c.ListVolumeGroups(ctx, name+"-fail"); err != nil || len(l) != 0 {
		t.Errorf("failed create left %+v %v", l, err)
	}

	// Images by name.
	imName := "ahvfs-restore-image-" + string(c.API())
	im, err := c.CreateImage(ctx, nutanix.ImageSpec{Name: imName})
	if err != nil {
		t.Fatal(err)
	}
	defer c.DeleteImage(ctx, im.UUID)
	if got, err := c.ListImages(ctx, imName); err != nil || len(got) != 1 || got[0].UUID != im.UUID || got[0].Name != imName {
		t.Errorf("ListImages(%q) = %+v, %v", imName, got, err)
	}
	if got, err := c.ListImages(ctx, imName+"-none"); err != nil || len(got) != 0 {
		t.Errorf("ListImages(none) = %+v, %v", got, err)
	}
	if all, err := c.ListImages(ctx, ""); err != nil || len(all) == 0 {
		t.Errorf("ListImages() = %+v, %v", all, err)
	}
}
