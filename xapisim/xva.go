package xapisim

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// XVA (version 2, what xapi's /export writes): an uncompressed ustar
// archive whose first member, ova.xml, is an XML-RPC struct {version,
// objects}; each object is {class, id "Ref:N", snapshot: its record with
// references rewritten to ids}. Then, per exported disk Ref:N, members
// Ref:N/00000000, … of 1 MiB (the disk at index × 1 MiB), each followed by
// Ref:N/XXXXXXXX.checksum (hex SHA-1 of the block). All-zero blocks are
// left out except the disk's last one.

const xvaBlockSize = 1 << 20

// xvaDisk is one disk of an export.
type xvaDisk struct {
	id   string
	path string
	size int64
}

// xvaHeaderLocked builds ova.xml's value for VM v and lists its disks.
// Exporting a snapshot exports it as a plain (halted) VM; exporting a VM
// adds its snapshots' records (without their disks) unless withSnaps is
// false. Caller holds s.mu.
func (s *Sim) xvaHeaderLocked(v *vmRec, withSnaps bool) (map[string]any, []xvaDisk, error) {
	ids := map[string]string{}
	type obj struct {
		class, ref string
		rec        map[string]any
	}
	var objs []obj
	add := func(class, ref string, rec map[string]any) {
		if _, ok := ids[ref]; ok {
			return
		}
		ids[ref] = "Ref:" + strconv.Itoa(len(ids))
		objs = append(objs, obj{class, ref, rec})
	}
	vm := s.vmRecord(v)
	if v.IsASnapshot {
		vm["is_a_snapshot"], vm["snapshot_of"], vm["snapshot_time"] = false, nullRef, xenTime(time.Time{})
		vm["power_state"] = "Halted"
	}
	add("VM", v.Ref, vm)
	if withSnaps && !v.IsASnapshot {
		for _, x := range s.m.sortedVMs() {
			if x.IsASnapshot && x.SnapshotOf == v.Ref {
				add("VM", x.Ref, s.vmRecord(x))
			}
		}
	}
	var disks []xvaDisk
	usesSR := false
	for _, b := range s.m.vbdsOf(v.Ref) {
		add("VBD", b.Ref, s.vbdRecord(b))
		d := s.m.VDIs[b.VDI]
		if d == nil {
			continue
		}
		if d.File == "" {
			return nil, nil, xerr("VDI_INCOMPATIBLE_TYPE", d.Ref, d.Type)
		}
		add("VDI", d.Ref, s.vdiRecord(d))
		disks = append(disks, xvaDisk{id: ids[d.Ref], path: s.abs(d.File), size: d.VirtualSize})
		usesSR = true
	}
	for _, f := range s.m.vifsOf(v.Ref) {
		add("VIF", f.Ref, s.vifRecord(f))
		if n := s.m.network(f.Network); n != nil {
			add("network", n.Ref, s.networkRecord(n))
		}
	}
	if usesSR {
		add("SR", s.m.SR.Ref, s.srRecord())
	}
	objects := make([]any, 0, len(objs))
	for _, o := range objs {
		remapRefs(o.rec, ids)
		objects = append(objects, map[string]any{"class": o.class, "id": ids[o.ref], "snapshot": o.rec})
	}
	version := map[string]any{
		"hostname": s.opts.HostName, "date": time.Now().UTC().Format("2006-01-02"),
		"product_version": "8.3.0", "product_brand": "XCP-ng", "build_number": "xapisim",
		"xapi_major": int64(24), "xapi_minor": int64(19), "export_vsn": int64(2),
	}
	return map[string]any{"version": version, "objects": objects}, disks, nil
}

// remapRefs rewrites the references of a record to export ids; references
// to objects not exported become OpaqueRef:NULL (and leave sets).
func remapRefs(rec map[string]any, ids map[string]string) {
	for k, v := range rec {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, "OpaqueRef:") {
				if id, ok := ids[x]; ok {
					rec[k] = id
				} else {
					rec[k] = nullRef
				}
			}
		case []string:
			out := []string{}
			for _, e := range x {
				if !strings.HasPrefix(e, "OpaqueRef:") {
					out = append(out, e)
				} else if id, ok := ids[e]; ok {
					out = append(out, id)
				}
			}
			rec[k] = out
		}
	}
}

