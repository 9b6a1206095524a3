package xapisim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// VMSpec describes a VM for AddVM.
type VMSpec struct {
	// Name is the VM's name_label (required; also its directory
	// DIR/vms/<Name>).
	Name string
	// Files are disk images copied in as the VM's disks 0, 1, …
	// (DIR/vms/<Name>/disk-N.raw; a reflink or a sparse copy). Sizes
	// are rounded up to 512 bytes.
	Files []string
	// DiskSizes adds blank disks after Files.
	DiskSizes []int64
	// Firmware is "bios" (default) or "uefi".
	Firmware string
	// SecureBoot sets platform:secureboot=true (UEFI only).
	SecureBoot bool
	// Quiesce: the guest tools can quiesce the guest, so
	// VM.snapshot_with_quiesce works (default: it answers
	// VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED).
	Quiesce bool
	// NoGuestTools leaves guest_metrics null (no PV drivers).
	NoGuestTools bool
	// Halted creates the VM powered off (default Running).
	Halted bool
	// VCPUs (default 2) and MemoryBytes (default 1 GiB).
	VCPUs       int64
	MemoryBytes int64
}

// Validate reports every problem with spec at once.
func (v VMSpec) Validate() error {
	var errs []error
	if v.Name == "" || strings.ContainsAny(v.Name, "/\x00") || v.Name == "." || v.Name == ".." {
		errs = append(errs, fmt.Errorf("VM name %q is not usable as a directory name", v.Name))
	}
	if len(v.Files)+len(v.DiskSizes) == 0 {
		errs = append(errs, errors.New("a VM needs Files or DiskSizes"))
	}
	for _, n := range v.DiskSizes {
		if n <= 0 {
			errs = append(errs, fmt.Errorf("disk size %d is not positive", n))
		}
	}
	if v.Firmware != "" && v.Firmware != "bios" && v.Firmware != "uefi" {
		errs = append(errs, fmt.Errorf("firmware %q: want bios or uefi", v.Firmware))
	}
	if v.SecureBoot && v.Firmware != "uefi" {
		errs = append(errs, errors.New("SecureBoot needs Firmware uefi"))
	}
	if v.VCPUs < 0 || v.MemoryBytes < 0 {
		errs = append(errs, errors.New("VCPUs and MemoryBytes must not be negative"))
	}
	return errors.Join(errs...)
}

// VMInfo describes a VM (or snapshot) for tests.
type VMInfo struct {
	Ref, UUID, Name string
	PowerState      string
	// Disks are the absolute paths of its disk VDIs' files, in
	// userdevice order ("" for a VDI whose data was destroyed).
	Disks []string
	// VDIs are the refs of those VDIs.
	VDIs []string
}

