package xapisim_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/xapisim"
)

// xnode is any XML element, for reading ova.xml by hand.
type xnode struct {
	XMLName xml.Name
	Text    string  `xml:",chardata"`
	Nodes   []xnode `xml:",any"`
}

// rpcValue turns an XML-RPC <value> into string, bool, map or slice.
func rpcValue(t testing.TB, v xnode) any {
	t.Helper()
	if len(v.Nodes) == 0 {
		return v.Text
	}
	n := v.Nodes[0]
	switch n.XMLName.Local {
	case "struct":
		m := map[string]any{}
		for _, mem := range n.Nodes {
			var name string
			var val any
			for _, x := range mem.Nodes {
				switch x.XMLName.Local {
				case "name":
					name = x.Text
				case "value":
					val = rpcValue(t, x)
				}
			}
			m[name] = val
		}
		return m
	case "array":
		out := []any{}
		for _, x := range n.Nodes[0].Nodes {
			out = append(out, rpcValue(t, x))
		}
		return out
	case "boolean":
		return n.Text == "1"
	case "string", "dateTime.iso8601", "double":
		return n.Text
	}
	t.Fatalf("unexpected XML-RPC type <%s>", n.XMLName.Local)
	return nil
}

type xvaMember struct {
	name string
	data []byte
}

func untar(t testing.TB, b []byte) []xvaMember {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []xvaMember
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR && h.Format != tar.FormatUnknown {
			t.Errorf("member %s in format %v", h.Name, h.Format)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, xvaMember{h.Name, d})
	}
}

var blockName = regexp.MustCompile(`^(Ref:\d+)/(\d{8})$`)

