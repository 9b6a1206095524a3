package xva

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ErrCorrupt is wrapped by every error that describes malformed input: a
// stream that is not a tar, an ova.xml that is not XML-RPC or lacks what an
// XVA needs, a bad block member, a truncated archive.
var ErrCorrupt = errors.New("malformed XVA")

// ErrChecksum is wrapped (besides ErrCorrupt) by the error for a block
// whose checksum member does not match its data.
var ErrChecksum = errors.New("checksum mismatch")

// MaxHeaderSize is the default bound on the size of ova.xml (64 MiB). A VM
// with hundreds of disks and snapshots has an ova.xml of a few MiB.
const MaxHeaderSize = 64 << 20

// Object is one database record exported in ova.xml: its class ("VM",
// "VBD", "VDI", "VIF", "SR", "network", ...), its id in this file ("Ref:N";
// the record's reference fields point at these ids, or hold
// "OpaqueRef:NULL"), and the record itself ("snapshot" in ova.xml) as
// decoded XML-RPC values (see DecodeValue). XAPI writes int64 fields such
// as virtual_size as strings.
type Object struct {
	Class, ID string
	Fields    map[string]any
}

// Header is ova.xml: the exporting host's version struct (hostname, date,
// product_version, product_brand, build_number, xapi_major, xapi_minor,
// export_vsn) and the exported objects in file order.
type Header struct {
	Version map[string]any
	Objects []Object
}

// Disk is one disk of the exported VM: a VBD of type Disk that is not
// empty, and the VDI it points at. ID is the VDI's id, which names the
// disk's block members ("Ref:N/00000000").
type Disk struct {
	ID          string
	Userdevice  string
	Bootable    bool
	VirtualSize int64
	NameLabel   string
	VBD, VDI    *Object
}

// nullRef is XAPI's null reference.
const nullRef = "OpaqueRef:NULL"

// Object returns the object with the given id, or nil.
func (h *Header) Object(id string) *Object {
	for i := range h.Objects {
		if h.Objects[i].ID == id {
			return &h.Objects[i]
		}
	}
	return nil
}

// VM returns the exported VM: the one object of class VM that is not a
// snapshot (is_a_snapshot is not true). Snapshots exported with their VM
// are skipped; none or several candidates is an error.
func (h *Header) VM() (*Object, error) {
	var vm *Object
	for i := range h.Objects {
		o := &h.Objects[i]
		if !strings.EqualFold(o.Class, "VM") {
			continue
		}
		if snap, _ := o.Fields["is_a_snapshot"].(bool); snap {
			continue
		}
		if vm != nil {
			return nil, corruptf("ova.xml has several VM objects that are not snapshots (%s and %s)", vm.ID, o.ID)
		}
		vm = o
	}
	if vm == nil {
		return nil, corruptf("ova.xml has no VM object (or only snapshots)")
	}
	return vm, nil
}

// Disks returns the VM's disks in userdevice order (numerically when the
// userdevices are numbers): for each of VM.VBDs, the VBD of type Disk that
// is not empty and its VDI. CD and floppy drives and empty VBDs are left
// out. A reference to an object that is not in ova.xml, or of the wrong
// class, is an error; so is a VDI without a usable virtual_size (an int,
// or a decimal string as XAPI writes it).
func (h *Header) Disks() ([]Disk, error) {
	vm, err := h.VM()
	if err != nil {
		return nil, err
	}
	refs, err := refList(vm, "VBDs")
	if err != nil {
		return nil, err
	}
	var disks []Disk
	for _, ref := range refs {
		vbd := h.Object(ref)
		if vbd == nil {
			return nil, corruptf("VM %s lists VBD %s, which is not in ova.xml", vm.ID, ref)
		}
		if !strings.EqualFold(vbd.Class, "VBD") {
			return nil, corruptf("VM %s lists VBD %s, which is a %s", vm.ID, ref, vbd.Class)
		}
		typ, _ := vbd.Fields["type"].(string)
		if !strings.EqualFold(typ, "Disk") {
			continue
		}
		if empty, _ := vbd.Fields["empty"].(bool); empty {
			continue
		}
		vdiRef, _ := vbd.Fields["VDI"].(string)
		if vdiRef == "" || vdiRef == nullRef {
			return nil, corruptf("VBD %s is a disk that is not empty but has no VDI", vbd.ID)
		}
		vdi := h.Object(vdiRef)
		if vdi == nil {
			return nil, corruptf("VBD %s points at VDI %s, which is not in ova.xml", vbd.ID, vdiRef)
		}
		if !strings.EqualFold(vdi.Class, "VDI") {
			return nil, corruptf("VBD %s points at VDI %s, which is a %s", vbd.ID, vdiRef, vdi.Class)
		}
		size, err := virtualSize(vdi)
		if err != nil {
			return nil, err
		}
		d := Disk{ID: vdi.ID, VirtualSize: size, VBD: vbd, VDI: vdi}
		d.Userdevice, _ = vbd.Fields["userdevice"].(string)
		d.Bootable, _ = vbd.Fields["bootable"].(bool)
		d.NameLabel, _ = vdi.Fields["name_label"].(string)
		disks = append(disks, d)
	}
	sort.SliceStable(disks, func(i, j int) bool { return lessUserdevice(disks[i].Userdevice, disks[j].Userdevice) })
	return disks, nil
}

