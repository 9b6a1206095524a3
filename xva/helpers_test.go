package xva_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/xva"
)

// The tests build XVAs by hand, from the published format (see doc.go),
// with archive/tar: never with the package's Writer.

const mib = 1 << 20

// ovaXML returns an ova.xml in XAPI's encoding (int64 fields as bare
// strings, booleans as 0/1) for a VM "web01" with two disks, a CD drive, a
// VIF and a snapshot of itself:
//
//	Ref:0  VM, VBDs Ref:3 (userdevice 1), Ref:1 (userdevice 0), Ref:6 (CD)
//	Ref:1  VBD -> VDI Ref:2 "root", virtual_size rootSize (a string)
//	Ref:3  VBD -> VDI Ref:4 "data", virtual_size dataSize (an <i8>)
//	Ref:6  VBD, type CD, empty
//	Ref:10 VM snapshot of Ref:0
func ovaXML(rootSize, dataSize int64) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<value>
  <struct>
    <member><name>version</name><value><struct>
      <member><name>hostname</name><value>xcp-host-1</value></member>
      <member><name>date</name><value>2024-05-01</value></member>
      <member><name>product_version</name><value>8.2.1</value></member>
      <member><name>product_brand</name><value>XCP-ng</value></member>
      <member><name>build_number</name><value>release/yangtze/master/58</value></member>
      <member><name>xapi_major</name><value><int>1</int></value></member>
      <member><name>xapi_minor</name><value><i4>20</i4></value></member>
      <member><name>export_vsn</name><value>2</value></member>
    </struct></value></member>
    <member><name>objects</name><value><array><data>
      <value><struct>
        <member><name>class</name><value>VM</value></member>
        <member><name>id</name><value>Ref:0</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>uuid</name><value>0a1b2c3d-0000-4000-8000-000000000001</value></member>
          <member><name>name_label</name><value>web01</value></member>
          <member><name>name_description</name><value/></member>
          <member><name>power_state</name><value>Halted</value></member>
          <member><name>is_a_template</name><value><boolean>0</boolean></value></member>
          <member><name>is_a_snapshot</name><value><boolean>0</boolean></value></member>
          <member><name>memory_static_max</name><value>1073741824</value></member>
          <member><name>VCPUs_max</name><value>2</value></member>
          <member><name>HVM_shadow_multiplier</name><value><double>1.5</double></value></member>
          <member><name>snapshot_time</name><value><dateTime.iso8601>19700101T00:00:00Z</dateTime.iso8601></value></member>
          <member><name>VBDs</name><value><array><data>
            <value>Ref:3</value>
            <value>Ref:1</value>
            <value>Ref:6</value>
          </data></array></value></member>
          <member><name>VIFs</name><value><array><data><value>Ref:8</value></data></array></value></member>
          <member><name>snapshots</name><value><array><data><value>Ref:10</value></data></array></value></member>
          <member><name>platform</name><value><struct>
            <member><name>secureboot</name><value>false</value></member>
            <member><name>device-model</name><value>qemu-upstream-compat</value></member>
          </struct></value></member>
          <member><name>other_config</name><value><struct>
            <member><name>note</name><value>a &lt; b &amp; c</value></member>
          </struct></value></member>
          <member><name>blobs</name><value><struct/></value></member>
          <member><name>tags</name><value><array><data/></array></value></member>
          <member><name>bios_strings</name><value><nil/></value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VBD</value></member>
        <member><name>id</name><value>Ref:1</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>VM</name><value>Ref:0</value></member>
          <member><name>VDI</name><value>Ref:2</value></member>
          <member><name>userdevice</name><value>0</value></member>
          <member><name>device</name><value>xvda</value></member>
          <member><name>bootable</name><value><boolean>1</boolean></value></member>
          <member><name>mode</name><value>RW</value></member>
          <member><name>type</name><value>Disk</value></member>
          <member><name>empty</name><value><boolean>0</boolean></value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VDI</value></member>
        <member><name>id</name><value>Ref:2</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>name_label</name><value>root</value></member>
          <member><name>virtual_size</name><value>%d</value></member>
          <member><name>SR</name><value>Ref:5</value></member>
          <member><name>VBDs</name><value><array><data><value>Ref:1</value></data></array></value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VBD</value></member>
        <member><name>id</name><value>Ref:3</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>VM</name><value>Ref:0</value></member>
          <member><name>VDI</name><value>Ref:4</value></member>
          <member><name>userdevice</name><value>1</value></member>
          <member><name>bootable</name><value><boolean>0</boolean></value></member>
          <member><name>type</name><value>Disk</value></member>
          <member><name>empty</name><value><boolean>0</boolean></value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VDI</value></member>
        <member><name>id</name><value>Ref:4</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>name_label</name><value>data</value></member>
          <member><name>virtual_size</name><value><i8>%d</i8></value></member>
          <member><name>SR</name><value>Ref:5</value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>SR</value></member>
        <member><name>id</name><value>Ref:5</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>name_label</name><value>Local storage</value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VBD</value></member>
        <member><name>id</name><value>Ref:6</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>VM</name><value>Ref:0</value></member>
          <member><name>VDI</name><value>OpaqueRef:NULL</value></member>
          <member><name>userdevice</name><value>3</value></member>
          <member><name>type</name><value>CD</value></member>
          <member><name>empty</name><value><boolean>1</boolean></value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VIF</value></member>
        <member><name>id</name><value>Ref:8</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>device</name><value>0</value></member>
          <member><name>network</name><value>Ref:9</value></member>
          <member><name>MAC</name><value>aa:bb:cc:dd:ee:ff</value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>network</value></member>
        <member><name>id</name><value>Ref:9</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>bridge</name><value>xenbr0</value></member>
        </struct></value></member>
      </struct></value>
      <value><struct>
        <member><name>class</name><value>VM</value></member>
        <member><name>id</name><value>Ref:10</value></member>
        <member><name>snapshot</name><value><struct>
          <member><name>name_label</name><value>web01 nightly</value></member>
          <member><name>is_a_snapshot</name><value><boolean>1</boolean></value></member>
          <member><name>VBDs</name><value><array><data/></array></value></member>
        </struct></value></member>
      </struct></value>
    </data></array></value></member>
  </struct>