// TestXVAExport: the archive of a snapshot, read by hand: ova.xml first,
// the objects and their references, the blocks (zero ones left out but
// the last) each followed by its SHA-1.
func TestXVAExport(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	snap := c.async("VM.snapshot", vm, "for-export")
	disks := [][]byte{readFile(t, mustDisk(t, sim, "web", 0)), readFile(t, mustDisk(t, sim, "web", 1))}
	task := c.str("task.create", "export", "")
	members := untar(t, c.getBody("/export?session_id="+c.session+"&ref="+snap+"&use_compression=false&task_id="+task))
	if status, _, info := c.waitTask(task); status != "success" {
		t.Fatalf("export task %s %v", status, info)
	}
	if members[0].name != "ova.xml" {
		t.Fatalf("first member %s", members[0].name)
	}
	var root xnode
	if err := xml.Unmarshal(members[0].data, &root); err != nil || root.XMLName.Local != "value" {
		t.Fatalf("ova.xml: %v", err)
	}
	hdr := rpcValue(t, root).(map[string]any)
	if v := hdr["version"].(map[string]any); v["export_vsn"] != "2" || v["product_brand"] != "XCP-ng" {
		t.Errorf("version %v", v)
	}
	byID := map[string]map[string]any{}
	classes := map[string][]string{}
	for _, o := range hdr["objects"].([]any) {
		om := o.(map[string]any)
		id, class := om["id"].(string), om["class"].(string)
		byID[id] = om["snapshot"].(map[string]any)
		classes[class] = append(classes[class], id)
	}
	if len(classes["VM"]) != 1 || len(classes["VBD"]) != 3 || len(classes["VDI"]) != 2 || len(classes["VIF"]) != 1 ||
		len(classes["SR"]) != 1 || len(classes["network"]) != 1 {
		t.Fatalf("objects %v", classes)
	}
	vmRec := byID[classes["VM"][0]]
	if vmRec["is_a_snapshot"] != false || vmRec["name_label"] != "for-export" || vmRec["power_state"] != "Halted" {
		t.Errorf("VM object %v", vmRec)
	}
	// Disk VDI ids in userdevice order, through the VM's VBDs.
	var vdiIDs []string
	for _, b := range vmRec["VBDs"].([]any) {
		vbd := byID[b.(string)]
		if vbd["VM"] != classes["VM"][0] {
			t.Errorf("VBD %v does not point at the VM", vbd)
		}
		if vbd["type"] == "CD" {
			if vbd["empty"] != true || vbd["VDI"] != "OpaqueRef:NULL" {
				t.Errorf("CD VBD %v", vbd)
			}
			continue
		}
		vdiIDs = append(vdiIDs, vbd["VDI"].(string))
	}
	for i, id := range vdiIDs {
		vdi := byID[id]
		if vdi["virtual_size"] != fmt.Sprint(len(disks[i])) || vdi["SR"] != classes["SR"][0] {
			t.Errorf("VDI %s: %v", id, vdi)
		}
	}
	if vif := byID[classes["VIF"][0]]; vif["network"] != classes["network"][0] || vif["VM"] != classes["VM"][0] {
		t.Errorf("VIF %v", vif)
	}

	// Blocks: 8 MiB disk with data in 1 MiB blocks 0, 1 and 6; 3 MiB+512
	// disk with data in block 0 and a last block of 512 bytes.
	wantBlocks := [][]string{{"00000000", "00000001", "00000006", "00000007"}, {"00000000", "00000003"}}
	got := map[string][]string{}
	rebuilt := map[string][]byte{}
	for i, id := range vdiIDs {
		rebuilt[id] = make([]byte, len(disks[i]))
	}
	for i := 1; i < len(members); i++ {
		m := blockName.FindStringSubmatch(members[i].name)
		if m == nil {
			t.Fatalf("member %s is not a block", members[i].name)
		}
		if i+1 >= len(members) || members[i+1].name != members[i].name+".checksum" {
			t.Fatalf("block %s is not followed by its checksum", members[i].name)
		}
		sum := sha1.Sum(members[i].data)
		if string(members[i+1].data) != hex.EncodeToString(sum[:]) {
			t.Fatalf("checksum of %s: %q", members[i].name, members[i+1].data)
		}
		var idx int
		fmt.Sscan(m[2], &idx)
		copy(rebuilt[m[1]][idx<<20:], members[i].data)
		got[m[1]] = append(got[m[1]], m[2])
		i++
	}
	for i, id := range vdiIDs {
		if !slices.Equal(got[id], wantBlocks[i]) {
			t.Errorf("disk %d blocks %v, want %v", i, got[id], wantBlocks[i])
		}
		if !bytes.Equal(rebuilt[id], disks[i]) {
			t.Errorf("disk %d rebuilt from the archive differs", i)
		}
	}

	// A running VM cannot be exported; a halted VM's export carries its
	// snapshots' records too.
	if res := c.get("/export?session_id=" + c.session + "&ref=" + vm); res.StatusCode != 400 {
		t.Errorf("export of a running VM: %s", res.Status)
	} else {
		res.Body.Close()
	}
	c.mustInto(nil, "VM.hard_shutdown", vm)
	members = untar(t, c.getBody("/export?session_id="+c.session+"&uuid="+c.str("VM.get_uuid", vm)))
	var live xnode
	if err := xml.Unmarshal(members[0].data, &live); err != nil {
		t.Fatal(err)
	}
	var snaps, vms int
	for _, o := range rpcValue(t, live).(map[string]any)["objects"].([]any) {
		om := o.(map[string]any)
		if om["class"] == "VM" {
			if om["snapshot"].(map[string]any)["is_a_snapshot"] == true {
				snaps++
			} else {
				vms++
			}
		}
	}
	if vms != 1 || snaps != 1 {
		t.Errorf("live export: %d VMs, %d snapshots", vms, snaps)
	}
}

// importXVA PUTs an archive with a task and returns the HTTP status, the
// task's status and its result or error.
func (c *client) importXVA(b []byte) (code int, status, result string, info []string) {
	c.t.Helper()
	var srs []string
	c.mustInto(&srs, "SR.get_all")
	task := c.str("task.create", "import", "")
	code, _ = c.put("/import?session_id="+c.session+"&sr_id="+srs[0]+"&task_id="+task, b)
	status, result, info = c.waitTask(task)
	return code, status, result, info
}

