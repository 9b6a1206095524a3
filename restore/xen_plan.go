package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/xapi"
)

// xenPlan is everything RestoreXen validated before the first object is
// created.
type xenPlan struct {
	rp       *engine.RestorePoint
	cfg      *clusterjob.VMConfig
	same     bool   // the restore point is of an XCP-ng VM
	pool     string // its name, else its address
	name     string
	disks    []xenDiskPlan
	nicNames []string
	keptMACs bool
	vm       clusterjob.XenVMSpec // without disks: their VDIs come later
	warnings []string
	original *xapi.VM // the VM --overwrite replaces (nil: none)
}

// xenDiskPlan is where one disk of the restore point goes.
type xenDiskPlan struct {
	place              clusterjob.DiskPlace
	sr                 xapi.SR
	userdevice         string
	bootable, readOnly bool
	label              string // the VDI's name once the VM is complete
}

// xenNIC is one network interface of the record, from either hypervisor.
type xenNIC struct {
	network, networkName string // UUID and name of the network (AHV: subnet)
	mac, model, device   string
	mtu                  int64
}

func makeXenPlan(ctx context.Context, xc *xapi.Client, rp *engine.RestorePoint, o Options) (*xenPlan, error) {
	cfg, err := clusterjob.ConfigOf(rp)
	if err != nil {
		return nil, err
	}
	p := &xenPlan{rp: rp, cfg: cfg, same: cfg.Hypervisor == clusterjob.HypervisorXen, name: cmp.Or(o.Name, cfg.Name)}
	pool, err := readPool(ctx, xc)
	if err != nil {
		return nil, err
	}
	p.pool = pool.name
	if p.pool == "" {
		if u, err := url.Parse(xc.Endpoint()); err == nil {
			p.pool = u.Hostname()
		}
	}
	vms, err := xc.VMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	srs, err := xc.SRs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list SRs: %w", err)
	}
	nets, err := xc.Networks(ctx)
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	ordinary := map[xapi.Ref]xapi.VM{}
	for _, v := range vms {
		if !v.IsATemplate && !v.IsASnapshot && !v.IsControlDomain {
			ordinary[v.Ref] = v
		}
	}
	// The original (overwrite), then a name clash with any other VM.
	errs := p.findOriginal(ordinary, o)
	others := maps.Clone(ordinary)
	if p.original != nil {
		delete(others, p.original.Ref)
	}
	for _, v := range others {
		if v.NameLabel == p.name {
			errs = append(errs, fmt.Errorf("a VM named %q already exists on the pool %s: give %s, or %s to replace the original",
				p.name, p.pool, o.key("--name"), o.key("--overwrite")))
			break
		}
	}
	// Machine.
	if !p.same && cfg.MachineType == "PSERIES" {
		errs = append(errs, errors.New("machine type PSERIES (IBM Power) cannot run on XCP-ng"))
	}
	// Disks and where they go.
	places, err := clusterjob.PlaceDisks(rp, o.Disks)
	switch {
	case err != nil:
		errs = append(errs, err)
	case len(places) == 0:
		errs = append(errs, errors.New("the restore point has no disks"))
	default:
		errs = append(errs, p.placeDisks(places, srs, pool.defaultSR, o)...)
	}
	// Networks: the original's MAC addresses are free for the new VM (the
	// original is off before the new VM can start, and then deleted).
	nics, nerrs := p.mapNICs(ctx, xc, nets, others, o)
	errs = append(errs, nerrs...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.vm = p.vmSpec(o)
	p.vm.NICs = nics
	if !p.same {
		p.warnings = append(p.warnings, p.fromAHVWarnings()...)
	}
	return p, nil
}