// AddVM adds a running HVM VM with one VDI per disk (VBD userdevice 0, 1,
// …, bootable on 0), an empty CD drive, one VIF on the first network, and
// guest metrics. A VM of that name that already exists is returned as it
// is (a restarted simulator keeps its VMs and their disks).
func (s *Sim) AddVM(ctx context.Context, spec VMSpec) (VMInfo, error) {
	if err := spec.Validate(); err != nil {
		return VMInfo{}, fmt.Errorf("xapisim: add VM: %w", err)
	}
	s.mu.Lock()
	if v := s.m.vmByName(spec.Name); v != nil {
		info := s.vmInfoLocked(v)
		s.mu.Unlock()
		return info, nil
	}
	s.mu.Unlock()

	dir := filepath.Join("vms", spec.Name)
	var sizes []int64
	var files []string
	for i, src := range spec.Files {
		if err := ctx.Err(); err != nil {
			return VMInfo{}, err
		}
		st, err := os.Stat(src)
		if err != nil {
			return VMInfo{}, fmt.Errorf("xapisim: add VM %s: %w", spec.Name, err)
		}
		size := roundUp(st.Size(), 512)
		rel := filepath.Join(dir, "disk-"+strconv.Itoa(i)+".raw")
		if err := simkit.CopyDisk(s.abs(rel), src, size); err != nil {
			return VMInfo{}, fmt.Errorf("xapisim: add VM %s: %w", spec.Name, err)
		}
		sizes, files = append(sizes, size), append(files, rel)
	}
	for _, n := range spec.DiskSizes {
		i := len(files)
		size := roundUp(n, 512)
		rel := filepath.Join(dir, "disk-"+strconv.Itoa(i)+".raw")
		if err := simkit.BlankDisk(s.abs(rel), size); err != nil {
			return VMInfo{}, fmt.Errorf("xapisim: add VM %s: %w", spec.Name, err)
		}
		sizes, files = append(sizes, size), append(files, rel)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m
	vcpus, mem := spec.VCPUs, spec.MemoryBytes
	if vcpus == 0 {
		vcpus = 2
	}
	if mem == 0 {
		mem = 1 << 30
	}
	fw := spec.Firmware
	if fw == "" {
		fw = "bios"
	}
	platform := map[string]string{"timeoffset": "0", "nx": "true", "acpi": "1", "apic": "true", "pae": "true",
		"hpet": "true", "viridian": "false", "vga": "std", "videoram": "8", "device-model": "qemu-upstream-compat"}
	if fw == "uefi" {
		platform["device-model"] = "qemu-upstream-uefi"
		platform["secureboot"] = strconv.FormatBool(spec.SecureBoot)
	}
	v := &vmRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), NameLabel: spec.Name, PowerState: "Running",
		VCPUsMax: vcpus, VCPUsAtStartup: vcpus, MemoryStaticMax: mem, MemoryDynMax: mem, MemoryDynMin: mem,
		MemoryStaticMin: min(mem, 512<<20), HVMBootPolicy: "BIOS order",
		HVMBootParams: map[string]string{"order": "cd", "firmware": fw}, Platform: platform,
		OtherConfig: map[string]string{}, Tags: []string{}, DomainType: "hvm", UserVersion: 1,
		Quiesce: spec.Quiesce, Dir: dir}
	if spec.Halted {
		v.PowerState = "Halted"
	}
	if !spec.NoGuestTools {
		g := &metricsRec{Ref: newRef(), UUID: simkit.NewUUID(),
			OS:      map[string]string{"name": "Debian GNU/Linux 12 (bookworm)", "distro": "debian", "major": "12", "minor": "0", "uname": "6.1.0-18-amd64"},
			Drivers: map[string]string{"major": "8", "minor": "3", "micro": "0", "build": "1"},
			Other:   map[string]string{"feature-shutdown": "1", "feature-suspend": "1", "has-vendor-device": "0", "platform-feature-multiprocessor-suspend": "1"}}
		if spec.Quiesce {
			g.Other["feature-quiesce"] = "1"
			g.Other["feature-snapshot"] = "1"
		}
		m.Metrics[g.Ref] = g
		v.GuestMetrics = g.Ref
	}
	m.VMs[v.Ref] = v
	for i, rel := range files {
		d := &vdiRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), NameLabel: fmt.Sprintf("%s %d", spec.Name, i),
			NameDescription: "Created by xapisim", SR: m.SR.Ref, VirtualSize: sizes[i], Type: "user",
			OtherConfig: map[string]string{}, File: rel}
		m.VDIs[d.Ref] = d
		b := &vbdRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), VM: v.Ref, VDI: d.Ref, Userdevice: strconv.Itoa(i),
			Bootable: i == 0, Mode: "RW", Type: "Disk", OtherConfig: map[string]string{}}
		m.VBDs[b.Ref] = b
	}
	cd := &vbdRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), VM: v.Ref, Userdevice: strconv.Itoa(max(3, len(files))),
		Mode: "RO", Type: "CD", Empty: true, OtherConfig: map[string]string{}}
	m.VBDs[cd.Ref] = cd
	vif := &vifRec{Ref: newRef(), UUID: simkit.NewUUID(), Seq: m.next(), Device: "0", Network: m.Networks[0].Ref, VM: v.Ref,
		MAC: newMAC(), MTU: 1500, MACAutogenerated: true, OtherConfig: map[string]string{}}
	m.VIFs[vif.Ref] = vif
	s.updateSRSizeLocked()
	s.save()
	return s.vmInfoLocked(v), nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// newMAC returns a random locally administered unicast MAC address.
