package prismsim_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// v3Snapshot takes a v3 vm_snapshot and waits until it is COMPLETE with files.
func v3Snapshot(t *testing.T, a *api, vmUUID, name, typ string) map[string]any {
	t.Helper()
	r := a.do("POST", "/api/nutanix/v3/vm_snapshots", map[string]any{"api_version": "3.0",
		"metadata": map[string]any{"kind": "vm_snapshot"},
		"spec":     map[string]any{"name": name, "snapshot_type": typ, "resources": map[string]any{"entity_uuid": vmUUID}}}).must(t, 202)
	id := str(r.body, "metadata.uuid")
	if st := a.waitV3Task(str(r.body, "status.execution_context.task_uuid")); str(st, "status") != "SUCCEEDED" {
		t.Fatalf("snapshot task: %v", st)
	}
	g := a.do("GET", "/api/nutanix/v3/vm_snapshots/"+id, nil).must(t, 200)
	if str(g.body, "status.state") != "COMPLETE" || len(list(g.body, "status.snapshot_file_list")) == 0 {
		t.Fatalf("snapshot: %s", g.raw)
	}
	return g.body
}

func v3Regions(t *testing.T, a *api, body map[string]any) (regions []string, pages int) {
	t.Helper()
	for {
		pages++
		r := a.do("POST", "/api/nutanix/v3/data/changed_regions", body).must(t, 200)
		regions = append(regions, regionsOf(list(r.body, "region_list"), "type")...)
		next, ok := get(r.body, "next_offset").(float64)
		if !ok {
			return regions, pages
		}
		body["start_offset"] = int64(next)
	}
}

// TestSnapshotsAndChangedRegionsV3: snapshots are point-in-time copies that
// later guest writes do not change; the allocation map and the changed
// regions between two snapshots are exact per 64 KiB block (REGULAR for
// non-zero changed blocks, ZEROED for blocks that became zero, nothing for
// unchanged ones), paging with next_offset and end_offset works, and bad
// paths are refused like on AOS.
func TestSnapshotsAndChangedRegionsV3(t *testing.T) {
	s := simtest.Start(t, simtest.Options{Options: prismsim.Options{MaxRegionsPerPage: 2}})
	a := newAPI(t, s)
	const size = 64 * blk // 4 MiB
	img := makeDisk(t, t.TempDir(), size, 0, 1, 5, 10, 11, 12, 40)
	v, err := s.AddVM(context.Background(), "guest", []string{img}, prismsim.VMOptions{NGT: prismsim.NGTInstalled})
	if err != nil {
		t.Fatal(err)
	}
	snap1 := v3Snapshot(t, a, v.UUID, "s1", "APPLICATION_CONSISTENT")
	if str(snap1, "status.snapshot_type") != "CRASH_CONSISTENT" || str(snap1, "spec.snapshot_type") != "APPLICATION_CONSISTENT" {
		t.Errorf("NGT without VSS must fall back to crash-consistent: %v", snap1["status"])
	}
	path1 := str(snap1, "status.snapshot_file_list[0].snapshot_file_path")
	files1, _ := s.SnapshotDiskFiles(str(snap1, "metadata.uuid"))
	before := readAll(t, files1[0])

	// The guest writes: block 1 new data, block 5 zeroed, block 20 (a hole)
	// new data, block 11 rewritten with identical bytes, block 63 zeroed
	// (it was a hole: no change).
	live, err := os.OpenFile(v.Disks[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeBlock(t, live, 1, true)
	writeBlock(t, live, 5, false)
	writeBlock(t, live, 20, true)
	same := make([]byte, blk)
	live.ReadAt(same, 11*blk)
	live.WriteAt(same, 11*blk)
	writeBlock(t, live, 63, false)
	live.Close()

	if !bytes.Equal(readAll(t, files1[0]), before) {
		t.Fatal("a guest write changed snapshot s1")
	}
	snap2 := v3Snapshot(t, a, v.UUID, "s2", "CRASH_CONSISTENT")
	path2 := str(snap2, "status.snapshot_file_list[0].snapshot_file_path")
	if path1 == path2 || str(snap1, "status.snapshot_file_list[0].file_path") != str(snap2, "status.snapshot_file_list[0].file_path") {
		t.Fatalf("paths: %s %s", path1, path2)
	}

	// Allocation map of s1 (a full): REGULAR exactly on the non-zero blocks.
	full, pages := v3Regions(t, a, map[string]any{"snapshot_file_path": path1})
	var regular []string
	for _, r := range full {
		var off, n int64
		var typ string
		fmt.Sscanf(r, "%d+%d:%s", &off, &n, &typ)
		if typ == "REGULAR" {
			regular = append(regular, r)
		}
	}
	want := []string{fmt.Sprintf("0+%d:REGULAR", 2*blk), fmt.Sprintf("%d+%d:REGULAR", 5*blk, blk),
		fmt.Sprintf("%d+%d:REGULAR", 10*blk, 3*blk), fmt.Sprintf("%d+%d:REGULAR", 40*blk, blk)}
	if !slices.Equal(regular, want) {
		t.Errorf("allocation map REGULAR regions %v, want %v (all: %v)", regular, want, full)
	}
	if pages < 2 {
		t.Errorf("MaxRegionsPerPage=2 should page the full map, got %d page(s)", pages)
	}
	covered := int64(0)
	for _, r := range full {
		var off, n int64
		var typ string
		fmt.Sscanf(r, "%d+%d:%s", &off, &n, &typ)
		if off != covered {
			t.Fatalf("allocation map has a gap at %d: %v", covered, full)
		}
		covered += n
	}
	if covered != size {
		t.Errorf("allocation map covers %d of %d bytes", covered, size)
	}

	// Incremental s2 vs s1: exactly blocks 1 (REGULAR), 5 (ZEROED), 20 (REGULAR).
	incr, _ := v3Regions(t, a, map[string]any{"snapshot_file_path": path2, "reference_snapshot_file_path": path1})
	want = []string{fmt.Sprintf("%d+%d:REGULAR", 1*blk, blk), fmt.Sprintf("%d+%d:ZEROED", 5*blk, blk), fmt.Sprintf("%d+%d:REGULAR", 20*blk, blk)}
	if !slices.Equal(incr, want) {
		t.Errorf("changed regions %v, want %v", incr, want)
	}
	// Identical snapshots: empty list plus file_size.
	r := a.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": path2, "reference_snapshot_file_path": path2}).must(t, 200)
	if len(list(r.body, "region_list")) != 0 || num(r.body, "file_size") != size || get(r.body, "next_offset") != nil {
		t.Errorf("identical: %s", r.raw)
	}
	// A window [0, 8 blocks): next_offset = end of the window.
	r = a.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": path2,
		"reference_snapshot_file_path": path1, "start_offset": 0, "end_offset": 8 * blk}).must(t, 200)
	if got := regionsOf(list(r.body, "region_list"), "type"); len(got) != 2 || num(r.body, "next_offset") != 8*blk {
		t.Errorf("window: %s", r.raw)
	}
	// Live paths and unknown paths are refused (400, ENTITY_NOT_FOUND).
	for _, p := range []string{str(snap1, "status.snapshot_file_list[0].file_path"), "/default/.snapshot/99/1-2-3/.acropolis/vmdisk/nope"} {
		r = a.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": p}).must(t, 400)
		if str(r.body, "message_list[0].reason") != "ENTITY_NOT_FOUND" || str(r.body, "kind") != "changed_regions" {
			t.Errorf("bad path: %s", r.raw)
		}
	}
	// List, then delete s1.
	r = a.do("POST", "/api/nutanix/v3/vm_snapshots/list", map[string]any{"kind": "vm_snapshot", "filter": "entity_uuid==" + v.UUID}).must(t, 200)
	if num(r.body, "metadata.total_matches") != 2 {
		t.Errorf("list: %s", r.raw)
	}
	r = a.do("DELETE", "/api/nutanix/v3/vm_snapshots/"+str(snap1, "metadata.uuid"), nil).must(t, 202)
	a.waitV3Task(str(r.body, "status.execution_context.task_uuid"))
	a.do("GET", "/api/nutanix/v3/vm_snapshots/"+str(snap1, "metadata.uuid"), nil).must(t, 404)
	if _, err := os.Stat(files1[0]); !os.IsNotExist(err) {
		t.Errorf("snapshot file left: %v", err)
	}
	a.do("POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": path1}).must(t, 400)
}