// findOriginal sets the VM an overwrite replaces, among the pool's
// ordinary VMs: Options.Replace by UUID; else the restore point's VM by
// UUID (a point of this hypervisor), else by its recorded name (unique).
// No such VM makes the overwrite a plain restore, with a warning.
func (p *xenPlan) findOriginal(vms map[xapi.Ref]xapi.VM, o Options) []error {
	if !o.Overwrite && o.Replace == "" {
		return nil
	}
	uuid := o.Replace
	if uuid == "" && p.same {
		uuid = p.cfg.UUID
	}
	var found []xapi.VM
	for _, v := range vms {
		if uuid != "" && v.UUID == uuid {
			found = append(found, v)
		}
	}
	if o.Replace != "" && len(found) == 0 {
		return []error{fmt.Errorf("the VM %s to replace is not on the pool %s", o.Replace, p.pool)}
	}
	if len(found) == 0 {
		for _, v := range vms {
			if v.NameLabel == p.cfg.Name {
				found = append(found, v)
			}
		}
	}
	switch len(found) {
	case 0:
		p.warnings = append(p.warnings, fmt.Sprintf("%s: no VM %q on the pool %s to replace: restored as a new VM", o.key("--overwrite"), p.cfg.Name, p.pool))
		return nil
	case 1:
	default:
		return []error{fmt.Errorf("%s: several VMs are named %q on the pool %s: name the one to replace with its UUID", o.key("--overwrite"), p.cfg.Name, p.pool)}
	}
	v := found[0]
	if v.PowerState == "Suspended" {
		return []error{fmt.Errorf("the VM %s (%s) to replace is suspended: resume it or shut it down first", v.NameLabel, v.UUID)}
	}
	p.original = &v
	return nil
}

// xenPool is what RestoreXen reads of the pool record.
type xenPool struct {
	name      string
	defaultSR xapi.Ref
}

func readPool(ctx context.Context, xc *xapi.Client) (xenPool, error) {
	var recs map[string]struct {
		NameLabel string   `json:"name_label"`
		DefaultSR xapi.Ref `json:"default_SR"`
	}
	if err := xc.Call(ctx, "pool.get_all_records", &recs); err != nil {
		return xenPool{}, fmt.Errorf("read the pool: %w", err)
	}
	for _, r := range recs { // one per pool
		return xenPool{name: r.NameLabel, defaultSR: r.DefaultSR}, nil
	}
	return xenPool{}, errors.New("read the pool: no pool record")
}

// placeDisks chooses each disk's userdevice, flags, name and SR, and
// checks that every SR has room for its disks.
func (p *xenPlan) placeDisks(places []clusterjob.DiskPlace, srs []xapi.SR, defaultSR xapi.Ref, o Options) []error {
	var errs []error
	var chosen *xapi.SR
	if o.SR != "" {
		sr, err := findSR(srs, o.SR, p.pool)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %w", o.key("--sr"), err))
		}
		chosen = sr
	}
	recorded := map[string]clusterjob.XenDisk{}
	if p.same && p.cfg.Xen != nil {
		for _, d := range p.cfg.Xen.Disks {
			recorded[d.Userdevice] = d
		}
	}
	byRef := map[xapi.Ref]xapi.SR{}
	byUUID := map[string]xapi.SR{}
	for _, s := range srs {
		byRef[s.Ref], byUUID[s.UUID] = s, s
	}
	need := map[xapi.Ref]int64{}
	for i, place := range places {
		d := xenDiskPlan{place: place, userdevice: strconv.Itoa(i), bootable: i == 0}
		rec, ok := recorded[strconv.Itoa(place.Disk.BusIndex)]
		if p.same && isXVD(place.Disk) {
			d.userdevice = strconv.Itoa(place.Disk.BusIndex)
			if ok {
				d.bootable, d.readOnly = rec.Bootable, rec.ReadOnly
			}
		}
		d.label = p.name + " " + d.userdevice
		if ok && rec.NameLabel != "" && p.name == p.cfg.Name {
			d.label = rec.NameLabel
		}
		var found bool
		switch {
		case o.SR != "":
			if chosen != nil {
				d.sr, found = *chosen, true
			}
		case ok && rec.SRUUID != "" && byUUID[rec.SRUUID].UUID != "":
			d.sr, found = byUUID[rec.SRUUID], true
		case !defaultSR.IsNull() && byRef[defaultSR].UUID != "":
			d.sr, found = byRef[defaultSR], true
		default:
			errs = append(errs, fmt.Errorf("%s: the pool %s has no default SR (nor the disk's own): give %s", place.Disk.Name(), p.pool, o.key("--sr")))
		}
		if found {
			need[d.sr.Ref] += place.Disk.Size
		}
		p.disks = append(p.disks, d)
	}
	for ref, n := range need {
		s := byRef[ref]
		if s.PhysicalSize <= 0 {
			continue // the SR does not say
		}
		if free := s.PhysicalSize - s.PhysicalUtilisation; n > free {
			errs = append(errs, fmt.Errorf("SR %s (%s) has %d MiB free; the disks it gets need %d MiB", s.NameLabel, s.UUID, free>>20, n>>20))
		}
	}
	return errs
}

