package xapisim

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// TestXXH64: the published test vectors of xxHash64 (seed 0).
func TestXXH64(t *testing.T) {
	long := []byte(strings.Repeat("0123456789abcdef", 8))
	for _, tc := range []struct {
		in   []byte
		want uint64
	}{
		{nil, 0xef46db3751d8e999},
		{[]byte("a"), 0xd24ec4f1a98c6e5b},
		{[]byte("abc"), 0x44bc2cf5ad770999},
		{[]byte("Nobody inspects the spammish repetition"), 0xfbcea83c8a378bf1},
		{long, xxh64(long)},
	} {
		if got := xxh64(tc.in); got != tc.want {
			t.Errorf("xxh64(%q) = %016x, want %016x", tc.in, got, tc.want)
		}
	}
}

// TestXMLRPCRoundTrip: values written for ova.xml read back.
func TestXMLRPCRoundTrip(t *testing.T) {
	in := map[string]any{"s": "a<b&c", "n": int64(42), "t": true, "f": false, "d": 1.5,
		"m": map[string]any{"k": "v"}, "a": []any{"x", int64(1)}, "e": ""}
	got, err := parseXMLRPC(strings.NewReader(xmlrpcValueText(in)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"s": "a<b&c", "n": "42", "t": true, "f": false, "d": 1.5,
		"m": map[string]any{"k": "v"}, "a": []any{"x", "1"}, "e": ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if v, err := parseXMLRPC(strings.NewReader("<value><i8>-7</i8></value>")); err != nil || v != int64(-7) {
		t.Errorf("i8: %v %v", v, err)
	}
	for _, bad := range []string{"<struct/>", "<value><struct><member><name>x</name></member></struct></value>", "<value><i4>x</i4></value>", "<value>"} {
		if _, err := parseXMLRPC(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestImportXXHash: an archive with .xxhash members (newer xapi) imports;
// a wrong one is refused.
func TestImportXXHash(t *testing.T) {
	s, err := New(context.Background(), Options{StateDir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := bytes.Repeat([]byte{0xab}, 1<<20)
	hdr := fmt.Sprintf(`<value><struct><member><name>version</name><value><struct/></value></member>
<member><name>objects</name><value><array><data>
<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:0</value></member>
<member><name>snapshot</name><value><struct><member><name>name_label</name><value>x</value></member>
<member><name>VCPUs_max</name><value>1</value></member><member><name>VCPUs_at_startup</name><value>1</value></member>
<member><name>memory_static_max</name><value>%[1]d</value></member><member><name>memory_dynamic_max</name><value>%[1]d</value></member>
<member><name>memory_dynamic_min</name><value>%[1]d</value></member><member><name>memory_static_min</name><value>%[1]d</value></member>
</struct></value></member></struct></value>
<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>Ref:1</value></member>
<member><name>snapshot</name><value><struct><member><name>VM</name><value>Ref:0</value></member><member><name>VDI</name><value>Ref:2</value></member>
<member><name>type</name><value>Disk</value></member><member><name>userdevice</name><value>0</value></member></struct></value></member></struct></value>
<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>Ref:2</value></member>
<member><name>snapshot</name><value><struct><member><name>virtual_size</name><value>2097152</value></member></struct></value></member></struct></value>
</data></array></value></member></struct></value>`, 1<<30)
	archive := func(sum string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, m := range []struct {
			name string
			data []byte
		}{{"ova.xml", []byte(hdr)}, {"Ref:2/00000001", data}, {"Ref:2/00000001.xxhash", []byte(sum)}} {
			tw.WriteHeader(&tar.Header{Name: m.name, Size: int64(len(m.data)), Mode: 0o644})
			tw.Write(m.data)
		}
		tw.Close()
		return b.Bytes()
	}
	s.mu.Lock()
	sess := &session{Ref: newRef(), UUID: simkit.NewUUID(), User: "root"}
	s.sessions[sess.Ref] = sess
	s.mu.Unlock()
	put := func(body []byte) int {
		req, _ := http.NewRequest(http.MethodPut, "/import?session_id="+sess.Ref, bytes.NewReader(body))
		w := httptest.NewRecorder()
		s.serveImport(w, req)
		return w.Code
	}
	if code := put(archive("0000000000000000")); code != http.StatusBadRequest {
		t.Fatalf("wrong xxhash: %d", code)
	}
	if code := put(archive(fmt.Sprintf("%016x", xxh64(data)))); code != http.StatusOK {
		t.Fatalf("good xxhash: %d", code)
	}
	info, err := s.VM("x")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2<<20)
	f, err := s.files.get(info.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	simkit.ReadFull(f, got, 0)
	if !bytes.Equal(got[1<<20:], data) || !simkit.AllZero(got[:1<<20]) {
		t.Fatal("imported disk differs")
	}
}
