package guestfs

import "testing"

// FuzzLVMText fuzzes the LVM2 text metadata parser and the volume mapping
// built from it.
func FuzzLVMText(f *testing.F) {
	f.Add(`vg0 {
id = "abc"
seqno = 3
extent_size = 8192
physical_volumes {
pv0 { id = "pv-uuid" device = "/dev/sda2" pe_start = 2048 pe_count = 100 }
}
logical_volumes {
root { id = "lv" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
segment1 { start_extent = 0 extent_count = 25 type = "striped" stripe_count = 1 stripes = [ "pv0", 0 ] }
}
}
}
# comment
contents = "Text Format Volume Group"
version = 1
`)
	f.Add(`a { b = [ "x", 1, "y\"z" ] c { } }`)
	f.Fuzz(func(t *testing.T, text string) {
		root, err := parseLVMText(text)
		if err != nil {
			return
		}
		pv := &lvmPV{uuid: "pvuuid", part: &Partition{Size: 1 << 30, r: &sectionReader{}}}
		for _, k := range root.keys {
			if sec, ok := root.vals[k].(*lvmSection); ok {
				vgLVs(k, sec, map[string]*lvmPV{"pvuuid": pv})
			}
		}
	})
}

func TestParseLVMText(t *testing.T) {
	root, err := parseLVMText(`vg { seqno = 7 list = ["a", 2] sub { x = "y" } }`)
	if err != nil {
		t.Fatal(err)
	}
	vg := root.vals["vg"].(*lvmSection)
	if n, _ := vg.num("seqno"); n != 7 {
		t.Errorf("seqno %d", n)
	}
	if l := vg.vals["list"].([]any); len(l) != 2 || l[0] != "a" || l[1] != int64(2) {
		t.Errorf("list %v", l)
	}
	if s, _ := vg.vals["sub"].(*lvmSection).str("x"); s != "y" {
		t.Errorf("sub.x %q", s)
	}
	for _, bad := range []string{`vg {`, `vg { x = }`, `}`, `x = "unterminated`, `x = [1, [2]]`} {
		if _, err := parseLVMText(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