func newMAC() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[0] = b[0]&0xfc | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

func (s *Sim) vmInfoLocked(v *vmRec) VMInfo {
	info := VMInfo{Ref: v.Ref, UUID: v.UUID, Name: v.NameLabel, PowerState: v.PowerState, Disks: []string{}, VDIs: []string{}}
	for _, b := range s.m.vbdsOf(v.Ref) {
		d := s.m.VDIs[b.VDI]
		if b.Type != "Disk" || d == nil {
			continue
		}
		p := ""
		if d.File != "" {
			p = s.abs(d.File)
		}
		info.Disks, info.VDIs = append(info.Disks, p), append(info.VDIs, d.Ref)
	}
	return info
}

// VMs lists the VMs (not snapshots, templates or the control domain) in
// creation order.
func (s *Sim) VMs() []VMInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []VMInfo
	for _, v := range s.m.sortedVMs() {
		if !v.IsASnapshot && !v.IsATemplate && !v.IsControlDomain {
			out = append(out, s.vmInfoLocked(v))
		}
	}
	return out
}

// VM finds a VM or snapshot by name label (VMs only), uuid or ref.
func (s *Sim) VM(id string) (VMInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.vmByNameOrUUID(id)
	if v == nil {
		return VMInfo{}, fmt.Errorf("xapisim: VM %q: %w", id, ErrNotFound)
	}
	return s.vmInfoLocked(v), nil
}

// ErrNotFound is returned by Sim methods for unknown objects.
var ErrNotFound = errors.New("not found")

// DiskFile is the file of a VM's disk (its userdevice order, from 0).
func (s *Sim) DiskFile(vm string, disk int) (string, error) {
	info, err := s.VM(vm)
	if err != nil {
		return "", err
	}
	if disk < 0 || disk >= len(info.Disks) || info.Disks[disk] == "" {
		return "", fmt.Errorf("xapisim: VM %s has no disk %d: %w", vm, disk, ErrNotFound)
	}
	return info.Disks[disk], nil
}

// Write writes data into a VM's disk at off, as the guest would. A
// snapshot being copied at the time sees all of it or none of it.
func (s *Sim) Write(vm string, disk int, off int64, data []byte) error {
	p, err := s.DiskFile(vm, disk)
	if err != nil {
		return err
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("xapisim: write %s: %w", p, err)
	}
	if off < 0 || off+int64(len(data)) > st.Size() {
		return fmt.Errorf("xapisim: write %d bytes at %d: outside the disk (%d bytes)", len(data), off, st.Size())
	}
	s.diskMu.Lock()
	defer s.diskMu.Unlock()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("xapisim: write: %w", err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return fmt.Errorf("xapisim: write %s: %w", p, err)
	}
	return f.Close()
}

// SetQuiesce turns the quiesce capability of a VM's guest tools on or off
// (guest metrics other:feature-quiesce follows).
func (s *Sim) SetQuiesce(vm string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.vmByNameOrUUID(vm)
	if v == nil {
		return fmt.Errorf("xapisim: VM %q: %w", vm, ErrNotFound)
	}
	v.Quiesce = on
	if g := s.m.Metrics[v.GuestMetrics]; g != nil {
		if on {
			g.Other["feature-quiesce"] = "1"
		} else {
			delete(g.Other, "feature-quiesce")
		}
	}
	s.save()
	return nil
}

// ---------- VM, VBD and VIF messages (callers hold s.mu) ----------