// TestComputeRegionsOracle cross-checks the region computation against a
// naive block comparison on a larger random layout, with several block
// sizes.
func TestComputeRegionsOracle(t *testing.T) {
	dir := t.TempDir()
	const n = 256
	var b1 []int64
	for i := int64(0); i < n; i++ {
		if i%7 == 0 || i%11 == 0 {
			b1 = append(b1, i)
		}
	}
	ref := makeDisk(t, dir, n*blk, b1...)
	cur := dir + "/cur.raw"
	if err := os.WriteFile(cur, readAll(t, ref), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(cur, os.O_RDWR, 0)
	for i := int64(0); i < n; i++ {
		switch {
		case i%13 == 0:
			writeBlock(t, f, i, true)
		case i%14 == 0:
			writeBlock(t, f, i, false)
		}
	}
	f.Close()
	a, b := readAll(t, cur), readAll(t, ref)
	for _, bs := range []int64{32 << 10, 64 << 10, 256 << 10} {
		got, err := prismsim.ComputeRegions(cur, ref, 0, 0, bs)
		if err != nil {
			t.Fatal(err)
		}
		// Expand to per-block types and compare with the naive answer.
		typ := map[int64]string{}
		for _, r := range got {
			for o := r.Offset; o < r.Offset+r.Length; o += bs {
				typ[o] = r.Type
			}
		}
		for o := int64(0); o < int64(len(a)); o += bs {
			x, y := a[o:o+bs], b[o:o+bs]
			want := ""
			if !bytes.Equal(x, y) {
				want = "REGULAR"
				if bytes.Equal(x, make([]byte, bs)) {
					want = "ZEROED"
				}
			}
			if typ[o] != want {
				t.Fatalf("bs %d block at %d: got %q want %q", bs, o, typ[o], want)
			}
		}
	}
}