// refList reads a field holding a set of references.
func refList(o *Object, field string) ([]string, error) {
	v, ok := o.Fields[field]
	if !ok {
		return nil, corruptf("%s %s has no %s field", o.Class, o.ID, field)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, corruptf("%s %s: %s is a %T, want an array", o.Class, o.ID, field, v)
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, corruptf("%s %s: %s[%d] is a %T, want a reference", o.Class, o.ID, field, i, e)
		}
		out = append(out, s)
	}
	return out, nil
}

// virtualSize reads a VDI's virtual_size: an integer, or a decimal string.
func virtualSize(vdi *Object) (int64, error) {
	v, ok := vdi.Fields["virtual_size"]
	if !ok {
		return 0, corruptf("VDI %s has no virtual_size", vdi.ID)
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		var err error
		if n, err = strconv.ParseInt(trimSpace(x), 10, 64); err != nil {
			return 0, corruptf("VDI %s: virtual_size %q is not a number", vdi.ID, x)
		}
	default:
		return 0, corruptf("VDI %s: virtual_size is a %T, want an integer", vdi.ID, v)
	}
	if n < 0 {
		return 0, corruptf("VDI %s: virtual_size %d is negative", vdi.ID, n)
	}
	return n, nil
}

func lessUserdevice(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return x < y
	case errA == nil:
		return true
	case errB == nil:
		return false
	}
	return a < b
}

// DecodeHeader decodes ova.xml: an XML-RPC struct with a "version" struct
// and an "objects" array of structs {class, id, snapshot}. It checks the
// shape only; VM and Disks check the references. Input larger than
// MaxHeaderSize is refused.
func DecodeHeader(b []byte) (*Header, error) {
	if len(b) > MaxHeaderSize {
		return nil, corruptf("ova.xml is %d bytes, more than the %d allowed", len(b), MaxHeaderSize)
	}
	v, err := decodeValue(b, "ova.xml")
	if err != nil {
		return nil, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, corruptf("ova.xml: the top value is a %s, want a struct", typeName(v))
	}
	h := &Header{}
	switch ver := top["version"].(type) {
	case map[string]any:
		h.Version = ver
	case nil:
		return nil, corruptf("ova.xml has no version struct")
	default:
		return nil, corruptf("ova.xml: version is a %s, want a struct", typeName(ver))
	}
	objs, ok := top["objects"].([]any)
	if !ok {
		if _, present := top["objects"]; !present {
			return nil, corruptf("ova.xml has no objects array")
		}
		return nil, corruptf("ova.xml: objects is a %s, want an array", typeName(top["objects"]))
	}
	h.Objects = make([]Object, 0, len(objs))
	seen := make(map[string]int, len(objs))
	for i, e := range objs {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, corruptf("ova.xml: object %d is a %s, want a struct", i, typeName(e))
		}
		var o Object
		if o.Class, ok = m["class"].(string); !ok || o.Class == "" {
			return nil, corruptf("ova.xml: object %d has no class", i)
		}
		if o.ID, ok = m["id"].(string); !ok || o.ID == "" {
			return nil, corruptf("ova.xml: object %d (%s) has no id", i, o.Class)
		}
		if o.Fields, ok = m["snapshot"].(map[string]any); !ok {
			return nil, corruptf("ova.xml: object %d (%s %s) has no snapshot struct", i, o.Class, o.ID)
		}
		if j, dup := seen[o.ID]; dup {
			return nil, corruptf("ova.xml: objects %d and %d have the same id %s", j, i, o.ID)
		}
		seen[o.ID] = i
		h.Objects = append(h.Objects, o)
	}
	return h, nil
}

// EncodeHeader writes h as ova.xml, in the shape DecodeHeader reads: the
// objects in order, each as class, id, snapshot.
func EncodeHeader(h *Header) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("<value><struct><member><name>version</name>")
	ver := h.Version
	if ver == nil {
		ver = map[string]any{}
	}
	if err := appendValue(&buf, ver, "version", 2); err != nil {
		return nil, err
	}
	buf.WriteString("</member><member><name>objects</name><value><array><data>")
	for i, o := range h.Objects {
		if o.Class == "" || o.ID == "" {
			return nil, fmt.Errorf("xva: encode ova.xml: object %d has no class or id", i)
		}
		buf.WriteString("<value><struct><member><name>class</name><value>")
		escape(&buf, o.Class)
		buf.WriteString("</value></member><member><name>id</name><value>")
		escape(&buf, o.ID)
		buf.WriteString("</value></member><member><name>snapshot</name>")
		fields := o.Fields
		if fields == nil {
			fields = map[string]any{}
		}
		if err := appendValue(&buf, fields, o.Class+" "+o.ID, 4); err != nil {
			return nil, err
		}
		buf.WriteString("</member></struct></value>")
	}
	buf.WriteString("</data></array></value></member></struct></value>")
	return buf.Bytes(), nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case string:
		return "string"
	case int64:
		return "int"
	case bool:
		return "boolean"
	case float64:
		return "double"
	case []byte:
		return "base64"
	case []any:
		return "array"
	case map[string]any:
		return "struct"
	}
	return fmt.Sprintf("%T", v)
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("xva: %s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
}
