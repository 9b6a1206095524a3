package xva_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/xva"
)

func TestReadHandBuiltXVA(t *testing.T) {
	f := newFixture()
	r := xva.NewReader(bytes.NewReader(tarOf(t, f.members)))
	disks, names, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Ref:2/00000000", "Ref:2/00000002", "Ref:2/00000003", "Ref:4/00000000", "Ref:4/00000001"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("blocks %v, want %v", names, want)
	}
	if !bytes.Equal(disks["Ref:2"], f.root) {
		t.Error("disk Ref:2 (root, sha1 checksums, a hole, a short last block) differs")
	}
	if !bytes.Equal(disks["Ref:4"], f.data) {
		t.Error("disk Ref:4 (data, xxhash checksums) differs")
	}
	// Next stays at io.EOF.
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
}

func TestBlockFields(t *testing.T) {
	f := newFixture()
	r := xva.NewReader(bytes.NewReader(tarOf(t, f.members)))
	b, err := r.Next() // reads the header first
	if err != nil {
		t.Fatal(err)
	}
	if b.Disk != "Ref:2" || b.Index != 0 || len(b.Data) != xva.BlockSize || b.Name != "Ref:2/00000000" {
		t.Errorf("first block %s %d %d %s", b.Disk, b.Index, len(b.Data), b.Name)
	}
	b, _ = r.Next()
	if b.Index != 2 {
		t.Errorf("after the hole: index %d, want 2", b.Index)
	}
	b, _ = r.Next()
	if b.Index != 3 || len(b.Data) != 512 {
		t.Errorf("last block: index %d, %d bytes, want 3, 512", b.Index, len(b.Data))
	}
}

func TestHeaderAndDisks(t *testing.T) {
	h, err := xva.DecodeHeader([]byte(ovaXML(rootSize, dataSize)))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Version["xapi_minor"]; got != int64(20) {
		t.Errorf("version xapi_minor %#v", got)
	}
	if got := h.Version["export_vsn"]; got != "2" {
		t.Errorf("version export_vsn %#v (bare text is a string)", got)
	}
	vm, err := h.VM()
	if err != nil {
		t.Fatal(err)
	}
	if vm.ID != "Ref:0" {
		t.Errorf("VM %s, want Ref:0 (Ref:10 is a snapshot)", vm.ID)
	}
	f := vm.Fields
	checks := map[string]any{
		"name_label":            "web01",
		"name_description":      "",
		"is_a_template":         false,
		"memory_static_max":     "1073741824",
		"HVM_shadow_multiplier": 1.5,
		"snapshot_time":         time.Unix(0, 0).UTC(),
		"VBDs":                  []any{"Ref:3", "Ref:1", "Ref:6"},
		"platform":              map[string]any{"secureboot": "false", "device-model": "qemu-upstream-compat"},
		"other_config":          map[string]any{"note": "a < b & c"},
		"blobs":                 map[string]any{},
		"tags":                  []any{},
		"bios_strings":          nil,
	}
	for k, want := range checks {
		if got, ok := f[k]; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("VM field %s = %#v, want %#v", k, got, want)
		}
	}
	disks, err := h.Disks()
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 2 {
		t.Fatalf("%d disks, want 2 (the CD is left out)", len(disks))
	}
	d0, d1 := disks[0], disks[1]
	if d0.ID != "Ref:2" || d0.Userdevice != "0" || !d0.Bootable || d0.VirtualSize != rootSize || d0.NameLabel != "root" || d0.VBD.ID != "Ref:1" || d0.VDI.ID != "Ref:2" {
		t.Errorf("disk 0: %+v", d0)
	}
	if d1.ID != "Ref:4" || d1.Userdevice != "1" || d1.Bootable || d1.VirtualSize != dataSize || d1.NameLabel != "data" {
		t.Errorf("disk 1: %+v", d1)
	}
}