</value>
`, rootSize, dataSize)
}

// member is one tar member of a hand-built XVA.
type member struct {
	name string
	data []byte
}

// tarOf writes members with archive/tar as XAPI does (ustar, regular files).
func tarOf(t testing.TB, members []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		hdr := &tar.Header{Name: m.name, Size: int64(len(m.data)), Mode: 0o400, Typeflag: tar.TypeReg,
			ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sha1Block returns a block member and its .checksum member (lower-case
// hex SHA-1, as sha1sum and XAPI write it).
func sha1Block(name string, data []byte) []member {
	sum := sha1.Sum(data)
	return []member{{name, data}, {name + ".checksum", []byte(hex.EncodeToString(sum[:]))}}
}

// xxBlock returns a block member and its .xxhash member (XAPI's %016X).
func xxBlock(name string, data []byte) []member {
	return []member{{name, data}, {name + ".xxhash", []byte(fmt.Sprintf("%016X", xva.XXH64(data)))}}
}

// pattern returns n bytes that differ per offset and per seed.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31+i>>9) ^ seed
	}
	if n > 0 {
		b[0] = seed | 1 // never all zero
	}
	return b
}

// fixture is the hand-built XVA of the tests: ova.xml (rootSize 3 MiB +
// 512, dataSize 2 MiB), then
//
//	Ref:2/00000000 (+.checksum)   root block 0
//	                              root block 1: a hole (all zero)
//	Ref:2/00000002 (+.checksum)   root block 2
//	Ref:2/00000003 (+.checksum)   root block 3, the last: 512 bytes
//	Ref:4/00000000 (+.xxhash)     data block 0
//	Ref:4/00000001 (+.xxhash)     data block 1, the last
//
// and the two disks' expected contents.
type fixture struct {
	members    []member
	root, data []byte
}

const (
	rootSize = 3*mib + 512
	dataSize = 2 * mib
)

func newFixture() fixture {
	f := fixture{root: make([]byte, rootSize), data: make([]byte, dataSize)}
	b0, b2, b3 := pattern(1, mib), pattern(2, mib), pattern(3, 512)
	copy(f.root[0:], b0)
	copy(f.root[2*mib:], b2)
	copy(f.root[3*mib:], b3)
	d0, d1 := pattern(4, mib), pattern(5, mib)
	copy(f.data, d0)
	copy(f.data[mib:], d1)
	f.members = []member{{"ova.xml", []byte(ovaXML(rootSize, dataSize))}}
	f.members = append(f.members, sha1Block("Ref:2/00000000", b0)...)
	f.members = append(f.members, sha1Block("Ref:2/00000002", b2)...)
	f.members = append(f.members, sha1Block("Ref:2/00000003", b3)...)
	f.members = append(f.members, xxBlock("Ref:4/00000000", d0)...)
	f.members = append(f.members, xxBlock("Ref:4/00000001", d1)...)
	return f
}

// readAll reads every block of an XVA into disks sized from its header,
// filling holes with zeros; it returns the blocks' names in order.
func readAll(t testing.TB, r *xva.Reader) (map[string][]byte, []string, error) {
	t.Helper()
	h, err := r.Header()
	if err != nil {
		return nil, nil, err
	}
	disks := map[string][]byte{}
	for _, d := range r.Disks() {
		disks[d.ID] = make([]byte, d.VirtualSize)
	}
	var names []string
	for {
		b, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return disks, names, nil
			}
			return disks, names, err
		}
		names = append(names, b.Name)
		disk, ok := disks[b.Disk]
		if !ok {
			if h.Object(b.Disk) == nil {
				t.Fatalf("block %s of unknown disk", b.Name)
			}
			continue
		}
		if off := b.Index * xva.BlockSize; off+int64(len(b.Data)) > int64(len(disk)) {
			t.Fatalf("block %s at %d+%d beyond disk size %d", b.Name, off, len(b.Data), len(disk))
		}
		copy(disk[b.Index*xva.BlockSize:], b.Data)
	}
}

// replace returns members with the named member's data changed.
func replace(ms []member, name string, data []byte) []member {
	out := append([]member(nil), ms...)
	for i := range out {
		if out[i].name == name {
			out[i].data = data
			return out
		}
	}
	panic("no member " + name)
}

// without returns members without the named ones.
func without(ms []member, names ...string) []member {
	var out []member
next:
	for _, m := range ms {
		for _, n := range names {
			if m.name == n {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// withOva returns members with ova.xml rewritten by old→new.
func withOva(ms []member, old, new string) []member {
	x := string(ms[0].data)
	if !strings.Contains(x, old) {
		panic("ova.xml has no " + old)
	}
	return replace(ms, "ova.xml", []byte(strings.Replace(x, old, new, 1)))
}