// requireFields reports the first field of names missing from rec.
func requireFields(method string, rec map[string]any, names ...string) error {
	for _, n := range names {
		if _, ok := rec[n]; !ok {
			return xerr("FIELD_TYPE_ERROR", n, "missing from the record of "+method)
		}
	}
	return nil
}

func vmCreate(c *call) (any, error) {
	rec, err := c.record(0)
	if err != nil {
		return nil, err
	}
	if err := requireFields(c.name, rec, "name_label", "name_description", "user_version", "is_a_template", "affinity",
		"memory_static_max", "memory_dynamic_max", "memory_dynamic_min", "memory_static_min",
		"VCPUs_max", "VCPUs_at_startup", "VCPUs_params", "actions_after_shutdown", "actions_after_reboot",
		"actions_after_crash", "PV_bootloader", "PV_kernel", "PV_ramdisk", "PV_args", "PV_bootloader_args",
		"PV_legacy_args", "HVM_boot_policy", "HVM_boot_params", "platform", "PCI_bus", "other_config", "recommendations"); err != nil {
		return nil, err
	}
	v := &vmRec{Ref: newRef(), UUID: simkit.NewUUID(), PowerState: "Halted"}
	var errs []error
	get := func(dst *string, k, def string) {
		x, err := fieldStr(rec, k, def)
		errs = append(errs, err)
		*dst = x
	}
	geti := func(dst *int64, k string) {
		x, err := fieldInt(rec, k, 0)
		errs = append(errs, err)
		*dst = x
	}
	getm := func(dst *map[string]string, k string) {
		x, err := fieldMap(rec, k)
		errs = append(errs, err)
		*dst = x
	}
	get(&v.NameLabel, "name_label", "")
	get(&v.NameDescription, "name_description", "")
	get(&v.HVMBootPolicy, "HVM_boot_policy", "")
	get(&v.DomainType, "domain_type", "hvm")
	get(&v.PVBootloader, "PV_bootloader", "")
	geti(&v.MemoryStaticMax, "memory_static_max")
	geti(&v.MemoryDynMax, "memory_dynamic_max")
	geti(&v.MemoryDynMin, "memory_dynamic_min")
	geti(&v.MemoryStaticMin, "memory_static_min")
	geti(&v.VCPUsMax, "VCPUs_max")
	geti(&v.VCPUsAtStartup, "VCPUs_at_startup")
	geti(&v.UserVersion, "user_version")
	getm(&v.HVMBootParams, "HVM_boot_params")
	getm(&v.Platform, "platform")
	getm(&v.OtherConfig, "other_config")
	tmpl, err := fieldBool(rec, "is_a_template", false)
	errs = append(errs, err)
	v.IsATemplate = tmpl
	tags, err := fieldStrings(rec, "tags")
	errs = append(errs, err)
	v.Tags = tags
	if err := errors.Join(errs...); err != nil {
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	}
	if !(v.MemoryStaticMin <= v.MemoryDynMin && v.MemoryDynMin <= v.MemoryDynMax && v.MemoryDynMax <= v.MemoryStaticMax) || v.MemoryStaticMax <= 0 {
		return nil, xerr("MEMORY_CONSTRAINT_VIOLATION", "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max")
	}
	if v.VCPUsMax < 1 || v.VCPUsAtStartup < 1 || v.VCPUsAtStartup > v.VCPUsMax {
		return nil, xerr("VALUE_NOT_SUPPORTED", "VCPUs_at_startup", strconv.FormatInt(v.VCPUsAtStartup, 10), "must be between 1 and VCPUs_max")
	}
	switch v.DomainType {
	case "hvm", "pv", "pvh", "pv_in_pvh":
	default:
		return nil, xerr("VALUE_NOT_SUPPORTED", "domain_type", v.DomainType, "unknown domain type")
	}
	v.Seq = c.s.m.next()
	c.s.m.VMs[v.Ref] = v
	return v.Ref, nil
}

