package xva_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/xva"
)

// members lists an archive's members with archive/tar.
func members(t *testing.T, data []byte) []member {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, member{h.Name, b})
	}
}

func TestWriterRoundTrip(t *testing.T) {
	h, err := xva.DecodeHeader([]byte(ovaXML(rootSize, dataSize)))
	if err != nil {
		t.Fatal(err)
	}
	// root: block 0 zero (written anyway), 1 data, 2 zero (left out),
	// 3 the short last block, zero (written anyway). data: all zero, so
	// only its first and last blocks.
	root := make([]byte, rootSize)
	copy(root[mib:], pattern(7, mib))
	data := make([]byte, dataSize)

	var buf bytes.Buffer
	w, err := xva.NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDisk("Ref:2", rootSize, bytes.NewReader(root)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDisk("Ref:4", dataSize, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	ms := members(t, buf.Bytes())
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
		if base, ok := strings.CutSuffix(m.name, ".checksum"); ok {
			for _, b := range ms {
				if b.name == base {
					sum := sha1.Sum(b.data)
					if string(m.data) != hex.EncodeToString(sum[:]) {
						t.Errorf("%s holds %q", m.name, m.data)
					}
				}
			}
		}
	}
	want := []string{"ova.xml",
		"Ref:2/00000000", "Ref:2/00000000.checksum", "Ref:2/00000001", "Ref:2/00000001.checksum", "Ref:2/00000003", "Ref:2/00000003.checksum",
		"Ref:4/00000000", "Ref:4/00000000.checksum", "Ref:4/00000001", "Ref:4/00000001.checksum"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("members\n %v\nwant\n %v", names, want)
	}

	r := xva.NewReader(bytes.NewReader(buf.Bytes()))
	disks, _, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disks["Ref:2"], root) || !bytes.Equal(disks["Ref:4"], data) {
		t.Error("disks differ after the round trip")
	}
	h2, _ := r.Header()
	if !reflect.DeepEqual(h, h2) {
		t.Error("header differs after the round trip")
	}
}

func TestWriterEmptyDisk(t *testing.T) {
	h, err := xva.DecodeHeader([]byte(ovaXML(0, 512)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := xva.NewWriter(&buf, h)
	if err := w.WriteDisk("Ref:2", 0, bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDisk("Ref:4", 512, bytes.NewReader(pattern(1, 512))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	disks, names, err := readAll(t, xva.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if len(disks["Ref:2"]) != 0 || !bytes.Equal(disks["Ref:4"], pattern(1, 512)) || len(names) != 1 {
		t.Errorf("names %v", names)
	}
}

func TestWriterErrors(t *testing.T) {
	h, err := xva.DecodeHeader([]byte(ovaXML(rootSize, dataSize)))
	if err != nil {
		t.Fatal(err)
	}
	root, data := bytes.NewReader(make([]byte, rootSize)), bytes.NewReader(make([]byte, dataSize))
	newW := func() *xva.Writer {
		w, err := xva.NewWriter(io.Discard, h)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := newW()
	if err := w.WriteDisk("Ref:4", dataSize, data); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDisk("Ref:2", rootSize, root); err == nil || !strings.Contains(err.Error(), "string order") {
		t.Errorf("out of order: %v", err)
	}
	if err := w.WriteDisk("Ref:4", dataSize, data); err == nil || !strings.Contains(err.Error(), "written twice") {
		t.Errorf("twice: %v", err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "disk Ref:2 (userdevice 0) was not written") {
		t.Errorf("Close with a disk missing: %v", err)
	}
	w = newW()
	if err := w.WriteDisk("Ref:5", 10, root); err == nil || !strings.Contains(err.Error(), "not a VDI") {
		t.Errorf("an SR: %v", err)
	}
	if err := w.WriteDisk("Ref:2", rootSize-1, root); err == nil || !strings.Contains(err.Error(), "differs from the header's virtual_size") {
		t.Errorf("wrong size: %v", err)
	}
	if err := w.WriteDisk("Ref:2", rootSize, bytes.NewReader(make([]byte, 100))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short source: %v", err)
	}
	bad, _ := xva.DecodeHeader([]byte(ovaXML(rootSize, dataSize)))
	bad.Objects = bad.Objects[1:] // no VM
	if _, err := xva.NewWriter(io.Discard, bad); !errors.Is(err, xva.ErrCorrupt) {
		t.Errorf("header without VM: %v", err)
	}
}
