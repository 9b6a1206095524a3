package xva_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ahvfs/ahvfs/xva"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz")

// tinyOva is a compact ova.xml (no white space, one disk Ref:2 of the
// given size) that keeps fuzzing fast.
func tinyOva(size int64) string {
	return `<value><struct><member><name>version</name><value><struct><member><name>export_vsn</name><value>2</value></member></struct></value></member>` +
		`<member><name>objects</name><value><array><data>` +
		`<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:0</value></member><member><name>snapshot</name><value><struct>` +
		`<member><name>is_a_snapshot</name><value><boolean>0</boolean></value></member><member><name>VBDs</name><value><array><data><value>Ref:1</value></data></array></value></member></struct></value></member></struct></value>` +
		`<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>Ref:1</value></member><member><name>snapshot</name><value><struct>` +
		`<member><name>VDI</name><value>Ref:2</value></member><member><name>type</name><value>Disk</value></member><member><name>userdevice</name><value>0</value></member></struct></value></member></struct></value>` +
		`<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>Ref:2</value></member><member><name>snapshot</name><value><struct>` +
		fmt.Sprintf(`<member><name>virtual_size</name><value>%d</value></member></struct></value></member></struct></value>`, size) +
		`</data></array></value></member></struct></value>`
}

// smallXVAs are well-formed XVAs small enough to fuzz quickly: a disk of
// a few hundred bytes (one short, last block) with a sha1 or an xxhash
// checksum, and an XVA without disk data.
func smallXVAs(t testing.TB) [][]byte {
	a := []member{{"ova.xml", []byte(tinyOva(1536))}}
	a = append(a, sha1Block("Ref:2/00000000", pattern(1, 1536))...)
	b := []member{{"ova.xml", []byte(tinyOva(512))}}
	b = append(b, xxBlock("Ref:2/00000000", pattern(2, 512))...)
	c := []member{{"ova.xml", []byte(tinyOva(0))}}
	return [][]byte{tarOf(t, a), tarOf(t, b), tarOf(t, c)}
}

// FuzzReader feeds whole streams to the Reader: nothing may panic, every
// error describes malformed input (bytes.Reader has no I/O errors), and
// every block returned is in its disk, in order.
func FuzzReader(f *testing.F) {
	for _, s := range smallXVAs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := xva.NewReaderOptions(bytes.NewReader(data), xva.Options{MaxHeaderSize: 1 << 20})
		h, err := r.Header()
		if err != nil {
			if !errors.Is(err, xva.ErrCorrupt) {
				t.Fatalf("header error %v is not ErrCorrupt", err)
			}
			return
		}
		last := map[string]int64{}
		for {
			b, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, xva.ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", err)
				}
				return
			}
			o := h.Object(b.Disk)
			if o == nil || o.Class != "VDI" {
				t.Fatalf("block %s of a disk not in the header", b.Name)
			}
			if len(b.Data) == 0 || len(b.Data) > xva.BlockSize || b.Index < 0 {
				t.Fatalf("block %s: index %d, %d bytes", b.Name, b.Index, len(b.Data))
			}
			if prev, ok := last[b.Disk]; ok && b.Index <= prev {
				t.Fatalf("block %s: index %d after %d", b.Name, b.Index, prev)
			}
			last[b.Disk] = b.Index
		}
	})
}

// FuzzDecodeHeader decodes arbitrary ova.xml: nothing may panic, errors
// wrap ErrCorrupt, and what decodes encodes to a document that decodes to
// the same header (compared through a second encoding, so that NaN
// doubles compare equal).
func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte(tinyOva(1)))
	f.Add([]byte(`<value><struct><member><name>version</name><value><struct/></value></member><member><name>objects</name><value><array><data/></array></value></member></struct></value>`))
	f.Add([]byte(`<value><struct><member><name>version</name><value><struct><member><name>t</name><value><dateTime.iso8601>20240101T00:00:00Z</dateTime.iso8601></value></member><member><name>d</name><value><double>NaN</double></value></member><member><name>b</name><value><base64>AAE=</base64></value></member></struct></value></member><member><name>objects</name><value><array><data><value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:0</value></member><member><name>snapshot</name><value><struct><member><name>VBDs</name><value><array><data><value>Ref:1</value></data></array></value></member></struct></value></member></struct></value></data></array></value></member></struct></value>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := xva.DecodeHeader(b)
		if err != nil {
			if !errors.Is(err, xva.ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		_, _ = h.VM()
		_, _ = h.Disks()
		enc, err := xva.EncodeHeader(h)
		if err != nil {
			t.Fatalf("encode a decoded header: %v", err)
		}
		h2, err := xva.DecodeHeader(enc)
		if err != nil {
			t.Fatalf("decode an encoded header: %v\n%s", err, enc)
		}
		enc2, err := xva.EncodeHeader(h2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip differs (%v):\n%s\n%s", err, enc, enc2)
		}
	})
}

// TestWriteFuzzSeeds rewrites testdata/fuzz with -update-seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		return // only with -update-seeds
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzReader", smallXVAs(t))
	write("FuzzDecodeHeader", [][]byte{[]byte(tinyOva(4096)), []byte(ovaXML(rootSize, dataSize))})
}
