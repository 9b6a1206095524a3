// Package interop_test runs ahvfs's XenAPI client (package xapi) against
// the simulator. Each was written from the public XenAPI reference
// without the other, so a disagreement here is a bug in one of them. The
// tests live in their own directory so a change of the client's API
// cannot stop the simulator's own tests from building.
package interop_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

func image(t *testing.T, size int64, blocks ...int64) string {
	t.Helper()
	p := t.TempDir() + "/img.raw"
	b := make([]byte, size)
	for _, i := range blocks {
		for j := range int64(64 << 10) {
			b[i*64<<10+j] = byte(i + j)
		}
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClientAgainstSimulator: the calls a backup and a restore make.
func TestClientAgainstSimulator(t *testing.T) {
	sim := xapisimtest.Start(t, xapisimtest.Options{VMs: []xapisim.VMSpec{
		{Name: "web", Files: []string{image(t, 6<<20, 0, 5, 90)}, Firmware: "uefi", SecureBoot: true},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := xapi.Connect(ctx, xapi.Options{URL: sim.URL(), User: "root", Password: sim.Password(), CAFile: sim.CAFile()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)

	vms, err := c.VMsByName(ctx, "web")
	if err != nil || len(vms) != 1 {
		t.Fatalf("VMsByName: %v %v", vms, err)
	}
	vm := vms[0]
	if vm.PowerState != "Running" || vm.Firmware() != "uefi" || !vm.SecureBoot() || vm.IsASnapshot {
		t.Errorf("VM %+v", vm)
	}
	var disk xapi.VDI
	for _, b := range vm.VBDs {
		vbd, err := c.VBD(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if vbd.Type == "Disk" {
			if disk, err = c.VDI(ctx, vbd.VDI); err != nil {
				t.Fatal(err)
			}
		}
	}
	if disk.VirtualSize != 6<<20 {
		t.Fatalf("disk %+v", disk)
	}
	if err := c.EnableCBT(ctx, disk.Ref); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOtherConfigKey(ctx, "VM", vm.Ref, "ahvfs", "1"); err != nil {
		t.Fatal(err)
	}
	snapDisk := func(snap xapi.Ref) xapi.VDI {
		t.Helper()
		v, err := c.VM(ctx, snap)
		if err != nil {
			t.Fatal(err)
		}
		if !v.IsASnapshot || v.SnapshotOf != vm.Ref {
			t.Fatalf("snapshot %+v", v)
		}
		for _, b := range v.VBDs {
			vbd, err := c.VBD(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if vbd.Type == "Disk" {
				d, err := c.VDI(ctx, vbd.VDI)
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
		}
		t.Fatal("snapshot without a disk")
		return xapi.VDI{}
	}
	s1, err := c.Snapshot(ctx, vm.Ref, "s1")
	if err != nil {
		t.Fatal(err)
	}
	d1 := snapDisk(s1)
	if !d1.CBTEnabled || !d1.IsASnapshot || d1.SnapshotOf != disk.Ref {
		t.Errorf("snapshot VDI %+v", d1)
	}
	if err := sim.Write("web", 0, 33<<16+5, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(mustDisk(t, sim))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Snapshot(ctx, vm.Ref, "s2")
	if err != nil {
		t.Fatal(err)
	}
	d2 := snapDisk(s2)
	bm, err := c.ListChangedBlocks(ctx, d1.Ref, d2.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := bm.Extents(d2.VirtualSize); !slices.Equal(got, []xapi.Extent{{Off: 33 << 16, Len: 64 << 10}}) {
		t.Errorf("extents %v", got)
	}

	infos, err := c.NBDInfo(ctx, d2.Ref)
	if err != nil || len(infos) != 1 {
		t.Fatalf("NBDInfo %v %v", infos, err)
	}
	in := infos[0]
	nc, err := nbd.Dial(ctx, nbd.Options{Address: net.JoinHostPort(in.Address, strconv.FormatInt(in.Port, 10)),
		Export: in.ExportName, CAPEM: []byte(in.Cert), ServerName: in.Subject})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, d2.VirtualSize)
	_, err = nc.ReadAtContext(ctx, got, 0)
	nc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("NBD read: %v (equal %v)", err, bytes.Equal(got, want))
	}

	rc, err := c.ExportRawVDI(ctx, d2.Ref)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("ExportRawVDI: %v", err)
	}

	rc, err = c.ExportVM(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	xva, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	srs, err := c.SRs(ctx)
	if err != nil || len(srs) != 1 {
		t.Fatalf("SRs %v %v", srs, err)
	}
	refs, err := c.ImportVM(ctx, srs[0].Ref, bytes.NewReader(xva))
	if err != nil || len(refs) != 1 {
		t.Fatalf("ImportVM %v %v", refs, err)
	}
	info, err := sim.VM(string(refs[0]))
	if err != nil || len(info.Disks) != 1 {
		t.Fatalf("imported VM %+v %v", info, err)
	}
	if b, _ := os.ReadFile(info.Disks[0]); !bytes.Equal(b, want) {
		t.Error("imported disk differs")
	}

	if err := c.DataDestroy(ctx, d1.Ref); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListChangedBlocks(ctx, d1.Ref, d2.Ref); err != nil {
		t.Errorf("after data_destroy: %v", err)
	}
	for _, s := range []xapi.Ref{s1, s2} {
		if err := c.DestroyVM(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []xapi.Ref{d1.Ref, d2.Ref} {
		if err := c.DestroyVDI(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.VM(ctx, s1); !xapi.IsCode(err, "HANDLE_INVALID") {
		t.Errorf("destroyed snapshot: %v", err)
	}

	// The client logs in again after the session expires.
	sim.ExpireSessions()
	if _, err := c.VM(ctx, vm.Ref); err != nil {
		t.Errorf("after the sessions expired: %v", err)
	}
}

func mustDisk(t *testing.T, sim *xapisim.Sim) string {
	t.Helper()
	p, err := sim.DiskFile("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
