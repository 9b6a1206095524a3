package xapisim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/ahvfs/ahvfs/internal/simkit"
)

// stateVersion is the version of DIR/state.json; New refuses a newer one.
const stateVersion = 1

// nullRef is XenAPI's null reference.
const nullRef = "OpaqueRef:NULL"

// model is the simulated pool's objects, persisted as DIR/state.json after
// every mutation. Sessions and tasks are not part of it: like xapi's, they
// do not survive a restart. All access is under Sim.mu.
type model struct {
	Version  int                    `json:"version"`
	Pool     *poolRec               `json:"pool"`
	Host     *hostRec               `json:"host"`
	SR       *srRec                 `json:"sr"`
	Networks []*networkRec          `json:"networks"`
	VMs      map[string]*vmRec      `json:"vms"`
	VBDs     map[string]*vbdRec     `json:"vbds"`
	VDIs     map[string]*vdiRec     `json:"vdis"`
	VIFs     map[string]*vifRec     `json:"vifs"`
	Metrics  map[string]*metricsRec `json:"guest_metrics"`
	// Seq orders objects by creation (lists and inventories).
	Seq int64 `json:"seq"`
}

type poolRec struct {
	Ref       string `json:"ref"`
	UUID      string `json:"uuid"`
	NameLabel string `json:"name_label"`
}

type hostRec struct {
	Ref       string `json:"ref"`
	UUID      string `json:"uuid"`
	NameLabel string `json:"name_label"`
}

type srRec struct {
	Ref          string `json:"ref"`
	UUID         string `json:"uuid"`
	NameLabel    string `json:"name_label"`
	PhysicalSize int64  `json:"physical_size"`
}

type networkRec struct {
	Ref       string `json:"ref"`
	UUID      string `json:"uuid"`
	NameLabel string `json:"name_label"`
	Bridge    string `json:"bridge"`
}

// vmRec is a VM, a snapshot (IsASnapshot), a template or the control
// domain.
type vmRec struct {
	Ref             string            `json:"ref"`
	UUID            string            `json:"uuid"`
	Seq             int64             `json:"seq"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	PowerState      string            `json:"power_state"`
	IsATemplate     bool              `json:"is_a_template,omitempty"`
	IsControlDomain bool              `json:"is_control_domain,omitempty"`
	IsASnapshot     bool              `json:"is_a_snapshot,omitempty"`
	SnapshotOf      string            `json:"snapshot_of,omitempty"`
	SnapshotTime    time.Time         `json:"snapshot_time,omitzero"`
	VCPUsMax        int64             `json:"vcpus_max"`
	VCPUsAtStartup  int64             `json:"vcpus_at_startup"`
	MemoryStaticMax int64             `json:"memory_static_max"`
	MemoryDynMax    int64             `json:"memory_dynamic_max"`
	MemoryDynMin    int64             `json:"memory_dynamic_min"`
	MemoryStaticMin int64             `json:"memory_static_min"`
	HVMBootPolicy   string            `json:"hvm_boot_policy"`
	HVMBootParams   map[string]string `json:"hvm_boot_params"`
	Platform        map[string]string `json:"platform"`
	OtherConfig     map[string]string `json:"other_config"`
	Tags            []string          `json:"tags"`
	DomainType      string            `json:"domain_type"`
	PVBootloader    string            `json:"pv_bootloader,omitempty"`
	GuestMetrics    string            `json:"guest_metrics,omitempty"`
	UserVersion     int64             `json:"user_version"`
	// Quiesce: the guest tools can freeze the guest (VSS), so
	// VM.snapshot_with_quiesce works while the VM runs.
	Quiesce bool `json:"quiesce,omitempty"`
	// Dir is where --vm disks live (vms/<name>), relative to the state
	// directory; empty for other VMs.
	Dir string `json:"dir,omitempty"`
}

type vbdRec struct {
	Ref         string            `json:"ref"`
	UUID        string            `json:"uuid"`
	Seq         int64             `json:"seq"`
	VM          string            `json:"vm"`
	VDI         string            `json:"vdi"`
	Userdevice  string            `json:"userdevice"`
	Bootable    bool              `json:"bootable"`
	Mode        string            `json:"mode"`
	Type        string            `json:"type"`
	Empty       bool              `json:"empty"`
	OtherConfig map[string]string `json:"other_config"`
}

// vdiRec is a virtual disk. File (relative to the state directory) holds
// its data; it is empty once the data is destroyed (type cbt_metadata).
// CBT metadata: a snapshot VDI taken while its disk had CBT enabled keeps
// the hashes of its 64 KiB blocks in CBTFile, and names the live disk
// (CBTOf) and the CBT epoch it belongs to; list_changed_blocks compares
// two VDIs of one live disk and epoch.
type vdiRec struct {
	Ref             string            `json:"ref"`
	UUID            string            `json:"uuid"`
	Seq             int64             `json:"seq"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	SR              string            `json:"sr"`
	VirtualSize     int64             `json:"virtual_size"`
	Type            string            `json:"type"`
	Sharable        bool              `json:"sharable,omitempty"`
	ReadOnly        bool              `json:"read_only,omitempty"`
	CBTEnabled      bool              `json:"cbt_enabled,omitempty"`
	IsASnapshot     bool              `json:"is_a_snapshot,omitempty"`
	SnapshotOf      string            `json:"snapshot_of,omitempty"`
	SnapshotTime    time.Time         `json:"snapshot_time,omitzero"`
	OtherConfig     map[string]string `json:"other_config"`
	File            string            `json:"file,omitempty"`
	// CBTEpoch counts enable_cbt calls on a live disk; a snapshot keeps
	// the epoch of its disk at snapshot time.
	CBTEpoch int64  `json:"cbt_epoch,omitempty"`
	CBTOf    string `json:"cbt_of,omitempty"`
	CBTFile  string `json:"cbt_file,omitempty"`
}