// serveExport answers GET /export?ref=VMREF|uuid=UUID[&use_compression=true]
// [&export_snapshots=false] with an XVA.
func (s *Sim) serveExport(w http.ResponseWriter, r *http.Request) {
	t, ok := s.beginTransfer(w, r, "export")
	if !ok {
		return
	}
	q := r.URL.Query()
	id := q.Get("ref")
	if id == "" {
		id = q.Get("uuid")
	}
	compress := false
	switch c := q.Get("use_compression"); c {
	case "", "false":
	case "true", "gzip":
		compress = true
	default:
		t.fail(http.StatusBadRequest, xerr("FORMAT_NOT_SUPPORTED", "use_compression="+c))
		return
	}
	s.mu.Lock()
	v := s.m.VMs[id]
	if v == nil {
		for _, x := range s.m.VMs {
			if x.UUID == id {
				v = x
			}
		}
	}
	var hdr map[string]any
	var disks []xvaDisk
	var xe *xenError
	switch {
	case v == nil:
		xe = handleInvalid("VM", id)
	case v.IsControlDomain:
		xe = xerr("OPERATION_NOT_ALLOWED", "the control domain cannot be exported")
	case !v.IsASnapshot && v.PowerState != "Halted":
		xe = badPower(v, "halted") // export a snapshot of a running VM
	default:
		var err error
		if hdr, disks, err = s.xvaHeaderLocked(v, q.Get("export_snapshots") != "false"); err != nil {
			xe = asXenError(err)
		}
	}
	s.mu.Unlock()
	if xe != nil {
		t.fail(httpStatus(xe), xe)
		return
	}
	files := make([]*os.File, len(disks))
	for i, d := range disks {
		f, err := os.Open(d.path)
		if err != nil {
			for _, g := range files[:i] {
				g.Close()
			}
			t.fail(http.StatusInternalServerError, xerr("INTERNAL_ERROR", err.Error()))
			return
		}
		files[i] = f
		defer f.Close()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	var out io.Writer = w
	var gz *gzip.Writer
	if compress {
		gz = gzip.NewWriter(w)
		out = gz
	}
	err := writeXVA(out, hdr, disks, files)
	if err == nil && gz != nil {
		err = gz.Close()
	}
	if err != nil {
		t.end(nil, xerr("INTERNAL_ERROR", "export: "+err.Error()))
		return
	}
	t.end(nil, nil)
}

func writeXVA(w io.Writer, hdr map[string]any, disks []xvaDisk, files []*os.File) error {
	tw := tar.NewWriter(w)
	now := time.Now().Truncate(time.Second)
	member := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now,
			Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := member("ova.xml", []byte(xmlrpcValueText(hdr))); err != nil {
		return err
	}
	buf := make([]byte, xvaBlockSize)
	for i, d := range disks {
		n := (d.size + xvaBlockSize - 1) / xvaBlockSize
		for idx := range n {
			off := idx * xvaBlockSize
			b := buf[:min(xvaBlockSize, d.size-off)]
			if err := simkit.ReadFull(files[i], b, off); err != nil {
				return fmt.Errorf("read %s: %w", d.path, err)
			}
			if idx != n-1 && simkit.AllZero(b) {
				continue
			}
			name := fmt.Sprintf("%s/%08d", d.id, idx)
			if err := member(name, b); err != nil {
				return err
			}
			sum := sha1.Sum(b)
			if err := member(name+".checksum", []byte(hex.EncodeToString(sum[:]))); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// importError is a malformed XVA (HTTP 400, task error IMPORT_ERROR).
type importError struct{ msg string }

func (e *importError) Error() string { return e.msg }

func badXVA(format string, args ...any) error { return &importError{fmt.Sprintf(format, args...)} }

// serveImport answers PUT /import?sr_id=REF[&task_id=T][&restore=true]
// with an XVA body: it makes a halted VM with its VDIs (their contents
// from the archive), VBDs and VIFs, and answers (and sets the task's
// result to) the set of the new VM's ref. A failed import leaves nothing.
func (s *Sim) serveImport(w http.ResponseWriter, r *http.Request) {
	t, ok := s.beginTransfer(w, r, "import")
	if !ok {
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	srOK := q.Get("sr_id") == "" || q.Get("sr_id") == s.m.SR.Ref || q.Get("sr_id") == s.m.SR.UUID
	s.mu.Unlock()
	if !srOK {
		t.fail(http.StatusNotFound, handleInvalid("SR", q.Get("sr_id")))
		return
	}
	br := bufio.NewReader(r.Body)
	var body io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			t.fail(http.StatusBadRequest, xerr("IMPORT_ERROR", "gzip: "+err.Error()))
			return
		}
		body = gz
	}
	imp := &xvaImport{s: s, restore: q.Get("restore") == "true", task: t.task}
	ref, err := imp.run(tar.NewReader(body))
	if err != nil {
		imp.discard()
		var ie *importError
		if errors.As(err, &ie) {
			t.fail(http.StatusBadRequest, xerr("IMPORT_ERROR", ie.msg))
		} else {
			t.fail(httpStatus(asXenError(err)), asXenError(err))
		}
		return
	}
	result := []string{ref}
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, xmlrpcValueText(result))
	t.end(result, nil)
}

// xvaImport is one import under way.
type xvaImport struct {
	s       *Sim
	restore bool
	task    string

	vm      map[string]any
	vbds    []map[string]any
	vifs    []map[string]any
	nets    map[string]map[string]any // network id → record
	disks   map[string]*importDisk    // VDI id → target
	order   []string                  // VDI ids in VBD order
	created []string                  // files to remove on failure
}

type importDisk struct {
	rec  map[string]any
	uuid string
	rel  string
	size int64
	f    *os.File
	seen int64 // blocks written
}

func (x *xvaImport) discard() {
	for _, d := range x.disks {
		if d.f != nil {
			d.f.Close()
		}
	}
	for _, p := range x.created {
		os.Remove(p)
	}
}

// run reads the archive and, when it is whole, creates the objects.
func (x *xvaImport) run(tr *tar.Reader) (string, error) {
	h, err := tr.Next()
	if err != nil {
		return "", badXVA("not an XVA (tar) archive: %v", err)
	}
	if path.Clean(h.Name) != "ova.xml" {
		return "", badXVA("the first member is %q, not ova.xml", h.Name)
	}
	if h.Size > 64<<20 {
		return "", badXVA("ova.xml is %d bytes", h.Size)
	}
	v, err := parseXMLRPC(tr)
	if err != nil {
		return "", badXVA("ova.xml: %v", err)
	}
	if err := x.readHeader(v); err != nil {
		return "", err
	}
	if err := x.openDisks(); err != nil {
		return "", err
	}
	if err := x.readBlocks(tr); err != nil {
		return "", err
	}
	for _, d := range x.disks {
		if err := d.f.Close(); err != nil {
			d.f = nil
			return "", err
		}
		d.f = nil
	}
	return x.commit()
}

func (x *xvaImport) readHeader(v any) error {
	root, ok := v.(map[string]any)
	if !ok {
		return badXVA("ova.xml is not a struct")
	}
	objs, ok := root["objects"].([]any)
	if !ok {
		return badXVA("ova.xml has no objects array")
	}
	byID := map[string]map[string]any{}
	classOf := map[string]string{}
	var vmID string
	for i, o := range objs {
		om, ok := o.(map[string]any)
		if !ok {
			return badXVA("object %d is not a struct", i)
		}
		class, _ := om["class"].(string)
		id, _ := om["id"].(string)
		rec, ok := om["snapshot"].(map[string]any)
		if class == "" || id == "" || !ok {
			return badXVA("object %d lacks class, id or snapshot", i)
		}
		byID[id], classOf[id] = rec, class
		if class == "VM" && !xvaBool(rec["is_a_snapshot"]) {
			if vmID != "" {
				return badXVA("more than one VM (%s and %s)", vmID, id)
			}
			vmID = id
		}
	}
	if vmID == "" {
		return badXVA("no VM object")
	}
	x.vm = byID[vmID]
	x.nets = map[string]map[string]any{}
	x.disks = map[string]*importDisk{}
	for id, rec := range byID {
		switch classOf[id] {
		case "network":
			x.nets[id] = rec
		}
	}
	for _, o := range objs {
		om := o.(map[string]any)
		id := om["id"].(string)
		rec := byID[id]
		if xvaStr(rec["VM"]) != vmID {
			continue
		}
		switch classOf[id] {
		case "VBD":
			x.vbds = append(x.vbds, rec)
			vdi := xvaStr(rec["VDI"])
			if vdi == "" || vdi == nullRef || xvaStr(rec["type"]) != "Disk" {
				continue
			}
			vrec, ok := byID[vdi]
			if !ok || classOf[vdi] != "VDI" {
				return badXVA("VBD %s names VDI %s, which is not in the archive", id, vdi)
			}
			size, err := xvaInt(vrec["virtual_size"])
			if err != nil || size <= 0 || size%512 != 0 {
				return badXVA("VDI %s: bad virtual_size %v", vdi, vrec["virtual_size"])
			}
			if _, dup := x.disks[vdi]; !dup {
				x.disks[vdi] = &importDisk{rec: vrec, size: size}
				x.order = append(x.order, vdi)
			}
		case "VIF":
			x.vifs = append(x.vifs, rec)
		}
	}
	return nil
}

func (x *xvaImport) openDisks() error {
	for _, d := range x.disks {
		d.uuid = simkit.NewUUID()
		d.rel = filepath.Join("vdis", d.uuid+".raw")
		p := x.s.abs(d.rel)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if err != nil {
			return err
		}
		x.created = append(x.created, p)
		if err := f.Truncate(d.size); err != nil {
			f.Close()
			return err
		}
		d.f = f
	}
	return nil
}

// readBlocks writes every Ref:N/NNNNNNNN member into its disk, checking
// each against the .checksum (SHA-1) or .xxhash (xxh64) member after it.
func (x *xvaImport) readBlocks(tr *tar.Reader) error {
	buf := make([]byte, xvaBlockSize)
	var pending string // the block whose checksum comes next
	var sha string
	var xxh uint64
	var count int64
	total := int64(0)
	for _, d := range x.disks {
		total += (d.size + xvaBlockSize - 1) / xvaBlockSize
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return badXVA("archive: %v", err)
		}
		name := path.Clean(h.Name)
		if h.Typeflag == tar.TypeDir {
			continue
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		if sumKind := path.Ext(base); sumKind == ".checksum" || sumKind == ".xxhash" {
			block := strings.TrimSuffix(name, sumKind)
			if pending == "" || block != pending {
				return badXVA("checksum member %s does not follow its block", name)
			}
			if h.Size > 128 {
				return badXVA("checksum member %s is %d bytes", name, h.Size)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return badXVA("archive: %v", err)
			}
			got := strings.ToLower(strings.TrimSpace(string(b)))
			if sumKind == ".checksum" && got != sha {
				return badXVA("checksum mismatch for %s: archive says %s, data has %s", block, got, sha)
			}
			if sumKind == ".xxhash" {
				n, err := strconv.ParseUint(got, 16, 64)
				if err != nil || n != xxh {
					return badXVA("xxhash mismatch for %s: archive says %s, data has %016x", block, got, xxh)
				}
			}
			pending = ""
			continue
		}
		if pending != "" {
			return badXVA("block %s has no checksum member", pending)
		}
		d := x.disks[dir]
		if d == nil {
			return badXVA("member %s belongs to no disk of the VM", name)
		}
		idx, err := strconv.ParseInt(base, 10, 64)
		if err != nil || idx < 0 {
			return badXVA("member %s is not a block", name)
		}
		if h.Size > xvaBlockSize {
			return badXVA("block %s is %d bytes, more than 1 MiB", name, h.Size)
		}
		off := idx * xvaBlockSize
		if off+h.Size > d.size {
			return badXVA("block %s ends past the disk's %d bytes", name, d.size)
		}
		b := buf[:h.Size]
		if _, err := io.ReadFull(tr, b); err != nil {
			return badXVA("archive: %s: %v", name, err)
		}
		if _, err := simkit.WriteSparse(d.f, b, off); err != nil {
			return err
		}
		sum := sha1.Sum(b)
		pending, sha, xxh = name, hex.EncodeToString(sum[:]), xxh64(b)
		d.seen++
		if count++; x.task != "" && total > 0 {
			x.s.setTaskProgress(x.task, min(0.99, float64(count)/float64(total)))
		}
	}
	if pending != "" {
		return badXVA("block %s has no checksum member", pending)
	}
	return nil
}

// commit creates the VM and its objects.
func (x *xvaImport) commit() (string, error) {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	r := x.vm
	v := &vmRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), NameLabel: xvaStr(r["name_label"]),
		NameDescription: xvaStr(r["name_description"]), PowerState: "Halted", IsATemplate: xvaBool(r["is_a_template"]),
		HVMBootPolicy: xvaStr(r["HVM_boot_policy"]), HVMBootParams: xvaMap(r["HVM_boot_params"]),
		Platform: xvaMap(r["platform"]), OtherConfig: xvaMap(r["other_config"]), Tags: xvaStrings(r["tags"]),
		DomainType: xvaStr(r["domain_type"]), PVBootloader: xvaStr(r["PV_bootloader"]), UserVersion: 1}
	if v.DomainType == "" {
		v.DomainType = "hvm"
	}
	ints := []struct {
		dst *int64
		k   string
	}{{&v.VCPUsMax, "VCPUs_max"}, {&v.VCPUsAtStartup, "VCPUs_at_startup"}, {&v.MemoryStaticMax, "memory_static_max"},
		{&v.MemoryDynMax, "memory_dynamic_max"}, {&v.MemoryDynMin, "memory_dynamic_min"}, {&v.MemoryStaticMin, "memory_static_min"}}
	for _, f := range ints {
		n, err := xvaInt(r[f.k])
		if err != nil {
			return "", badXVA("VM %s: %v", f.k, err)
		}
		*f.dst = n
	}
	vdiRefs := map[string]string{}
	for _, id := range x.order {
		d := x.disks[id]
		rec := &vdiRec{Ref: newRef(), UUID: d.uuid, Seq: m.next(), NameLabel: xvaStr(d.rec["name_label"]),
			NameDescription: xvaStr(d.rec["name_description"]), SR: m.SR.Ref, VirtualSize: d.size,
			Type: xvaStr(d.rec["type"]), Sharable: xvaBool(d.rec["sharable"]), ReadOnly: xvaBool(d.rec["read_only"]),
			OtherConfig: xvaMap(d.rec["other_config"]), File: d.rel}
		if rec.Type == "" || rec.Type == "cbt_metadata" {
			rec.Type = "user"
		}
		m.VDIs[rec.Ref] = rec
		vdiRefs[id] = rec.Ref
	}
	m.VMs[v.Ref] = v
	for _, b := range x.vbds {
		nb := &vbdRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), VM: v.Ref, VDI: vdiRefs[xvaStr(b["VDI"])],
			Userdevice: xvaStr(b["userdevice"]), Bootable: xvaBool(b["bootable"]), Mode: xvaStr(b["mode"]),
			Type: xvaStr(b["type"]), OtherConfig: xvaMap(b["other_config"])}
		nb.Empty = nb.VDI == ""
		m.VBDs[nb.Ref] = nb
	}
	for _, f := range x.vifs {
		net := m.Networks[0]
		if nr := x.nets[xvaStr(f["network"])]; nr != nil {
			for _, n := range m.Networks {
				if n.Bridge == xvaStr(nr["bridge"]) || n.NameLabel == xvaStr(nr["name_label"]) {
					net = n
					break
				}
			}
		}
		mtu, _ := xvaInt(f["MTU"])
		nf := &vifRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), Device: xvaStr(f["device"]), Network: net.Ref,
			VM: v.Ref, MAC: xvaStr(f["MAC"]), MTU: max(mtu, 576), OtherConfig: xvaMap(f["other_config"])}
		if !x.restore || !validMAC(nf.MAC) {
			nf.MAC, nf.MACAutogenerated = newMAC(), true
		}
		m.VIFs[nf.Ref] = nf
	}
	s.updateSRSizeLocked()
	s.save()
	x.created = nil
	return v.Ref, nil
}

// XML-RPC record fields as written by xapi (ints and bools may be
// strings).

func xvaStr(v any) string {
	s, _ := v.(string)
	return s
}

func xvaBool(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true" || x == "1"
	}
	return false
}

func xvaInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	case float64:
		return int64(x), nil
	}
	return 0, fmt.Errorf("%v is not an integer", v)
}

func xvaMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

func xvaStrings(v any) []string {
	out := []string{}
	if a, ok := v.([]any); ok {
		for _, x := range a {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}