// findSR resolves an SR name (unique on the pool) or UUID that can hold
// disks.
func findSR(srs []xapi.SR, want, pool string) (*xapi.SR, error) {
	var names []string
	var byName []*xapi.SR
	for i := range srs {
		s := &srs[i]
		if s.UUID == want {
			return checkDiskSR(s)
		}
		if s.NameLabel == want {
			byName = append(byName, s)
		}
		names = append(names, s.NameLabel)
	}
	switch len(byName) {
	case 1:
		return checkDiskSR(byName[0])
	case 0:
		return nil, fmt.Errorf("%q: no such SR on the pool %s (SRs: %s)", want, pool, strings.Join(names, ", "))
	}
	var ids []string
	for _, s := range byName {
		ids = append(ids, s.UUID)
	}
	return nil, fmt.Errorf("%q: %d SRs of that name on the pool %s: give the UUID (%s)", want, len(byName), pool, strings.Join(ids, ", "))
}

func checkDiskSR(s *xapi.SR) (*xapi.SR, error) {
	if s.ContentType == "iso" || s.Type == "iso" || s.Type == "udev" {
		return nil, fmt.Errorf("%q: SR of type %s holds no VM disks", s.NameLabel, s.Type)
	}
	return s, nil
}

// nicsOf are the record's network interfaces: an XCP-ng VM's VIFs in
// device order, else the NICs of an AHV VM.
func (p *xenPlan) nicsOf() []xenNIC {
	var out []xenNIC
	if p.same && p.cfg.Xen != nil && len(p.cfg.Xen.NICs) > 0 {
		for _, n := range p.cfg.Xen.NICs {
			out = append(out, xenNIC{network: n.NetworkUUID, networkName: n.NetworkName, mac: n.MAC, device: n.Device, mtu: n.MTU})
		}
		return out
	}
	for i, n := range p.cfg.NICs {
		out = append(out, xenNIC{network: n.SubnetUUID, networkName: n.SubnetName, mac: n.MAC, model: n.Model, device: strconv.Itoa(i)})
	}
	return out
}

