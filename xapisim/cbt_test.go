package xapisim_test

import (
	"bytes"
	"encoding/base64"
	"slices"
	"testing"

	"github.com/ahvfs/ahvfs/xapisim"
)

// changed decodes a list_changed_blocks answer into block numbers.
func changed(t testing.TB, b64 string) (blocks []int, nbytes int) {
	t.Helper()
	bm, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("bitmap %q: %v", b64, err)
	}
	for i := range len(bm) * 8 {
		if bm[i/8]&(0x80>>(i%8)) != 0 {
			blocks = append(blocks, i)
		}
	}
	return blocks, len(bm)
}

// snapDisks returns the snapshot VDIs of a snapshot VM (userdevice order).
func (c *client) snapDisks(snap string) []string { return c.disks(snap) }

// TestSnapshotRecords: VM.snapshot makes the records xapi makes, with
// copies of the disks.
func TestSnapshotRecords(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	live := c.disks(vm)
	c.mustInto(nil, "VDI.enable_cbt", live[0])
	before := [][]byte{readFile(t, mustDisk(t, sim, "web", 0)), readFile(t, mustDisk(t, sim, "web", 1))}
	snap := c.async("VM.snapshot", vm, "nightly")
	if err := sim.Write("web", 0, 0, []byte("changed after the snapshot")); err != nil {
		t.Fatal(err)
	}
	rec := c.record("VM.get_record", snap)
	if rec["is_a_snapshot"] != true || rec["snapshot_of"] != vm || rec["name_label"] != "nightly" ||
		rec["power_state"] != "Halted" || rec["snapshot_time"] == "19700101T00:00:00Z" {
		t.Fatalf("snapshot record %v", rec)
	}
	if snaps := c.record("VM.get_record", vm)["snapshots"].([]any); len(snaps) != 1 || snaps[0] != snap {
		t.Errorf("VM snapshots %v", snaps)
	}
	var cds int
	for _, b := range rec["VBDs"].([]any) {
		if v := c.record("VBD.get_record", b); v["type"] == "CD" {
			cds++
			if v["empty"] != true || v["currently_attached"] != false {
				t.Errorf("snapshot CD %v", v)
			}
		}
	}
	if cds != 1 {
		t.Errorf("%d CD VBDs on the snapshot", cds)
	}
	sd := c.snapDisks(snap)
	if len(sd) != 2 {
		t.Fatalf("snapshot disks %v", sd)
	}
	inv := sim.Inventory()
	for i, ref := range sd {
		v := c.record("VDI.get_record", ref)
		if v["is_a_snapshot"] != true || v["snapshot_of"] != live[i] || v["cbt_enabled"] != (i == 0) {
			t.Errorf("snapshot VDI %d: %v", i, v)
		}
		var obj xapisim.VDIObject
		for _, o := range inv.VDIs {
			if o.Ref == ref {
				obj = o
			}
		}
		if !obj.HasData || obj.HasCBTMetadata != (i == 0) {
			t.Errorf("inventory of snapshot VDI %d: %+v", i, obj)
		}
		info, err := sim.VM(snap)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, info.Disks[i]); !bytes.Equal(got, before[i]) {
			t.Errorf("snapshot disk %d differs from the disk at snapshot time", i)
		}
	}

	// Quiesced snapshots need guest tools that can quiesce.
	c.wantErr("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", nil, "VM.snapshot_with_quiesce", vm, "q")
	if err := sim.SetQuiesce("web", true); err != nil {
		t.Fatal(err)
	}
	q := c.async("VM.snapshot_with_quiesce", vm, "q")
	if c.record("VM.get_record", q)["is_a_snapshot"] != true {
		t.Error("quiesced snapshot is not a snapshot")
	}

	// Destroying a snapshot leaves its VDIs.
	c.mustInto(nil, "VM.destroy", snap)
	for _, ref := range sd {
		if v := c.record("VDI.get_record", ref); len(v["VBDs"].([]any)) != 0 {
			t.Errorf("VDI %s still has VBDs %v", ref, v["VBDs"])
		}
	}
	c.wantErr("OPERATION_NOT_ALLOWED", nil, "VM.snapshot", q, "of a snapshot")
}