type vifRec struct {
	Ref              string            `json:"ref"`
	UUID             string            `json:"uuid"`
	Seq              int64             `json:"seq"`
	Device           string            `json:"device"`
	Network          string            `json:"network"`
	VM               string            `json:"vm"`
	MAC              string            `json:"mac"`
	MTU              int64             `json:"mtu"`
	MACAutogenerated bool              `json:"mac_autogenerated"`
	OtherConfig      map[string]string `json:"other_config"`
}

type metricsRec struct {
	Ref     string            `json:"ref"`
	UUID    string            `json:"uuid"`
	OS      map[string]string `json:"os_version"`
	Drivers map[string]string `json:"pv_drivers_version"`
	Other   map[string]string `json:"other"`
}

func newModel() *model {
	m := &model{
		Version: stateVersion,
		Pool:    &poolRec{Ref: newRef(), UUID: simkit.NewUUID()},
		Host:    &hostRec{Ref: newRef(), UUID: simkit.NewUUID(), NameLabel: "xapisim"},
		SR:      &srRec{Ref: newRef(), UUID: simkit.NewUUID(), NameLabel: "Local storage", PhysicalSize: 1 << 30},
		Networks: []*networkRec{
			{Ref: newRef(), UUID: simkit.NewUUID(), NameLabel: "Pool-wide network associated with eth0", Bridge: "xenbr0"},
			{Ref: newRef(), UUID: simkit.NewUUID(), NameLabel: "vlan20", Bridge: "xapi1"},
		},
		VMs:     map[string]*vmRec{},
		VBDs:    map[string]*vbdRec{},
		VDIs:    map[string]*vdiRec{},
		VIFs:    map[string]*vifRec{},
		Metrics: map[string]*metricsRec{},
	}
	// The control domain and one template, as every host lists them:
	// clients must filter them out.
	dom0 := &vmRec{Ref: newRef(), UUID: simkit.NewUUID(), NameLabel: "Control domain on host: xapisim",
		PowerState: "Running", IsControlDomain: true, VCPUsMax: 2, VCPUsAtStartup: 2,
		MemoryStaticMax: 2 << 30, MemoryDynMax: 2 << 30, MemoryDynMin: 2 << 30, MemoryStaticMin: 2 << 30,
		DomainType: "pv", HVMBootParams: map[string]string{}, Platform: map[string]string{}, OtherConfig: map[string]string{}}
	tmpl := &vmRec{Ref: newRef(), UUID: simkit.NewUUID(), NameLabel: "Other install media", PowerState: "Halted",
		IsATemplate: true, VCPUsMax: 1, VCPUsAtStartup: 1, MemoryStaticMax: 256 << 20, MemoryDynMax: 256 << 20,
		MemoryDynMin: 256 << 20, MemoryStaticMin: 256 << 20, DomainType: "hvm", HVMBootPolicy: "BIOS order",
		HVMBootParams: map[string]string{"order": "cdn"}, Platform: map[string]string{}, OtherConfig: map[string]string{"default_template": "true"}}
	for _, v := range []*vmRec{dom0, tmpl} {
		v.Seq = m.next()
		m.VMs[v.Ref] = v
	}
	return m
}

