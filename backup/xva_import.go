package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/xva"
)

// ImportXVAOptions configure ImportXVA. Zero values mean the default.
type ImportXVAOptions struct {
	// VM names the restore point's VM (default: the XVA's VM name).
	VM string
	// Time of the restore point (default: the XVA VM's snapshot time,
	// else now); moved on by a second while a point of that VM and
	// second exists.
	Time time.Time
	// LockUntil, when set, locks the restore point.
	LockUntil time.Time
	// Progress, default none.
	Progress Progress
}

// ImportXVA stores an XVA export (what `xe vm-export` writes, or a pool's
// /export) as a restore point of level import, in one pass over r with
// nothing staged: each disk from its blocks, checked against their
// checksums, the blocks left out as zeros; the VM's configuration record
// from ova.xml, marked XCP-ng so that a restore to a pool recreates the
// VM. A malformed XVA is an error that names the member at fault, and
// nothing is committed.
func ImportXVA(ctx context.Context, repo *engine.Repository, r io.Reader, o ImportXVAOptions) (*engine.RestorePoint, error) {
	if o.Progress == nil {
		o.Progress = noProgress{}
	}
	xr := xva.NewReader(r)
	h, err := xr.Header()
	if err != nil {
		return nil, fmt.Errorf("XVA: %w", err)
	}
	disks, err := h.Disks()
	if err != nil {
		return nil, fmt.Errorf("XVA: %w", err)
	}
	if len(disks) == 0 {
		return nil, errors.New("XVA: its VM has no disk")
	}
	cfg, when, err := xvaConfig(h, disks)
	if err != nil {
		return nil, fmt.Errorf("XVA: %w", err)
	}
	if o.VM == "" {
		o.VM = cfg.Name
	}
	if err := engine.ValidateVMName(o.VM); err != nil {
		return nil, fmt.Errorf("VM name %q: %w", o.VM, err)
	}
	if o.Time.IsZero() {
		o.Time = when
	}
	raw, _ := json.Marshal(cfg)
	var w *engine.RestorePointWriter
	for range 5 {
		w, err = repo.NewRestorePoint(ctx, engine.RestorePointSpec{VM: o.VM, VMUUID: cfg.UUID, Time: o.Time, Level: engine.LevelImport,
			Config: raw, LockUntil: o.LockUntil, Meta: map[string]string{"hypervisor": clusterjob.HypervisorXen, "source": "xva"}})
		if !errors.Is(err, engine.ErrExists) {
			break
		}
		o.Time = o.Time.Add(time.Second)
	}
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	index := map[string]int{}
	for i, d := range disks {
		index[d.ID] = i
	}
	err = streamXVA(xr, len(disks), func(id string) (int, bool) { i, ok := index[id]; return i, ok },
		func(i int) (*blockSink, error) {
			d := disks[i]
			dw, err := w.AddDisk(engine.DiskSpec{Index: i, Bus: "xvd", BusIndex: atoiOr(d.Userdevice, i), UUID: vdiUUID(d),
				Size: d.VirtualSize})
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("disk-%d", i)
			return newBlockSink(ctx, dw, cbt.Zero, nil, o.Progress.DiskStart(o.VM, name, d.VirtualSize, d.VirtualSize)), nil
		},
		func(i int, _ cbt.Stats, err error) { o.Progress.DiskDone(o.VM, fmt.Sprintf("disk-%d", i), err) },
		func(i int) string { return "xvd." + disks[i].Userdevice })
	if err != nil {
		return nil, fmt.Errorf("XVA: %w", err)
	}
	return w.Commit(ctx)
}

func vdiUUID(d xva.Disk) string {
	if d.VDI == nil {
		return ""
	}
	s, _ := d.VDI.Fields["uuid"].(string)
	return s
}

// xvaConfig builds the configuration record of the XVA's VM, and its time
// (snapshot time, else now).
func xvaConfig(h *xva.Header, disks []xva.Disk) (clusterjob.VMConfig, time.Time, error) {
	vm, err := h.VM()
	if err != nil {
		return clusterjob.VMConfig{}, time.Time{}, err
	}
	f := vm.Fields
	cfg := clusterjob.VMConfig{Version: clusterjob.VMConfigVersion, UUID: str(f["uuid"]), Name: str(f["name_label"]),
		Description: str(f["name_description"]), VCPUs: int(num(f["VCPUs_at_startup"])), MemoryBytes: num(f["memory_static_max"]),
		BootType: "LEGACY", PowerState: "OFF", API: string(clusterjob.APIXen), Hypervisor: clusterjob.HypervisorXen,
		Disks: []clusterjob.DiskConfig{}, NICs: []clusterjob.NICConfig{}}
	cfg.NumSockets, cfg.CoresPerSocket = max(cfg.VCPUs, 1), 1
	platform, boot := strMap(f["platform"]), strMap(f["HVM_boot_params"])
	if cps, _ := strconv.Atoi(platform["cores-per-socket"]); cps > 0 && cfg.VCPUs%cps == 0 {
		cfg.CoresPerSocket, cfg.NumSockets = cps, cfg.VCPUs/cps
	}
	if boot["firmware"] == "uefi" {
		cfg.BootType = "UEFI"
		if platform["secureboot"] == "true" {
			cfg.BootType = "SECURE_BOOT"
		}
	}
	x := &clusterjob.XenConfig{DomainType: str(f["domain_type"]), HVMBootPolicy: str(f["HVM_boot_policy"]), HVMBootParams: boot,
		Platform: platform, VCPUsMax: num(f["VCPUs_max"]), MemoryDynamicMin: num(f["memory_dynamic_min"]),
		MemoryDynamicMax: num(f["memory_dynamic_max"]), MemoryStaticMin: num(f["memory_static_min"]), Strategy: "xva"}
	for i, d := range disks {
		uuid := vdiUUID(d)
		cfg.Disks = append(cfg.Disks, clusterjob.DiskConfig{Disk: i, Bus: "xvd", Index: atoiOr(d.Userdevice, i), SizeBytes: d.VirtualSize, UUID: uuid})
		x.Disks = append(x.Disks, clusterjob.XenDisk{Userdevice: d.Userdevice, Bootable: d.Bootable, VDIUUID: uuid, NameLabel: d.NameLabel})
	}
	vifs, _ := f["VIFs"].([]any)
	for _, ref := range vifs {
		vif := h.Object(str(ref))
		if vif == nil {
			continue
		}
		n := clusterjob.XenNIC{Device: str(vif.Fields["device"]), MAC: str(vif.Fields["MAC"]), MTU: num(vif.Fields["MTU"])}
		if net := h.Object(str(vif.Fields["network"])); net != nil {
			n.NetworkUUID, n.NetworkName = str(net.Fields["uuid"]), str(net.Fields["name_label"])
		}
		x.NICs = append(x.NICs, n)
	}
	sort.SliceStable(x.NICs, func(i, j int) bool { return atoiOr(x.NICs[i].Device, 0) < atoiOr(x.NICs[j].Device, 0) })
	for _, n := range x.NICs {
		cfg.NICs = append(cfg.NICs, clusterjob.NICConfig{SubnetUUID: n.NetworkUUID, SubnetName: n.NetworkName, MAC: n.MAC, IsConnected: true})
	}
	cfg.Xen = x
	when, _ := f["snapshot_time"].(time.Time)
	if when.IsZero() || when.Year() < 2000 {
		when = time.Now()
	}
	return cfg, when.UTC(), nil
}

// str, num and strMap read XML-RPC values of ova.xml (ints arrive as
// decimal strings).
func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	case float64:
		return int64(x)
	}
	return 0
}

func strMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}