// mapNICs puts every NIC on a network of the pool (Options.NetworkMap,
// else the network of the same UUID or name), and keeps its MAC address
// when no VM of the pool has it.
func (p *xenPlan) mapNICs(ctx context.Context, xc *xapi.Client, nets []xapi.Network, vms map[xapi.Ref]xapi.VM, o Options) ([]xapi.VIFSpec, []error) {
	var errs []error
	nics := p.nicsOf()
	inUse := map[string]string{} // MAC, lower case → the VM that has it
	if len(nics) > 0 {
		var vifs map[string]struct {
			MAC string   `json:"MAC"`
			VM  xapi.Ref `json:"VM"`
		}
		if err := xc.Call(ctx, "VIF.get_all_records", &vifs); err != nil {
			return nil, []error{fmt.Errorf("list VIFs: %w", err)}
		}
		for _, f := range vifs {
			if v, ok := vms[f.VM]; ok && f.MAC != "" {
				inUse[strings.ToLower(f.MAC)] = v.NameLabel
			}
		}
	}
	flag := o.key("--network-map")
	used := map[string]bool{}
	var specs []xapi.VIFSpec
	kept, replaced := 0, 0
	for i, n := range nics {
		dst, key := "", ""
		for _, k := range []string{n.network, n.networkName} {
			if k == "" {
				continue
			}
			if v, ok := o.NetworkMap[k]; ok {
				dst, key = v, k
				used[k] = true
				break
			}
		}
		var net *xapi.Network
		if key != "" {
			found, err := findNetwork(nets, dst)
			if err != nil {
				errs = append(errs, fmt.Errorf("NIC %d: %s %s=%s: %w on the pool %s", i, flag, key, dst, err, p.pool))
				continue
			}
			net = found
		} else {
			for j := range nets {
				if n.network != "" && nets[j].UUID == n.network {
					net = &nets[j]
				}
			}
			if net == nil && n.networkName != "" {
				found, err := findNetwork(nets, n.networkName)
				if err == nil {
					net = found
				}
			}
			if net == nil {
				src := firstOf(n.networkName, n.network)
				what := "network"
				if !p.same {
					what = "AHV subnet"
				}
				errs = append(errs, fmt.Errorf("NIC %d: %s %s not found on the pool %s: map it with %s %s=NETWORK", i, what, src, p.pool, flag, src))
				continue
			}
		}
		spec := xapi.VIFSpec{Network: net.Ref, Device: strconv.Itoa(i)}
		if p.same {
			spec.Device, spec.MTU = n.device, n.mtu
		}
		if n.mac != "" {
			if owner, ok := inUse[strings.ToLower(n.mac)]; ok {
				replaced++
				p.warnings = append(p.warnings, fmt.Sprintf("NIC %d: MAC %s is in use on the pool (VM %s): the pool generates a new one", i, n.mac, owner))
			} else {
				spec.MAC = n.mac
				kept++
			}
		}
		if !p.same && n.model != "" && n.model != "VIRTIO" {
			p.warnings = append(p.warnings, fmt.Sprintf("NIC %d: model %s not carried: XCP-ng gives every VIF its own emulated, then PV, device", i, n.model))
		}
		specs = append(specs, spec)
		p.nicNames = append(p.nicNames, net.NameLabel)
	}
	var unused []string
	for k := range o.NetworkMap {
		if !used[k] {
			unused = append(unused, k)
		}
	}
	sort.Strings(unused)
	for _, k := range unused {
		errs = append(errs, fmt.Errorf("%s %s: no NIC of the VM is on network %q", flag, k, k))
	}
	p.keptMACs = kept > 0 && replaced == 0
	return specs, errs
}

// findNetwork resolves a network UUID or name (unique on the pool).
func findNetwork(nets []xapi.Network, want string) (*xapi.Network, error) {
	var names []string
	var byName []*xapi.Network
	for i := range nets {
		n := &nets[i]
		if n.UUID == want {
			return n, nil
		}
		if n.NameLabel == want {
			byName = append(byName, n)
		}
		names = append(names, n.NameLabel)
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return nil, fmt.Errorf("network %q not found (networks: %s)", want, strings.Join(names, ", "))
	}
	var ids []string
	for _, n := range byName {
		ids = append(ids, n.UUID)
	}
	return nil, fmt.Errorf("%d networks named %q: give the UUID (%s)", len(byName), want, strings.Join(ids, ", "))
}

// vmSpec is the VM record: the recorded XCP-ng one (same hypervisor), or
// one mapped from an AHV VM, with Options' overrides.
func (p *xenPlan) vmSpec(o Options) clusterjob.XenVMSpec {
	cfg := p.cfg
	if !p.same {
		return p.fromAHV(o)
	}
	x := cfg.Xen
	if x == nil {
		x = &clusterjob.XenConfig{}
	}
	startup := int64(cfg.VCPUs)
	if startup < 1 {
		startup = int64(cfg.TotalVCPUs())
	}
	vmax := max(x.VCPUsMax, startup)
	smax := cfg.MemoryBytes
	dmax, dmin, smin := x.MemoryDynamicMax, x.MemoryDynamicMin, x.MemoryStaticMin
	if o.VCPUs > 0 {
		vmax, startup = int64(o.VCPUs), int64(o.VCPUs)
	}
	if o.MemoryBytes > 0 {
		smax, dmax, dmin = o.MemoryBytes, o.MemoryBytes, o.MemoryBytes
	}
	if dmax <= 0 || dmax > smax {
		dmax = smax
	}
	if dmin <= 0 || dmin > dmax {
		dmin = dmax
	}
	if smin <= 0 || smin > dmin {
		smin = dmin
	}
	s := clusterjob.XenVMSpec{VCPUsMax: vmax, VCPUsAtStartup: startup, MemoryStaticMax: smax, MemoryDynamicMax: dmax,
		MemoryDynamicMin: dmin, MemoryStaticMin: smin, DomainType: x.DomainType, HVMBootPolicy: x.HVMBootPolicy,
		HVMBootParams: maps.Clone(x.HVMBootParams), Platform: maps.Clone(x.Platform)}
	if s.HVMBootParams != nil && s.HVMBootParams["firmware"] == "" {
		s.HVMBootParams["firmware"], _ = firmwareOf(cfg.BootType)
	}
	if cps, ok := s.Platform["cores-per-socket"]; ok && o.VCPUs > 0 {
		if n, err := strconv.Atoi(cps); err != nil || n < 1 || vmax%int64(n) != 0 {
			delete(s.Platform, "cores-per-socket")
			p.warnings = append(p.warnings, fmt.Sprintf("platform cores-per-socket=%s dropped: it does not divide %d vCPUs", cps, vmax))
		}
	}
	if s.DomainType == "pv" {
		s.PVBootloader = "pygrub"
		p.warnings = append(p.warnings, "a PV guest: its bootloader was not recorded, pygrub is assumed")
	}
	return s
}

