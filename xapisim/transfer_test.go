package xapisim_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/xapisim"
)

const mib2 = 2 << 20

// vhdFile is a dynamic VHD read by hand (Microsoft VHD spec v1.0).
type vhdFile struct {
	size    int64
	present map[int64][]byte // block index → 2 MiB data
}

func checksumOK(b []byte, at int) bool {
	var sum uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			sum += uint32(c)
		}
	}
	return ^sum == binary.BigEndian.Uint32(b[at:])
}

func parseVHD(t testing.TB, b []byte) vhdFile {
	t.Helper()
	if len(b) < 512+1024+512 {
		t.Fatalf("VHD of %d bytes", len(b))
	}
	footer, tail := b[:512], b[len(b)-512:]
	if !bytes.Equal(footer, tail) || string(footer[:8]) != "conectix" || !checksumOK(footer, 64) {
		t.Fatal("bad VHD footer (copy, cookie or checksum)")
	}
	if typ := binary.BigEndian.Uint32(footer[60:]); typ != 3 {
		t.Fatalf("disk type %d, want 3 (dynamic)", typ)
	}
	if off := binary.BigEndian.Uint64(footer[16:]); off != 512 {
		t.Fatalf("dynamic header at %d", off)
	}
	h := b[512 : 512+1024]
	if string(h[:8]) != "cxsparse" || !checksumOK(h, 36) {
		t.Fatal("bad dynamic header")
	}
	batOff := int64(binary.BigEndian.Uint64(h[16:]))
	entries := int64(binary.BigEndian.Uint32(h[28:]))
	if bs := binary.BigEndian.Uint32(h[32:]); bs != mib2 {
		t.Fatalf("block size %d", bs)
	}
	v := vhdFile{size: int64(binary.BigEndian.Uint64(footer[48:])), present: map[int64][]byte{}}
	if entries != (v.size+mib2-1)/mib2 {
		t.Fatalf("%d BAT entries for %d bytes", entries, v.size)
	}
	last := int64(0)
	for i := range entries {
		sec := binary.BigEndian.Uint32(b[batOff+4*i:])
		if sec == 0xFFFFFFFF {
			continue
		}
		off := int64(sec) * 512
		if off <= last || off+512+mib2 > int64(len(b))-512 {
			t.Fatalf("block %d at %d: not in stream order or out of the file", i, off)
		}
		last = off
		bitmap := b[off : off+512]
		if bitmap[0] != 0xff {
			t.Fatalf("block %d: sector bitmap %x…", i, bitmap[:4])
		}
		v.present[i] = b[off+512 : off+512+mib2]
	}
	return v
}