func TestDummyBlocks(t *testing.T) {
	// XAPI's idle-connection workaround: a zero-length block (with its
	// checksum) advances the counter but not the disk. Root's blocks 2 and
	// 3 then come as counters 3 and 4.
	f := newFixture()
	ms := []member{f.members[0]}
	ms = append(ms, sha1Block("Ref:2/00000000", f.root[:mib])...)
	ms = append(ms, xxBlock("Ref:2/00000001", nil)...)
	ms = append(ms, sha1Block("Ref:2/00000003", f.root[2*mib:3*mib])...)
	ms = append(ms, sha1Block("Ref:2/00000004", f.root[3*mib:])...)
	ms = append(ms, f.members[7:]...)
	r := xva.NewReader(bytes.NewReader(tarOf(t, ms)))
	disks, names, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disks["Ref:2"], f.root) {
		t.Error("disk with a dummy block differs")
	}
	want := []string{"Ref:2/00000000", "Ref:2/00000003", "Ref:2/00000004", "Ref:4/00000000", "Ref:4/00000001"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	// A zero-length last block is not a dummy but a short block.
	ms = append([]member{f.members[0]}, sha1Block("Ref:2/00000003", nil)...)
	if _, _, err := readAll(t, xva.NewReader(bytes.NewReader(tarOf(t, ms)))); err == nil || !strings.Contains(err.Error(), "is 0 bytes, want 512") {
		t.Errorf("empty last block: %v", err)
	}
}

func TestAllowMissingChecksums(t *testing.T) {
	f := newFixture()
	ms := without(f.members, "Ref:2/00000002.checksum", "Ref:4/00000001.xxhash")
	data := tarOf(t, ms)
	if _, _, err := readAll(t, xva.NewReader(bytes.NewReader(data))); err == nil || !strings.Contains(err.Error(), "block Ref:2/00000002 has no checksum member") {
		t.Fatalf("default options: %v", err)
	}
	r := xva.NewReaderOptions(bytes.NewReader(data), xva.Options{AllowMissingChecksums: true})
	disks, _, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disks["Ref:2"], f.root) || !bytes.Equal(disks["Ref:4"], f.data) {
		t.Error("disks differ")
	}
	// A checksum that is present is still verified.
	ms = replace(ms, "Ref:2/00000003.checksum", []byte(strings.Repeat("0", 40)))
	r = xva.NewReaderOptions(bytes.NewReader(tarOf(t, ms)), xva.Options{AllowMissingChecksums: true})
	if _, _, err := readAll(t, r); !errors.Is(err, xva.ErrChecksum) {
		t.Errorf("bad checksum with AllowMissingChecksums: %v", err)
	}
}

