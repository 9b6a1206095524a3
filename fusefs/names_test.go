package fusefs_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
)

// TestMountVMNames: through the kernel, VMs whose names hold '/', '%',
// spaces, non-ASCII or too many bytes to show whole appear under
// rptree.VMDirName (names of at most 255 bytes the kernel accepts), and
// VM@TIME as "ahvfs list" prints it leads to a directory whose vm.json
// names the exact VM.
func TestMountVMNames(t *testing.T) {
	dir := rptreetest.RepoWithVMs(t, rptreetest.VMNames, rptreetest.RawDisk(t))
	mp, _ := mount(t, dir, rptree.Options{}, fusefs.Options{})
	r := enginetest.Open(t, dir, engine.OpenOptions{})
	ctx := context.Background()
	ts := engine.FormatTime(rptreetest.T0)

	entries, err := os.ReadDir(mp)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for _, vm := range rptreetest.VMNames {
		want = append(want, rptree.VMDirName(vm))
	}
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("root lists %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] || len(got[i]) > rptree.MaxNameLen {
			t.Errorf("root entry %q (%d bytes), want %q", got[i], len(got[i]), want[i])
		}
	}
	for _, vm := range rptreetest.VMNames {
		rp, err := r.Resolve(ctx, vm+"@"+ts)
		if err != nil {
			t.Errorf("resolve %q: %v", vm+"@"+ts, err)
			continue
		}
		rpDir := filepath.Join(mp, filepath.FromSlash(rptree.RestorePointDir(rp)))
		b, err := os.ReadFile(filepath.Join(rpDir, "vm.json"))
		var doc struct {
			VM string `json:"vm"`
		}
		if err != nil || json.Unmarshal(b, &doc) != nil || doc.VM != vm {
			t.Errorf("%s/vm.json: %v: vm %q, want %q", rpDir, err, doc.VM, vm)
		}
		if target, err := os.Readlink(filepath.Join(filepath.Dir(rpDir), "latest")); err != nil || target != ts {
			t.Errorf("%s/latest -> %q %v", filepath.Dir(rpDir), target, err)
		}
		if _, err := os.Stat(filepath.Join(rpDir, "disk-0", "part-0", "README.txt")); err != nil {
			t.Errorf("guest tree: %v", err)
		}
	}
}