// TestExportRawVDI: raw export, full and delta dynamic VHDs (qemu-img
// reads the full one back byte-exact).
func TestExportRawVDI(t *testing.T) {
	// 9 MiB + 1536 bytes: the last 2 MiB block is partial. Data in blocks
	// 0 and 2 (64 KiB blocks 0 and 70).
	size := int64(9<<20 + 1536)
	sim := startSim(t, xapisim.VMSpec{Name: "web", Files: []string{image(t, size, 0, 70)}})
	c := login(t, sim)
	vm := c.vmRef("web")
	a := c.snapDisks(c.async("VM.snapshot", vm, "a"))[0]
	wantA := readFile(t, mustDisk(t, sim, "web", 0))

	raw := c.getBody("/export_raw_vdi?session_id=" + c.session + "&vdi=" + a + "&format=raw")
	if !bytes.Equal(raw, wantA) {
		t.Fatal("raw export differs")
	}
	var uuid string
	c.mustInto(&uuid, "VDI.get_uuid", a)
	if raw := c.getBody("/export_raw_vdi?session_id=" + c.session + "&vdi=" + uuid); !bytes.Equal(raw, wantA) {
		t.Fatal("raw export by uuid differs")
	}
	if res := c.get("/export_raw_vdi?session_id=OpaqueRef:bad&vdi=" + a); res.StatusCode != 401 {
		t.Errorf("bad session: %s", res.Status)
	}

	full := c.getBody("/export_raw_vdi?session_id=" + c.session + "&vdi=" + a + "&format=vhd")
	v := parseVHD(t, full)
	if v.size != size || len(v.present) != 2 || v.present[0] == nil || v.present[2] == nil {
		t.Fatalf("full VHD: size %d, blocks %v", v.size, mapKeys(v.present))
	}

	if err := sim.Write("web", 0, 4<<20+7, []byte("x")); err != nil { // block 2
		t.Fatal(err)
	}
	if err := sim.Write("web", 0, size-1, []byte("y")); err != nil { // block 4 (partial)
		t.Fatal(err)
	}
	b := c.snapDisks(c.async("VM.snapshot", vm, "b"))[0]
	wantB := readFile(t, mustDisk(t, sim, "web", 0))
	delta := parseVHD(t, c.getBody("/export_raw_vdi?session_id="+c.session+"&vdi="+b+"&format=vhd&base="+a))
	if got := mapKeys(delta.present); !slices.Equal(got, []int64{2, 4}) {
		t.Fatalf("delta VHD blocks %v, want [2 4]", got)
	}
	for idx, data := range delta.present {
		end := min((idx+1)*mib2, size)
		if !bytes.Equal(data[:end-idx*mib2], wantB[idx*mib2:end]) || !bytes.Equal(data[end-idx*mib2:], make([]byte, (idx+1)*mib2-end)) {
			t.Errorf("delta block %d differs", idx)
		}
	}

	testenv.Commands(t, "qemu-img")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "a.vhd"), filepath.Join(dir, "a.raw")
	if err := os.WriteFile(in, full, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("qemu-img", "convert", "-f", "vpc", "-O", "raw", in, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, o)
	}
	if got := readFile(t, out); !bytes.Equal(got, wantA) {
		t.Fatalf("qemu-img's raw image (%d bytes) differs from the disk (%d bytes)", len(got), len(wantA))
	}
	if o, err := exec.Command("qemu-img", "check", "-f", "vpc", in).CombinedOutput(); err != nil && !strings.Contains(string(o), "does not support checks") {
		t.Errorf("qemu-img check: %v: %s", err, o)
	}
}

func mapKeys[V any](m map[int64]V) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestImportRawVDI: the body replaces a VDI's content; a body of the
// wrong size is refused and changes nothing.
func TestImportRawVDI(t *testing.T) {
	sim := startSim(t)
	c := login(t, sim)
	var srs []string
	c.mustInto(&srs, "SR.get_all")
	const size = 5 << 20
	vdi := c.str("VDI.create", map[string]any{"name_label": "restore", "name_description": "", "SR": srs[0], "virtual_size": size,
		"type": "user", "sharable": false, "read_only": false, "other_config": map[string]string{}})
	data := make([]byte, size)
	copy(data[1<<20:], randomBytes(t, 100_000))
	copy(data[size-10:], "tail bytes")
	task := c.str("task.create", "import", "")
	if code, body := c.put("/import_raw_vdi?session_id="+c.session+"&vdi="+vdi+"&format=raw&task_id="+task, data); code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	if status, _, info := c.waitTask(task); status != "success" {
		t.Fatalf("import task %s %v", status, info)
	}
	if got := c.getBody("/export_raw_vdi?session_id=" + c.session + "&vdi=" + vdi + "&format=raw"); !bytes.Equal(got, data) {
		t.Fatal("exported data differs from the imported")
	}
	task = c.str("task.create", "import", "")
	if code, _ := c.put("/import_raw_vdi?session_id="+c.session+"&vdi="+vdi+"&format=raw&task_id="+task, data[:size-512]); code != 400 {
		t.Fatalf("short body: %d", code)
	}
	if status, _, info := c.waitTask(task); status != "failure" || info[0] != "IMPORT_ERROR" {
		t.Fatalf("short body task %s %v", status, info)
	}
	if got := c.getBody("/export_raw_vdi?session_id=" + c.session + "&vdi=" + vdi); !bytes.Equal(got, data) {
		t.Fatal("a refused import changed the VDI")
	}
	live := c.disks(c.vmRef("web"))[0]
	if code, _ := c.put("/import_raw_vdi?session_id="+c.session+"&vdi="+live+"&format=raw", data); code != 409 {
		t.Errorf("import into a plugged VDI: %d", code)
	}
	sim.FailNext("import_raw_vdi", "SR_BACKEND_FAILURE_46")
	if code, body := c.put("/import_raw_vdi?session_id="+c.session+"&vdi="+vdi+"&format=raw", data); code != 500 || !strings.Contains(body, "SR_BACKEND_FAILURE_46") {
		t.Errorf("injected fault: %d %s", code, body)
	}
}