func mustDisk(t testing.TB, sim *xapisim.Sim, vm string, n int) string {
	t.Helper()
	p, err := sim.DiskFile(vm, n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChangedBlocks: list_changed_blocks names exactly the 64 KiB blocks
// written between two snapshots, also after data_destroy of the older
// one; CBT epochs and lineages are kept apart.
func TestChangedBlocks(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	live := c.disks(vm)
	c.mustInto(nil, "VDI.enable_cbt", live[0])
	if c.record("VDI.get_record", live[0])["cbt_enabled"] != true {
		t.Fatal("CBT not enabled")
	}
	a := c.snapDisks(c.async("VM.snapshot", vm, "a"))

	const blk = 64 << 10
	disk0 := mustDisk(t, sim, "web", 0)
	old17 := readFile(t, disk0)[17*blk : 18*blk]
	writes := []struct {
		off  int64
		data []byte
	}{
		{5*blk + 100, []byte("0123456789")},                                   // block 5
		{17 * blk, make([]byte, blk)},                                         // block 17 zeroed
		{0, readFile(t, disk0)[:blk]},                                         // block 0 rewritten as it was: unchanged
		{41*blk - 10, bytes.Repeat([]byte{7}, 20)},                            // blocks 40 and 41
		{128*blk - 1, []byte{1}},                                              // the last block
		{100 * blk, append([]byte{}, readFile(t, disk0)[100*blk:101*blk]...)}, // same bytes: unchanged
	}
	for _, w := range writes {
		if err := sim.Write("web", 0, w.off, w.data); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Equal(old17, make([]byte, blk)) {
		t.Fatal("block 17 of the image should hold data")
	}
	b := c.snapDisks(c.async("VM.snapshot", vm, "b"))
	want := []int{5, 17, 40, 41, 127}
	got, n := changed(t, c.str("VDI.list_changed_blocks", a[0], b[0]))
	if !slices.Equal(got, want) || n != 16 {
		t.Fatalf("changed blocks %v (%d bytes), want %v (16 bytes)", got, n, want)
	}
	if got, _ := changed(t, c.async2("VDI.list_changed_blocks", a[0], b[0])); !slices.Equal(got, want) {
		t.Errorf("Async changed blocks %v", got)
	}

	// A live disk plugged into a running VM cannot be vdi_to; halted, it
	// can, hashed as it is now.
	c.wantErr("VDI_IN_USE", []string{live[0], "list_changed_blocks"}, "VDI.list_changed_blocks", b[0], live[0])
	c.mustInto(nil, "VM.hard_shutdown", vm)
	if err := sim.Write("web", 0, 60*blk, []byte{9}); err != nil {
		t.Fatal(err)
	}
	if got, _ := changed(t, c.str("VDI.list_changed_blocks", b[0], live[0])); !slices.Equal(got, []int{60}) {
		t.Errorf("changed blocks to the live disk %v, want [60]", got)
	}
	c.mustInto(nil, "VM.start", vm, false, false)

	// No CBT on disk 1; disk 0 and disk 1 are different lineages.
	c.wantErr("VDI_NO_CBT_METADATA", []string{a[1]}, "VDI.list_changed_blocks", a[1], b[1])
	c.wantErr("VDI_NO_CBT_METADATA", nil, "VDI.list_changed_blocks", a[0], b[1])

	// data_destroy keeps the metadata.
	c.mustInto(nil, "VDI.data_destroy", a[0])
	rec := c.record("VDI.get_record", a[0])
	if rec["type"] != "cbt_metadata" || rec["is_a_snapshot"] != true {
		t.Errorf("after data_destroy: %v", rec)
	}
	if got, _ := changed(t, c.str("VDI.list_changed_blocks", a[0], b[0])); !slices.Equal(got, want) {
		t.Errorf("after data_destroy: changed blocks %v", got)
	}
	var infos []any
	c.mustInto(&infos, "VDI.get_nbd_info", a[0])
	if len(infos) != 0 {
		t.Errorf("get_nbd_info of a cbt_metadata VDI: %v", infos)
	}
	if res := c.get("/export_raw_vdi?session_id=" + c.session + "&vdi=" + a[0] + "&format=raw"); res.StatusCode == 200 {
		t.Errorf("export_raw_vdi of a cbt_metadata VDI: %s", res.Status)
	} else {
		res.Body.Close()
	}
	c.wantErr("OPERATION_NOT_ALLOWED", nil, "VDI.data_destroy", a[0])
	c.wantErr("OPERATION_NOT_ALLOWED", nil, "VDI.data_destroy", live[0])
	c.wantErr("VDI_NO_CBT_METADATA", []string{b[1]}, "VDI.data_destroy", b[1])
	if got := c.async("VDI.data_destroy", b[0]); got != "" {
		t.Errorf("Async.VDI.data_destroy result %q", got)
	}
	if got, _ := changed(t, c.str("VDI.list_changed_blocks", a[0], b[0])); !slices.Equal(got, want) {
		t.Errorf("between two cbt_metadata VDIs: changed blocks %v", got)
	}

	// A new CBT epoch cannot be compared with the old one.
	c.mustInto(nil, "VDI.disable_cbt", live[0])
	c.mustInto(nil, "VDI.enable_cbt", live[0])
	cc := c.snapDisks(c.async("VM.snapshot", vm, "c"))
	c.wantErr("VDI_NO_CBT_METADATA", nil, "VDI.list_changed_blocks", b[0], cc[0])
	if got, _ := changed(t, c.str("VDI.list_changed_blocks", cc[0], cc[0])); len(got) != 0 {
		t.Errorf("a VDI against itself: %v", got)
	}
}

// async2 runs an Async call whose result is a plain string value.
func (c *client) async2(method string, params ...any) string {
	c.t.Helper()
	task := c.str("Async."+method, params...)
	status, result, info := c.waitTask(task)
	if status != "success" {
		c.t.Fatalf("Async.%s: %s %v", method, status, info)
	}
	const pre, suf = "<value>", "</value>"
	if len(result) < len(pre)+len(suf) || result[:len(pre)] != pre || result[len(result)-len(suf):] != suf {
		c.t.Fatalf("Async.%s: result %q", method, result)
	}
	return result[len(pre) : len(result)-len(suf)]
}