func (m *model) next() int64 { m.Seq++; return m.Seq }

// save writes the model to DIR/state.json atomically. Caller holds s.mu.
func (s *Sim) save() {
	b, err := json.MarshalIndent(s.m, "", " ")
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(s.dir, "state.json"), b, 0o600)
	}
	if err != nil {
		s.logf("save state: %v", err)
	}
}

func loadModel(dir string) (*model, error) {
	p := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var m model
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", p, err)
	}
	if m.Version > stateVersion {
		return nil, fmt.Errorf("%s: version %d is newer than this simulator's %d", p, m.Version, stateVersion)
	}
	if m.Pool == nil || m.Host == nil || m.SR == nil || len(m.Networks) == 0 {
		return nil, errors.New(p + ": pool, host, SR or networks missing")
	}
	if m.VMs == nil {
		m.VMs = map[string]*vmRec{}
	}
	if m.VBDs == nil {
		m.VBDs = map[string]*vbdRec{}
	}
	if m.VDIs == nil {
		m.VDIs = map[string]*vdiRec{}
	}
	if m.VIFs == nil {
		m.VIFs = map[string]*vifRec{}
	}
	if m.Metrics == nil {
		m.Metrics = map[string]*metricsRec{}
	}
	m.Version = stateVersion
	return &m, nil
}

// bySeq returns the values of a map ordered by creation.
func bySeq[T any](mp map[string]*T, seq func(*T) int64) []*T {
	out := make([]*T, 0, len(mp))
	for _, v := range mp {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *T) int { return int(seq(a) - seq(b)) })
	return out
}

func (m *model) sortedVMs() []*vmRec   { return bySeq(m.VMs, func(v *vmRec) int64 { return v.Seq }) }
func (m *model) sortedVDIs() []*vdiRec { return bySeq(m.VDIs, func(v *vdiRec) int64 { return v.Seq }) }
func (m *model) sortedVBDs() []*vbdRec { return bySeq(m.VBDs, func(v *vbdRec) int64 { return v.Seq }) }
func (m *model) sortedVIFs() []*vifRec { return bySeq(m.VIFs, func(v *vifRec) int64 { return v.Seq }) }

// vbdsOf returns the VBDs of a VM in userdevice order.
func (m *model) vbdsOf(vm string) []*vbdRec {
	var out []*vbdRec
	for _, b := range m.sortedVBDs() {
		if b.VM == vm {
			out = append(out, b)
		}
	}
	slices.SortStableFunc(out, func(a, b *vbdRec) int { return userdeviceCmp(a.Userdevice, b.Userdevice) })
	return out
}

func userdeviceCmp(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func (m *model) vifsOf(vm string) []*vifRec {
	var out []*vifRec
	for _, v := range m.sortedVIFs() {
		if v.VM == vm {
			out = append(out, v)
		}
	}
	return out
}

func (m *model) vmByName(name string) *vmRec {
	for _, v := range m.sortedVMs() {
		if v.NameLabel == name && !v.IsASnapshot && !v.IsATemplate && !v.IsControlDomain {
			return v
		}
	}
	return nil
}

// vmByNameOrUUID finds a (non-snapshot) VM by name label, or any VM by
// uuid or ref.
func (m *model) vmByNameOrUUID(id string) *vmRec {
	if v := m.VMs[id]; v != nil {
		return v
	}
	for _, v := range m.VMs {
		if v.UUID == id {
			return v
		}
	}
	return m.vmByName(id)
}

func (m *model) vdiByUUID(id string) *vdiRec {
	for _, v := range m.VDIs {
		if v.UUID == id {
			return v
		}
	}
	return nil
}

func (m *model) network(ref string) *networkRec {
	for _, n := range m.Networks {
		if n.Ref == ref {
			return n
		}
	}
	return nil
}

// attached reports whether a VDI is plugged into a running VM.
func (m *model) attached(vdi string) bool {
	for _, b := range m.VBDs {
		if b.VDI != vdi {
			continue
		}
		if v := m.VMs[b.VM]; v != nil && !v.IsASnapshot && v.PowerState == "Running" {
			return true
		}
	}
	return false
}
