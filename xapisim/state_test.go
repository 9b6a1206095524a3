package xapisim_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/xapisim"
	"github.com/ahvfs/ahvfs/xapisim/xapisimtest"
)

// TestRestartKeepsState: a simulator restarted on the same state directory
// has the same VMs, snapshots, VDIs (with their CBT metadata), password and
// certificate; sessions are gone.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	spec := xapisim.VMSpec{Name: "web", Files: []string{image(t, 4<<20, 0, 9)}}
	sim := xapisimtest.Start(t, xapisimtest.Options{Options: xapisim.Options{StateDir: dir}, VMs: []xapisim.VMSpec{spec}})
	c := login(t, sim)
	vm := c.vmRef("web")
	live := c.disks(vm)[0]
	c.mustInto(nil, "VDI.enable_cbt", live)
	c.mustInto(nil, "VM.add_to_other_config", vm, "k", "v")
	a := c.async("VM.snapshot", vm, "a")
	if err := sim.Write("web", 0, 3<<16, []byte("guest write")); err != nil {
		t.Fatal(err)
	}
	b := c.async("VM.snapshot", vm, "b")
	aDisk, bDisk := c.disks(a)[0], c.disks(b)[0]
	c.mustInto(nil, "VDI.data_destroy", aDisk)
	want := c.str("VDI.list_changed_blocks", aDisk, bDisk)
	disk := readFile(t, mustDisk(t, sim, "web", 0))
	ca, pw, oldSession := readFile(t, sim.CAFile()), sim.Password(), c.session
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}

	sim2 := xapisimtest.Start(t, xapisimtest.Options{Options: xapisim.Options{StateDir: dir}, VMs: []xapisim.VMSpec{spec}})
	if sim2.Password() != pw || !bytes.Equal(readFile(t, sim2.CAFile()), ca) {
		t.Error("password or CA changed across the restart")
	}
	if !bytes.Equal(readFile(t, mustDisk(t, sim2, "web", 0)), disk) {
		t.Error("the VM's disk was copied in again")
	}
	c2 := newClient(t, sim2)
	if _, xe := c2.raw("VM.get_all", oldSession); xe == nil || xe.Code != "SESSION_INVALID" {
		t.Errorf("old session: %v", xe)
	}
	c2 = login(t, sim2)
	if got := c2.vmRef("web"); got != vm {
		t.Errorf("VM ref %s, was %s", got, vm)
	}
	if oc := c2.record("VM.get_other_config", vm); oc["k"] != "v" {
		t.Errorf("other_config %v", oc)
	}
	var snaps []string
	c2.mustInto(&snaps, "VM.get_snapshots", vm)
	if !slices.Equal(snaps, []string{a, b}) {
		t.Errorf("snapshots %v, want %v", snaps, []string{a, b})
	}
	if c2.str("VDI.get_type", aDisk) != "cbt_metadata" || c2.record("VDI.get_record", live)["cbt_enabled"] != true {
		t.Error("VDI state lost")
	}
	if got := c2.str("VDI.list_changed_blocks", aDisk, bDisk); got != want {
		t.Errorf("changed blocks %q, were %q", got, want)
	}
	if got := c2.getBody("/export_raw_vdi?session_id=" + c2.session + "&vdi=" + bDisk); !bytes.Equal(got, disk) {
		t.Error("snapshot data lost")
	}
}

// TestInventory: Sim.Inventory and GET /sim/inventory (xapisimtest) agree
// and Diff names what a job left behind.
func TestInventory(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	remote := xapisimtest.RemoteOf(sim)
	before, err := xapisimtest.Inventory(ctx, remote)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.VMs) != 1 || len(before.VDIs) != 2 || len(before.Sessions) != 1 || before.Sessions[0].Originator != "xapisim-test" {
		t.Fatalf("inventory %+v", before)
	}
	xapisimtest.RequireUnchanged(t, before, sim.Inventory())
	snap := c.async("VM.snapshot", c.vmRef("web"), "left behind")
	after, err := xapisimtest.Inventory(ctx, remote)
	if err != nil {
		t.Fatal(err)
	}
	if d := xapisim.Diff(before, after); len(d) != 3 { // the snapshot and its two VDIs
		t.Fatalf("diff %v", d)
	}
	c.mustInto(nil, "VM.destroy", snap)
	for _, v := range after.VDIs {
		if v.IsSnapshot {
			c.mustInto(nil, "VDI.destroy", v.Ref)
		}
	}
	xapisimtest.RequireUnchanged(t, before, sim.Inventory())
	if _, err := xapisimtest.InventoryWait(ctx, xapisimtest.Remote{URL: remote.URL, CAFile: remote.CAFile, PasswordFile: sim.CAFile()}, 0); err == nil {
		t.Error("a wrong password was accepted by /sim/inventory")
	}
}
