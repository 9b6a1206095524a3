package rptree_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
)

// TestVMDirName: every VM name, valid under the engine's rules or not
// (names stored before the rules), gets a directory name that is a valid
// path element of at most 255 bytes, distinct from every other's, and
// that maps back to the name unless it had to be hashed.
func TestVMDirName(t *testing.T) {
	cases := []struct {
		vm, dir string // dir "" : only the properties are checked
		hashed  bool
	}{
		{"web01", "web01", false},
		{"db/01", "db%2F01", false},
		{"50%", "50%25", false},
		{"with space", "with space", false},
		{"Café Ünïcödé", "Café Ünïcödé", false},
		{"日本語", "日本語", false},
		{".", "%2E", false},
		{"..", "%2E%2E", false},
		{"...", "...", false},
		{"line\nbreak", "line%0Abreak", false},
		{"nul\x00", "nul%00", false},
		{"del\x7f c1\u0085", "del%7F c1%C2%85", false},
		{"bad utf8 \xff\xfe", "bad utf8 %FF%FE", false},
		{"%~0123456789abcdef", "%25~0123456789abcdef", false},
		{"", "", true},
		{strings.Repeat("x", 255), strings.Repeat("x", 255), false},
		{strings.Repeat("x", 256), "", true},
		{strings.Repeat("x", 5000), "", true},
		{strings.Repeat("/", 85), strings.Repeat("%2F", 85), false},
		{strings.Repeat("/", 86), "", true},
		{strings.Repeat("é", 200), "", true},
		{strings.Repeat("€/", 60), "", true}, // cut between a 3-byte rune and %2F
	}
	for _, name := range rptreetest.VMNames {
		cases = append(cases, struct {
			vm, dir string
			hashed  bool
		}{name, "", len(strings.ReplaceAll(strings.ReplaceAll(name, "%", "%25"), "/", "%2F")) > rptree.MaxNameLen})
	}
	seen := map[string]string{}
	for _, c := range cases {
		d := rptree.VMDirName(c.vm)
		short := c.vm
		if len(short) > 40 {
			short = short[:40] + "…"
		}
		if c.dir != "" && d != c.dir {
			t.Errorf("VMDirName(%q) = %q, want %q", short, d, c.dir)
		}
		if !fs.ValidPath(d) || strings.Contains(d, "/") || d == "." || d == ".." || len(d) > rptree.MaxNameLen || !utf8.ValidString(d) {
			t.Errorf("VMDirName(%q) = %q (%d bytes): not a valid directory name", short, d, len(d))
		}
		for _, r := range d {
			if r < 0x20 || r == 0x7f {
				t.Errorf("VMDirName(%q) = %q holds a control character", short, d)
			}
		}
		if other, dup := seen[d]; dup && other != c.vm {
			t.Errorf("VMDirName(%q) = VMDirName(%q) = %q", short, other, d)
		}
		seen[d] = c.vm
		back, ok := rptree.ParseVMDirName(d)
		if ok == c.hashed || (ok && back != c.vm) {
			t.Errorf("ParseVMDirName(VMDirName(%q)) = %q, %v; hashed %v", short, back, ok, c.hashed)
		}
	}
	for _, bad := range []string{"%41", "%2f", "%2", "a%zz", "x%~0123"} {
		if vm, ok := rptree.ParseVMDirName(bad); ok {
			t.Errorf("ParseVMDirName(%q) = %q, want not ok", bad, vm)
		}
	}
}

// TestVMNamesTree: VMs with names that need escaping appear under
// VMDirName, each directory holds that VM's restore points (vm.json names
// the exact VM), VM@TIME as "ahvfs list" prints it resolves to a restore
// point at RestorePointDir, and the tree passes fstest.TestFS.
func TestVMNamesTree(t *testing.T) {
	dir := rptreetest.RepoWithVMs(t, rptreetest.VMNames, rptreetest.RawDisk(t))
	tree, r := rptreetest.OpenTree(t, dir, rptree.Options{})
	ctx := context.Background()
	ts := engine.FormatTime(rptreetest.T0)

	var expect []string
	for _, vm := range rptreetest.VMNames {
		rp, err := r.Resolve(ctx, vm+"@"+ts)
		if err != nil {
			t.Errorf("resolve %q: %v", vm+"@"+ts, err)
			continue
		}
		rpDir := rptree.RestorePointDir(rp)
		if want := rptree.VMDirName(vm) + "/" + ts; rpDir != want {
			t.Errorf("RestorePointDir = %q, want %q", rpDir, want)
		}
		b, err := fs.ReadFile(tree, rpDir+"/vm.json")
		var doc struct {
			VM           string `json:"vm"`
			RestorePoint string `json:"restore_point"`
		}
		if err != nil || json.Unmarshal(b, &doc) != nil || doc.VM != vm || doc.RestorePoint != rp.Name() {
			t.Errorf("%s/vm.json: %v: vm %q restore_point %q, want %q", rpDir, err, doc.VM, doc.RestorePoint, vm)
		}
		expect = append(expect, rpDir+"/disk-0/part-0/README.txt")
	}
	// Every directory of the root is one of the VMs, each once.
	list, err := tree.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(rptreetest.VMNames) {
		t.Errorf("root lists %d VMs, want %d", len(list), len(rptreetest.VMNames))
	}
	for _, e := range list {
		b, err := fs.ReadFile(tree, e.Name()+"/latest/vm.json")
		var doc struct {
			VM string `json:"vm"`
		}
		if err != nil || json.Unmarshal(b, &doc) != nil || rptree.VMDirName(doc.VM) != e.Name() {
			t.Errorf("%s/latest/vm.json: %v: vm %q", e.Name(), err, doc.VM)
		}
	}
	if err := fstest.TestFS(tree, expect...); err != nil {
		t.Fatal(err)
	}
}

func TestInodeAndImmutable(t *testing.T) {
	seen := map[uint64]string{}
	for _, c := range []struct {
		path      string
		immutable bool
	}{
		{".", false},
		{"web01", false},
		{"web01/latest", false},
		{"web01/2026-11-22T01:30:00Z", false},
		{"web01/latest/vm.json", false},
		{"web01/2026-11-22T01:30:00Z/vm.json", true},
		{"web01/2026-11-22T01:30:00Z/disk-0.raw", true},
		{"web01/2026-11-22T01:30:00Z/disk-0/part-1/etc/passwd", true},
	} {
		if got := rptree.Immutable(c.path); got != c.immutable {
			t.Errorf("Immutable(%s) = %v", c.path, got)
		}
		ino := rptree.Inode(c.path)
		if ino != rptree.Inode(c.path) || (c.path == ".") != (ino == rptree.RootInode) {
			t.Errorf("Inode(%s) = %d", c.path, ino)
		}
		if other, dup := seen[ino]; dup {
			t.Errorf("Inode(%s) = Inode(%s)", c.path, other)
		}
		seen[ino] = c.path
	}
	if rptree.ChildPath(".", "a") != "a" || rptree.ChildPath("a", "b") != "a/b" {
		t.Error("ChildPath")
	}
}