func TestReaderErrors(t *testing.T) {
	f := newFixture()
	good := f.members
	b1 := good[1].data // Ref:2/00000000
	gzipped := append([]byte{0x1f, 0x8b, 8, 0}, make([]byte, 600)...)
	deep := "<value>" + strings.Repeat("<array><data><value>", 100) + "x" + strings.Repeat("</value></data></array>", 100) + "</value>"
	cut := func(n int) []byte { d := tarOf(t, good); return d[:n] }
	block0 := 512 + (len(good[0].data)+511)/512*512 // the tar header of Ref:2/00000000

	cases := []struct {
		name     string
		input    []byte
		opts     xva.Options
		want     string
		checksum bool // also ErrChecksum
		eof      bool // also io.ErrUnexpectedEOF
	}{
		{name: "empty", input: nil, want: "not a tar archive: the stream has no members"},
		{name: "not a tar", input: []byte(strings.Repeat("hello, this is not an archive\n", 40)), want: "not a tar archive"},
		{name: "gzip", input: gzipped, want: "gzip-compressed"},
		{name: "ova.xml missing", input: tarOf(t, good[1:]), want: `the first member is "Ref:2/00000000", want ova.xml`},
		{name: "ova.xml not first", input: tarOf(t, append([]member{{"README", []byte("hi")}}, good...)), want: `the first member is "README", want ova.xml`},
		{name: "ova.xml too large", input: tarOf(t, good), opts: xva.Options{MaxHeaderSize: 1000}, want: "more than the 1000 allowed"},
		{name: "XML not XML", input: tarOf(t, replace(good, "ova.xml", []byte("<value><struct>"))), want: "ova.xml is not XML: line 1: unexpected EOF"},
		{name: "XML syntax", input: tarOf(t, replace(good, "ova.xml", []byte("<value>a</b>"))), want: "ova.xml is not XML: line 1: element <value> closed by </b>"},
		{name: "not XML-RPC", input: tarOf(t, replace(good, "ova.xml", []byte("<methodCall><methodName>x</methodName></methodCall>"))), want: "root element is <methodCall>, want an XML-RPC <value>"},
		{name: "unknown type", input: tarOf(t, replace(good, "ova.xml", []byte("<value><float>1</float></value>"))), want: "<float> is not an XML-RPC type"},
		{name: "bad int", input: tarOf(t, withOva(good, "<int>1</int>", "<int>one</int>")), want: `<int> "one" is not a 64-bit integer`},
		{name: "nesting", input: tarOf(t, replace(good, "ova.xml", []byte(deep))), want: "nest deeper than 64 levels"},
		{name: "top not struct", input: tarOf(t, replace(good, "ova.xml", []byte("<value>hello</value>"))), want: "the top value is a string, want a struct"},
		{name: "no objects", input: tarOf(t, withOva(good, "<name>objects</name>", "<name>objectz</name>")), want: "ova.xml has no objects array"},
		{name: "object without class", input: tarOf(t, withOva(good, "<name>class</name><value>SR</value>", "<name>klass</name><value>SR</value>")), want: "object 5 has no class"},
		{name: "object without id", input: tarOf(t, withOva(good, "<name>id</name><value>Ref:5</value>", "<name>ident</name><value>Ref:5</value>")), want: "object 5 (SR) has no id"},
		{name: "object without snapshot", input: tarOf(t, withOva(good, "<value>Ref:5</value></member>\n        <member><name>snapshot</name>", "<value>Ref:5</value></member>\n        <member><name>snapshoot</name>")), want: "object 5 (SR Ref:5) has no snapshot struct"},
		{name: "no VM", input: tarOf(t, withOva(good, "<value>VM</value>", "<value>VMX</value>")), want: "ova.xml has no VM object (or only snapshots)"},
		{name: "VBD to missing VDI", input: tarOf(t, withOva(good, "<name>VDI</name><value>Ref:4</value>", "<name>VDI</name><value>Ref:44</value>")), want: "VBD Ref:3 points at VDI Ref:44, which is not in ova.xml"},
		{name: "VM lists missing VBD", input: tarOf(t, withOva(good, "<value>Ref:3</value>", "<value>Ref:33</value>")), want: "VM Ref:0 lists VBD Ref:33, which is not in ova.xml"},
		{name: "bad virtual_size", input: tarOf(t, withOva(good, fmt.Sprintf("<value>%d</value>", rootSize), "<value>big</value>")), want: `VDI Ref:2: virtual_size "big" is not a number`},
		{name: "block name short counter", input: tarOf(t, append(good[:1:1], sha1Block("Ref:2/0000000", b1)...)), want: `unexpected member "Ref:2/0000000": the block counter has fewer than 8 digits`},
		{name: "block name not decimal", input: tarOf(t, append(good[:1:1], sha1Block("Ref:2/0000000x", b1)...)), want: "the block counter is not decimal"},
		{name: "stray member", input: tarOf(t, append(good[:1:1], member{"notes.txt", []byte("x")})), want: `unexpected member "notes.txt": not a block member`},
		{name: "block of unknown disk", input: tarOf(t, append(good[:1:1], sha1Block("Ref:7/00000000", b1)...)), want: "block member Ref:7/00000000: Ref:7 is not in ova.xml"},
		{name: "block of a non-VDI", input: tarOf(t, append(good[:1:1], sha1Block("Ref:5/00000000", b1)...)), want: "Ref:5 is not a VDI with a virtual_size"},
		{name: "block of wrong size", input: tarOf(t, append(good[:1:1], sha1Block("Ref:2/00000000", b1[:1000])...)), want: "block Ref:2/00000000 is 1000 bytes, want 1048576"},
		{name: "last block of wrong size", input: tarOf(t, append(good[:1:1], sha1Block("Ref:2/00000003", b1)...)), want: "block Ref:2/00000003 is 1048576 bytes, want 512"},
		{name: "block beyond virtual_size", input: tarOf(t, append(good[:1:1], sha1Block("Ref:2/00000004", b1)...)), want: "block Ref:2/00000004: index 4 is beyond virtual_size 3146240 of Ref:2 (last block 3)"},
		{name: "duplicate block", input: tarOf(t, append(append(good[:3:3], good[1:3]...), good[3:]...)), want: "duplicate block Ref:2/00000000"},
		{name: "out of order", input: tarOf(t, append(append(good[:1:1], good[3:5]...), good[1:3]...)), want: "block Ref:2/00000000 comes after block Ref:2/00000002: blocks out of order"},
		{name: "sha1 mismatch", input: tarOf(t, replace(good, "Ref:2/00000002.checksum", []byte(strings.Repeat("ab", 20)))), want: "block Ref:2/00000002: checksum mismatch", checksum: true},
		{name: "xxhash mismatch", input: tarOf(t, replace(good, "Ref:4/00000001.xxhash", []byte("0123456789ABCDEF"))), want: "block Ref:4/00000001: checksum mismatch", checksum: true},
		{name: "data corrupted", input: tarOf(t, replace(good, "Ref:2/00000000", pattern(9, mib))), want: "block Ref:2/00000000: checksum mismatch", checksum: true},
		{name: "xxhash not hex", input: tarOf(t, replace(good, "Ref:4/00000001.xxhash", []byte("not hex"))), want: `holds "not hex", not a hex XXH64`},
		{name: "checksum without block", input: tarOf(t, append(good[:1:1], good[2])), want: "checksum member Ref:2/00000000.checksum without its block"},
		{name: "checksum of another block", input: tarOf(t, append(good[:2:2], good[4])), want: "checksum member Ref:2/00000002.checksum without its block Ref:2/00000002 before it"},
		{name: "block without checksum", input: tarOf(t, append(good[:2:2], good[3:]...)), want: "block Ref:2/00000000 has no checksum member (the next member is Ref:2/00000002)"},
		{name: "block without checksum at end", input: tarOf(t, good[:len(good)-1]), want: "block Ref:4/00000001 has no checksum member (the archive ends)"},
		{name: "truncated in a block", input: cut(block0 + 512 + 1000), want: "truncated archive inside member Ref:2/00000000", eof: true},
		{name: "truncated in a header", input: cut(block0 + 100), want: "truncated archive after member ova.xml", eof: true},
		{name: "truncated in ova.xml", input: cut(1024), want: "truncated archive inside member ova.xml", eof: true},
		{name: "last block missing", input: tarOf(t, good[:len(good)-2]), want: "disk Ref:4 (userdevice 1): the archive ends before its last block, index 1", eof: true},
		{name: "no disk data", input: tarOf(t, good[:1]), want: "disk Ref:2 (userdevice 0): the archive ends before its last block, index 3", eof: true},
		{name: "ova.xml twice", input: tarOf(t, append(good[:1:1], good[0])), want: `unexpected member "ova.xml": ova.xml appears twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := xva.NewReaderOptions(bytes.NewReader(c.input), c.opts)
			_, _, err := readAll(t, r)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			if !errors.Is(err, xva.ErrCorrupt) {
				t.Errorf("error %q does not wrap ErrCorrupt", err)
			}
			if c.checksum != errors.Is(err, xva.ErrChecksum) {
				t.Errorf("error %q: errors.Is ErrChecksum = %v", err, !c.checksum)
			}
			if c.eof && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %q does not wrap io.ErrUnexpectedEOF", err)
			}
			// The error is sticky.
			if _, err2 := r.Next(); err2 == nil || err2 == io.EOF {
				t.Errorf("Next after the error: %v", err2)
			}
		})
	}
}

// errReader fails after its data.
type errReader struct {
	data []byte
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReaderIOErrorIsNotCorruption(t *testing.T) {
	f := newFixture()
	data := tarOf(t, f.members)
	boom := errors.New("connection reset")
	r := xva.NewReader(&errReader{data: data[:len(f.members[0].data)+512*4], err: boom})
	_, _, err := readAll(t, r)
	if !errors.Is(err, boom) || errors.Is(err, xva.ErrCorrupt) {
		t.Errorf("error %v: want the reader's error, not ErrCorrupt", err)
	}
}

func TestXXH64(t *testing.T) {
	// Published vectors: the xxHash project's sanity values for "", and the
	// examples of the python-xxhash documentation.
	vectors := []struct {
		in   string
		want uint64
	}{
		{"", 0xEF46DB3751D8E999},
		{"a", 0xD24EC4F1A98C6E5B},
		{"abc", 0x44BC2CF5AD770999},
		{"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1},
	}
	for _, v := range vectors {
		if got := xva.XXH64([]byte(v.in)); got != v.want {
			t.Errorf("XXH64(%q) = %016X, want %016X", v.in, got, v.want)
		}
	}
	// Longer inputs exercise the four-lane stripes and every tail length;
	// these values were cross-checked against an independent XXH64
	// implementation (github.com/cespare/xxhash/v2) outside this
	// repository.
	long := []struct {
		n    int
		want uint64
	}{
		{32, 0x91B0CB0931A8C629},
		{100, 0x8E2272C08247D5DB},
		{1 << 20, 0xDADEAD667163C403},
	}
	for _, v := range long {
		b := make([]byte, v.n)
		for i := range b {
			b[i] = byte(i*7 + i/251)
		}
		if got := xva.XXH64(b); got != v.want {
			t.Errorf("XXH64(pattern %d) = %016X, want %016X", v.n, got, v.want)
		}
	}
	if got := xva.XXH64(make([]byte, 1<<20)); got != 0x87D2A1B6E1163EF1 {
		t.Errorf("XXH64(1 MiB of zeros) = %016X", got)
	}
}

func TestDecodeValue(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"<value>bare</value>", "bare"},
		{"<value/>", ""},
		{"<value>  spaced  </value>", "  spaced  "},
		{"<value><string>s &amp; t</string></value>", "s & t"},
		{"<value><string/></value>", ""},
		{"<value> <int> 42 </int> </value>", int64(42)},
		{"<value><i4>-7</i4></value>", int64(-7)},
		{"<value><i8>9223372036854775807</i8></value>", int64(9223372036854775807)},
		{"<value><boolean>1</boolean></value>", true},
		{"<value><boolean>0</boolean></value>", false},
		{"<value><double>-2.5e3</double></value>", -2500.0},
		{"<value><dateTime.iso8601>20261204T03:19:07Z</dateTime.iso8601></value>", time.Date(2026, 12, 4, 3, 19, 7, 0, time.UTC)},
		{"<value><dateTime.iso8601>19980717T14:08:55</dateTime.iso8601></value>", time.Date(1998, 7, 17, 14, 8, 55, 0, time.UTC)},
		{"<value><dateTime.iso8601>2024-01-02T03:04:05+02:00</dateTime.iso8601></value>", time.Date(2024, 1, 2, 1, 4, 5, 0, time.UTC)},
		{"<value><base64>aGVs\nbG8=</base64></value>", []byte("hello")},
		{"<value><nil/></value>", nil},
		{"<value><struct/></value>", map[string]any{}},
		{"<value><array><data/></array></value>", []any{}},
		{"<value><array/></value>", []any{}},
		{"<value><struct><member><name>a</name><value><array><data><value>x</value><value><int>1</int></value></data></array></value></member></struct></value>",
			map[string]any{"a": []any{"x", int64(1)}}},
		{"<?xml version=\"1.0\"?>\n<!-- c --><value>x</value>\n", "x"},
	}
	for _, c := range cases {
		got, err := xva.DecodeValue([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %#v, want %#v", c.in, got, c.want)
		}
	}
	bad := []string{
		"", "x", "<value>", "<value><int>1</int>x</value>", "<value>x<int>1</int></value>",
		"<value><int>1</int><int>2</int></value>", "<value><boolean>2</boolean></value>",
		"<value><struct><member><name>a</name></member></struct></value>",
		"<value><struct><member><value>a</value></member></struct></value>",
		"<value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value>",
		"<value><array><value>x</value></array></value>",
		"<value><nil>x</nil></value>", "<value>x</value><value>y</value>", "<value>x</value>tail",
		"<value><base64>!!</base64></value>", "<value><dateTime.iso8601>yesterday</dateTime.iso8601></value>",
		"<value><double>1e999</double></value>",
	}
	for _, in := range bad {
		if v, err := xva.DecodeValue([]byte(in)); err == nil {
			t.Errorf("%q: decoded %#v, want an error", in, v)
		} else if !errors.Is(err, xva.ErrCorrupt) {
			t.Errorf("%q: %v does not wrap ErrCorrupt", in, err)
		}
	}
}

func TestEncodeValueRoundTrip(t *testing.T) {
	v := map[string]any{
		"s": "a<b>&\"c'\n\td", "empty": "", "n": int64(-3), "b": true, "f": 0.1, "t": time.Date(2020, 2, 29, 23, 59, 58, 123000000, time.UTC),
		"bin": []byte{0, 1, 255}, "nil": nil, "list": []any{"x", int64(1), []any{}}, "m": map[string]any{"k": map[string]any{}},
	}
	b, err := xva.EncodeValue(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := xva.DecodeValue(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, v)
	}
	// Convenience types encode as their decoded equivalents.
	b, err = xva.EncodeValue(map[string]any{"i": 7, "u": uint32(8), "ss": []string{"a"}, "ms": map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = xva.DecodeValue(b)
	want := map[string]any{"i": int64(7), "u": int64(8), "ss": []any{"a"}, "ms": map[string]any{"k": "v"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("convenience types: %#v", got)
	}
	if _, err := xva.EncodeValue(struct{}{}); err == nil {
		t.Error("a struct encoded")
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h, err := xva.DecodeHeader([]byte(ovaXML(rootSize, dataSize)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := xva.EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := xva.DecodeHeader(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(h, h2) {
		t.Error("ova.xml round trip differs")
	}
	b2, _ := xva.EncodeHeader(h2)
	if !bytes.Equal(b, b2) {
		t.Error("EncodeHeader is not deterministic")
	}
}