// ordinaryVM refuses snapshots, templates and the control domain.
func ordinaryVM(v *vmRec, op string) error {
	switch {
	case v.IsControlDomain:
		return xerr("OPERATION_NOT_ALLOWED", "the control domain cannot be "+op)
	case v.IsASnapshot:
		return xerr("OPERATION_NOT_ALLOWED", "VM "+v.Ref+" is a snapshot")
	case v.IsATemplate:
		return xerr("VM_IS_TEMPLATE", v.Ref, op)
	}
	return nil
}

func badPower(v *vmRec, want string) *xenError {
	return xerr("VM_BAD_POWER_STATE", v.Ref, want, strings.ToLower(v.PowerState))
}

func vmDestroy(c *call) (any, error) {
	v, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	if v.IsControlDomain {
		return nil, xerr("OPERATION_NOT_ALLOWED", "the control domain cannot be destroyed")
	}
	if v.PowerState != "Halted" {
		return nil, badPower(v, "halted")
	}
	m := c.s.m
	for ref, b := range m.VBDs {
		if b.VM == v.Ref {
			delete(m.VBDs, ref)
		}
	}
	for ref, f := range m.VIFs {
		if f.VM == v.Ref {
			delete(m.VIFs, ref)
		}
	}
	if v.GuestMetrics != "" {
		delete(m.Metrics, v.GuestMetrics)
	}
	delete(m.VMs, v.Ref)
	return nil, nil
}

func vmStart(c *call) (any, error) {
	v, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	paused, err := c.boolean(1)
	if err != nil {
		return nil, err
	}
	if _, err := c.boolean(2); err != nil {
		return nil, err
	}
	if err := ordinaryVM(v, "started"); err != nil {
		return nil, err
	}
	if v.PowerState != "Halted" {
		return nil, badPower(v, "halted")
	}
	v.PowerState = "Running"
	if paused {
		v.PowerState = "Paused"
	}
	return nil, nil
}

func vmShutdown(c *call) (any, error) {
	v, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	if err := ordinaryVM(v, "shut down"); err != nil {
		return nil, err
	}
	if v.PowerState != "Running" && v.PowerState != "Paused" {
		return nil, badPower(v, "running")
	}
	v.PowerState = "Halted"
	return nil, nil
}

func vbdCreate(c *call) (any, error) {
	rec, err := c.record(0)
	if err != nil {
		return nil, err
	}
	if err := requireFields(c.name, rec, "VM", "VDI", "userdevice", "bootable", "mode", "type", "empty",
		"other_config", "qos_algorithm_type", "qos_algorithm_params"); err != nil {
		return nil, err
	}
	b := &vbdRec{Ref: newRef(), UUID: simkit.NewUUID()}
	var errs []error
	str := func(k string) string { x, err := fieldStr(rec, k, ""); errs = append(errs, err); return x }
	boo := func(k string) bool { x, err := fieldBool(rec, k, false); errs = append(errs, err); return x }
	b.VM, b.VDI, b.Userdevice, b.Mode, b.Type = str("VM"), str("VDI"), str("userdevice"), str("mode"), str("type")
	b.Bootable, b.Empty = boo("bootable"), boo("empty")
	oc, err := fieldMap(rec, "other_config")
	errs = append(errs, err)
	b.OtherConfig = oc
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	m := c.s.m
	v := m.VMs[b.VM]
	if v == nil {
		return nil, handleInvalid("VM", b.VM)
	}
	if b.VDI == nullRef {
		b.VDI = ""
	}
	if b.VDI != "" {
		d := m.VDIs[b.VDI]
		if d == nil {
			return nil, handleInvalid("VDI", b.VDI)
		}
		if d.Type == "cbt_metadata" {
			return nil, xerr("VDI_INCOMPATIBLE_TYPE", d.Ref, d.Type)
		}
	} else if !b.Empty || b.Type == "Disk" {
		return nil, xerr("VBD_NOT_EMPTY", b.Ref)
	}
	switch b.Mode {
	case "RO", "RW":
	default:
		return nil, xerr("VALUE_NOT_SUPPORTED", "mode", b.Mode, "want RO or RW")
	}
	switch b.Type {
	case "Disk", "CD", "Floppy":
	default:
		return nil, xerr("VALUE_NOT_SUPPORTED", "type", b.Type, "want Disk, CD or Floppy")
	}
	used := map[string]bool{}
	for _, x := range m.vbdsOf(v.Ref) {
		used[x.Userdevice] = true
	}
	if b.Userdevice == "autodetect" {
		for i := 0; ; i++ {
			if !used[strconv.Itoa(i)] {
				b.Userdevice = strconv.Itoa(i)
				break
			}
		}
	}
	if n, err := strconv.Atoi(b.Userdevice); err != nil || n < 0 || n > 254 {
		return nil, xerr("VALUE_NOT_SUPPORTED", "userdevice", b.Userdevice, "not a device number")
	}
	if used[b.Userdevice] {
		return nil, xerr("DEVICE_ALREADY_EXISTS", b.Userdevice)
	}
	b.Seq = m.next()
	m.VBDs[b.Ref] = b
	return b.Ref, nil
}