// firmwareOf maps an AHV boot type to XCP-ng's firmware and secure boot.
func firmwareOf(boot string) (firmware string, secure bool) {
	switch boot {
	case "UEFI":
		return "uefi", false
	case "SECURE_BOOT":
		return "uefi", true
	}
	return "bios", false
}

// fromAHV maps an AHV VM's record: vCPUs, memory, boot type; XCP-ng's
// usual platform flags for an HVM guest.
func (p *xenPlan) fromAHV(o Options) clusterjob.XenVMSpec {
	cfg := p.cfg
	vcpus := int64(cfg.TotalVCPUs())
	if o.VCPUs > 0 {
		vcpus = int64(o.VCPUs)
	}
	mem := cfg.MemoryBytes
	if o.MemoryBytes > 0 {
		mem = o.MemoryBytes
	}
	fw, secure := firmwareOf(cfg.BootType)
	platform := map[string]string{"acpi": "1", "apic": "true", "pae": "true", "nx": "true", "hpet": "true",
		"timeoffset": "0", "vga": "std", "videoram": "8", "device-model": "qemu-upstream-compat"}
	if fw == "uefi" {
		platform["device-model"] = "qemu-upstream-uefi"
		platform["secureboot"] = strconv.FormatBool(secure)
	}
	if _, cores := cfg.Sockets(); o.VCPUs == 0 && cores > 1 && vcpus%int64(cores) == 0 {
		platform["cores-per-socket"] = strconv.Itoa(cores)
	}
	return clusterjob.XenVMSpec{VCPUsMax: vcpus, VCPUsAtStartup: vcpus, MemoryStaticMax: mem, MemoryDynamicMax: mem,
		MemoryDynamicMin: mem, MemoryStaticMin: mem, DomainType: "hvm", HVMBootPolicy: "BIOS order",
		HVMBootParams: map[string]string{"order": "cd", "firmware": fw}, Platform: platform}
}

// fromAHVWarnings says what of an AHV VM's record an XCP-ng VM does not
// carry.
func (p *xenPlan) fromAHVWarnings() []string {
	cfg := p.cfg
	w := []string{"restored from AHV: the disks appear to the guest as Xen disks (emulated until its PV drivers load, then " +
		"/dev/xvdX), so a guest that names them by device needs them by UUID or label; a Windows guest needs the XCP-ng guest " +
		"tools, and platform viridian=true"}
	if cfg.MachineType != "" && cfg.MachineType != "PC" {
		w = append(w, fmt.Sprintf("machine type %s not carried: XCP-ng chooses its own (i440fx)", cfg.MachineType))
	}
	var cds int
	for _, d := range cfg.Disks {
		if d.IsCDROM {
			cds++
		}
	}
	if cds > 0 {
		w = append(w, fmt.Sprintf("%d CD-ROM drive(s) not restored", cds))
	}
	if cfg.NGT.Installed {
		w = append(w, "Nutanix Guest Tools do not work on XCP-ng: install the XCP-ng guest tools in the guest")
	}
	return w
}