var setOfRef = regexp.MustCompile(`^<value><array><data><value>(OpaqueRef:[0-9a-f-]+)</value></data></array></value>$`)

// TestXVAImport: an exported snapshot imports as a halted VM with the same
// disks, byte-exact; damaged archives are refused and leave nothing.
func TestXVAImport(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	vm := c.vmRef("web")
	snap := c.async("VM.snapshot", vm, "copy")
	disks := [][]byte{readFile(t, mustDisk(t, sim, "web", 0)), readFile(t, mustDisk(t, sim, "web", 1))}
	xva := c.getBody("/export?session_id=" + c.session + "&ref=" + snap)
	gz := c.getBody("/export?session_id=" + c.session + "&ref=" + snap + "&use_compression=true")
	if len(gz) < 2 || gz[0] != 0x1f || gz[1] != 0x8b {
		t.Fatal("use_compression=true is not gzip")
	}

	before := sim.Inventory()
	bad := func(name string, b []byte) {
		t.Helper()
		code, status, _, info := c.importXVA(b)
		if code != 400 || status != "failure" || len(info) == 0 || info[0] != "IMPORT_ERROR" {
			t.Errorf("%s: HTTP %d, task %s %v", name, code, status, info)
		}
		if d := xapisim.Diff(before, sim.Inventory()); len(d) != 0 {
			t.Errorf("%s left objects behind: %v", name, d)
		}
	}
	members := untar(t, xva)
	rebuild := func(edit func(ms []xvaMember) []xvaMember) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, m := range edit(slices.Clone(members)) {
			tw.WriteHeader(&tar.Header{Name: m.name, Size: int64(len(m.data)), Mode: 0o644, Format: tar.FormatUSTAR})
			tw.Write(m.data)
		}
		tw.Close()
		return buf.Bytes()
	}
	bad("garbage", []byte(strings.Repeat("not a tar archive ", 100)))
	bad("truncated", xva[:len(xva)/2])
	bad("bad checksum", rebuild(func(ms []xvaMember) []xvaMember {
		d := bytes.Clone(ms[1].data)
		d[10] ^= 1
		ms[1].data = d
		return ms
	}))
	bad("missing checksum", rebuild(func(ms []xvaMember) []xvaMember { return slices.Delete(ms, 2, 3) }))
	bad("no ova.xml first", rebuild(func(ms []xvaMember) []xvaMember { return ms[1:] }))
	bad("block past the disk", rebuild(func(ms []xvaMember) []xvaMember {
		ms[1].name = strings.Replace(ms[1].name, "/00000000", "/00000099", 1)
		ms[2].name = ms[1].name + ".checksum"
		return ms
	}))

	for name, b := range map[string][]byte{"plain": xva, "gzip": gz} {
		code, status, result, info := c.importXVA(b)
		m := setOfRef.FindStringSubmatch(result)
		if code != 200 || status != "success" || m == nil {
			t.Fatalf("%s import: HTTP %d, task %s %q %v", name, code, status, result, info)
		}
		rec := c.record("VM.get_record", m[1])
		if rec["power_state"] != "Halted" || rec["is_a_snapshot"] != false || rec["name_label"] != "copy" {
			t.Errorf("%s: imported VM %v", name, rec)
		}
		info2, err := sim.VM(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if len(info2.Disks) != 2 {
			t.Fatalf("%s: imported disks %v", name, info2.Disks)
		}
		for i, p := range info2.Disks {
			if !bytes.Equal(readFile(t, p), disks[i]) {
				t.Errorf("%s: imported disk %d differs", name, i)
			}
		}
		var cds int
		for _, b := range rec["VBDs"].([]any) {
			if v := c.record("VBD.get_record", b); v["type"] == "CD" && v["empty"] == true {
				cds++
			}
		}
		vifs := rec["VIFs"].([]any)
		if cds != 1 || len(vifs) != 1 {
			t.Errorf("%s: %d CDs, %d VIFs", name, cds, len(vifs))
		}
	}
}