func vbdDestroy(c *call) (any, error) {
	ref, err := c.str(0)
	if err != nil {
		return nil, err
	}
	b := c.s.m.VBDs[ref]
	if b == nil {
		return nil, handleInvalid("VBD", ref)
	}
	if c.s.vbdAttached(b) && !b.Empty {
		return nil, xerr("OPERATION_NOT_ALLOWED", fmt.Sprintf("VBD '%s' still attached to '%s'", b.UUID, c.s.m.VMs[b.VM].UUID))
	}
	delete(c.s.m.VBDs, ref)
	return nil, nil
}

func vifCreate(c *call) (any, error) {
	rec, err := c.record(0)
	if err != nil {
		return nil, err
	}
	if err := requireFields(c.name, rec, "device", "network", "VM", "MAC", "MTU", "other_config",
		"qos_algorithm_type", "qos_algorithm_params"); err != nil {
		return nil, err
	}
	f := &vifRec{Ref: newRef(), UUID: simkit.NewUUID()}
	var errs []error
	str := func(k string) string { x, err := fieldStr(rec, k, ""); errs = append(errs, err); return x }
	f.Device, f.Network, f.VM, f.MAC = str("device"), str("network"), str("VM"), str("MAC")
	f.MTU, err = fieldInt(rec, "MTU", 1500)
	errs = append(errs, err)
	f.OtherConfig, err = fieldMap(rec, "other_config")
	errs = append(errs, err)
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	m := c.s.m
	if m.VMs[f.VM] == nil {
		return nil, handleInvalid("VM", f.VM)
	}
	if m.network(f.Network) == nil {
		return nil, handleInvalid("network", f.Network)
	}
	for _, x := range m.vifsOf(f.VM) {
		if x.Device == f.Device {
			return nil, xerr("DEVICE_ALREADY_EXISTS", f.Device)
		}
	}
	if n, err := strconv.Atoi(f.Device); err != nil || n < 0 {
		return nil, xerr("VALUE_NOT_SUPPORTED", "device", f.Device, "not a device number")
	}
	if f.MAC == "" {
		f.MAC, f.MACAutogenerated = newMAC(), true
	} else if !validMAC(f.MAC) {
		return nil, xerr("MAC_INVALID", f.MAC)
	}
	if f.MTU == 0 {
		f.MTU = 1500
	}
	f.Seq = m.next()
	m.VIFs[f.Ref] = f
	return f.Ref, nil
}

func validMAC(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return false
	}
	for _, p := range parts {
		if len(p) != 2 {
			return false
		}
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return false
		}
	}
	return true
}

func vifDestroy(c *call) (any, error) {
	ref, err := c.str(0)
	if err != nil {
		return nil, err
	}
	if c.s.m.VIFs[ref] == nil {
		return nil, handleInvalid("VIF", ref)
	}
	delete(c.s.m.VIFs, ref)
	return nil, nil
}
