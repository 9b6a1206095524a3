package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/xapi"
)

// RunXen backs up VMs of an XCP-ng / XenServer pool through xc into repo:
// the same flow, options and report as Run, with XAPI snapshots and one
// of two strategies (Options.Strategy, see "XCP-ng" in doc.go). VMs are
// selected by Options.VMs and Exclude (categories are Prism's); disks are
// addressed "xvd.N", N the VBD's userdevice.
func RunXen(ctx context.Context, repo *engine.Repository, xc *xapi.Client, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if len(o.Categories) > 0 {
		return nil, errors.New("backup options: categories are Prism's; select the VMs of an XCP-ng pool by name or UUID")
	}
	if o.Level == LevelDifferential {
		return nil, errors.New("backup options: an XCP-ng pool keeps one reference snapshot per VM, so no differential level; use incremental")
	}
	if o.DataPath == PathISCSI {
		return nil, errors.New("backup options: an XCP-ng pool is read over NBD or its HTTP export (--data-path nbd or rest), not iSCSI")
	}
	o = o.withDefaults()
	rep := &Report{Start: o.Now().UTC()}
	defer func() { rep.Duration = time.Since(rep.Start) }()
	j, err := runJournal(repo, &o)
	if err != nil {
		return rep, err
	}
	if !o.SkipCleanup {
		cr, err := clusterjob.SweepXen(ctx, j, xc, o.Logger)
		rep.Cleanup = cr
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			o.Logger.Warn("cleanup of earlier jobs' leftovers failed; continuing", "err", err)
		}
	}
	all, err := xc.VMs(ctx)
	if err != nil {
		return rep, fmt.Errorf("list VMs: %w", err)
	}
	var views []nutanix.VM
	byUUID := map[string]xapi.VM{}
	for _, v := range all {
		if v.IsATemplate || v.IsASnapshot || v.IsControlDomain {
			continue
		}
		views = append(views, nutanix.VM{UUID: v.UUID, Name: v.NameLabel})
		byUUID[v.UUID] = v
	}
	sel, unmatched := SelectVMs(views, o.VMs, o.Exclude)
	if len(unmatched) > 0 {
		return rep, fmt.Errorf("no VM matches %s", strings.Join(unmatched, ", "))
	}
	if len(sel) == 0 {
		return rep, errors.New("no VM selected")
	}
	r := &runner{repo: repo, j: j, o: &o, bw: clusterjob.NewBandwidth(o.BandwidthLimit)}
	return rep, r.eachVM(ctx, rep, sel, func(ctx context.Context, v nutanix.VM) VMReport {
		return r.backupXenVM(ctx, xc, byUUID[v.UUID])
	})
}

// xenVMRun is one VM's backup on an XCP-ng pool.
type xenVMRun struct {
	r   *runner
	xc  *xapi.Client
	jb  *clusterjob.Job
	log *slog.Logger
	vr  *VMReport

	v        xapi.VM
	view     nutanix.VM // the VM as the hypervisor-neutral code sees it
	disks    []xenDisk  // to store
	cfg      clusterjob.VMConfig
	ref      *XenReference
	parent   *engine.RestorePoint // of ref, when the level is incremental
	strategy Strategy
	reason   string          // why a full, when one was not asked
	cbtOff   map[string]bool // live VDIs whose tracking this run turned on

	pathMu sync.Mutex // guards vr.DataPath, set by the disks' goroutines

	snap     xapi.VM
	snapObj  clusterjob.Object
	snapVDIs map[string]xapi.VDI // live VDI UUID → its VDI in snap
}

// xenDisk is one disk VBD of the VM with its VDI.
type xenDisk struct {
	vbd xapi.VBD
	vdi xapi.VDI
	sr  xapi.SR
	n   int // disk-N
}

func (d xenDisk) address() string { return "xvd." + d.vbd.Userdevice }

// setPath records the data path a disk was read through.
func (m *xenVMRun) setPath(p DataPath) {
	m.pathMu.Lock()
	m.vr.DataPath = p
	m.pathMu.Unlock()
}

func (m *xenVMRun) warn(format string, args ...any) { m.vr.warn(m.log, format, args...) }

// backupXenVM runs the whole flow for one VM and never panics the run.
func (r *runner) backupXenVM(ctx context.Context, xc *xapi.Client, v xapi.VM) VMReport {
	return r.reportVM(ctx, v.NameLabel, v.UUID, func(log *slog.Logger, vr *VMReport) (*clusterjob.Job, func() error, error) {
		ref, err := LoadXenReference(r.j, v.UUID)
		if err != nil {
			return nil, nil, err
		}
		jb, err := r.j.BeginXen(ctx, "backup", xc, clusterjob.JobOptions{CleanupTimeout: r.o.CleanupTimeout, Now: r.o.Now, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		m := &xenVMRun{r: r, xc: xc, jb: jb, log: log, vr: vr, ref: ref, v: v}
		return jb, func() error { return m.run(ctx) }, nil
	})
}

func (m *xenVMRun) run(ctx context.Context) error {
	if err := m.prepare(ctx); err != nil {
		return err
	}
	if err := m.snapshot(ctx); err != nil {
		return err
	}
	w, err := m.readDisks(ctx)
	if err != nil || w == nil {
		return err
	}
	return m.commit(ctx, w)
}

// prepare reads the VM's disks and NICs, builds its configuration record,
// and decides strategy and level.
func (m *xenVMRun) prepare(ctx context.Context) error {
	o := m.r.o
	v, err := m.xc.VM(ctx, m.v.Ref)
	if err != nil {
		return fmt.Errorf("read VM: %w", err)
	}
	m.v = v
	all, err := xenDisks(ctx, m.xc, v)
	if err != nil {
		return err
	}
	m.view = xenView(v)
	for _, d := range all {
		m.view.Disks = append(m.view.Disks, nutanix.Disk{UUID: d.vdi.UUID, Bus: "xvd", Index: atoiOr(d.vbd.Userdevice, len(m.view.Disks)),
			SizeBytes: d.vdi.VirtualSize, ContainerUUID: d.sr.UUID})
	}
	xcfg := &clusterjob.XenConfig{DomainType: v.DomainType, HVMBootPolicy: v.HVMBootPolicy, HVMBootParams: v.HVMBootParams,
		Platform: v.Platform, VCPUsMax: v.VCPUsMax, MemoryDynamicMin: v.MemoryDynamicMin, MemoryDynamicMax: v.MemoryDynamicMax,
		MemoryStaticMin: v.MemoryStaticMin}
	for _, d := range all {
		xcfg.Disks = append(xcfg.Disks, clusterjob.XenDisk{Userdevice: d.vbd.Userdevice, Bootable: d.vbd.Bootable, ReadOnly: d.vbd.Mode == "RO",
			VDIUUID: d.vdi.UUID, NameLabel: d.vdi.NameLabel, SRUUID: d.sr.UUID, SRName: d.sr.NameLabel})
	}
	if err := m.readNICs(ctx, xcfg); err != nil {
		return err
	}
	m.readGuestTools(ctx)
	// Which disks: the view's disk-N numbering follows userdevice order,
	// like AHV's bus/index order.
	planned, excluded := backupDisks(m.view, o.ExcludeDisks)
	for _, d := range m.view.BackupDisks() {
		if excluded[d.UUID] {
			m.vr.ExcludedDisks = append(m.vr.ExcludedDisks, d.Address())
		}
	}
	if len(planned) == 0 {
		return errors.New("no disk to back up (all excluded, or only CD drives)")
	}
	stored := map[string]int{}
	for _, p := range planned {
		stored[p.UUID] = p.N
		for _, d := range all {
			if d.vdi.UUID == p.UUID {
				d.n = p.N
				m.disks = append(m.disks, d)
			}
		}
	}
	m.cfg = clusterjob.NewVMConfig(m.view, clusterjob.APIXen, stored, excluded)
	m.cfg.Hypervisor, m.cfg.Xen = clusterjob.HypervisorXen, xcfg
	if o.Consistency == AppRequired && !m.view.NGT.VSSCapable {
		return errors.New("application-consistent snapshot required, but the VM's guest tools cannot quiesce it")
	}
	if err := m.decideStrategy(ctx); err != nil {
		return err
	}
	xcfg.Strategy = string(m.strategy)
	m.decideLevel(ctx)
	m.vr.Level = engine.LevelFull
	if m.parent != nil {
		m.vr.Level = engine.LevelIncremental
	}
	if m.reason != "" {
		m.warn("full backup: %s", m.reason)
	}
	return nil
}

// xenDisks reads the VM's disk VBDs (CD drives and empty drives left out)
// with their VDIs and SRs, in userdevice order.
func xenDisks(ctx context.Context, xc *xapi.Client, v xapi.VM) ([]xenDisk, error) {
	var out []xenDisk
	for _, ref := range v.VBDs {
		vbd, err := xc.VBD(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("read VBD %s: %w", ref, err)
		}
		if vbd.Type != "Disk" || vbd.Empty || vbd.VDI == "" || vbd.VDI == xapi.NullRef {
			continue
		}
		vdi, err := xc.VDI(ctx, vbd.VDI)
		if err != nil {
			return nil, fmt.Errorf("read VDI of %s (xvd.%s): %w", v.NameLabel, vbd.Userdevice, err)
		}
		d := xenDisk{vbd: vbd, vdi: vdi}
		if vdi.SR != "" && vdi.SR != xapi.NullRef {
			if d.sr, err = xc.SR(ctx, vdi.SR); err != nil {
				return nil, fmt.Errorf("read SR of %s (xvd.%s): %w", v.NameLabel, vbd.Userdevice, err)
			}
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		return atoiOr(out[i].vbd.Userdevice, 1<<30) < atoiOr(out[j].vbd.Userdevice, 1<<30)
	})
	return out, nil
}

// xenView is the VM as Prism's types describe one: what selection, disk
// exclusion and the configuration record work on.
func xenView(v xapi.VM) nutanix.VM {
	view := nutanix.VM{UUID: v.UUID, Name: v.NameLabel, Description: v.NameDescription, VCPUs: int(v.VCPUsAtStartup),
		NumSockets: int(v.VCPUsAtStartup), CoresPerSocket: 1, MemoryBytes: v.MemoryStaticMax, PowerState: nutanix.PowerOff,
		BootType: nutanix.BootLegacy}
	if cps := atoiOr(v.Platform["cores-per-socket"], 0); cps > 0 && view.VCPUs%cps == 0 {
		view.CoresPerSocket, view.NumSockets = cps, view.VCPUs/cps
	}
	if v.PowerState == "Running" || v.PowerState == "Paused" {
		view.PowerState = nutanix.PowerOn
	}
	if v.HVMBootParams["firmware"] == "uefi" {
		view.BootType = nutanix.BootUEFI
		if v.Platform["secureboot"] == "true" {
			view.BootType = nutanix.BootSecureBoot
		}
	}
	return view
}

// readNICs adds the VM's VIFs, with their networks' names, to the view
// and to the XCP-ng record.
func (m *xenVMRun) readNICs(ctx context.Context, xcfg *clusterjob.XenConfig) error {
	for _, ref := range m.v.VIFs {
		vif, err := m.xc.VIF(ctx, ref)
		if err != nil {
			return fmt.Errorf("read VIF %s: %w", ref, err)
		}
		var net xapi.Network
		if vif.Network != "" && vif.Network != xapi.NullRef {
			if net, err = m.xc.Network(ctx, vif.Network); err != nil {
				return fmt.Errorf("read the network of VIF %s: %w", vif.Device, err)
			}
		}
		m.view.NICs = append(m.view.NICs, nutanix.NIC{UUID: vif.UUID, SubnetUUID: net.UUID, SubnetName: net.NameLabel, MAC: vif.MAC,
			IsConnected: true})
		xcfg.NICs = append(xcfg.NICs, clusterjob.XenNIC{Device: vif.Device, NetworkUUID: net.UUID, NetworkName: net.NameLabel, MAC: vif.MAC,
			MTU: vif.MTU})
	}
	sort.SliceStable(xcfg.NICs, func(i, j int) bool { return atoiOr(xcfg.NICs[i].Device, 0) < atoiOr(xcfg.NICs[j].Device, 0) })
	return nil
}

// readGuestTools fills the view's guest tools state from the VM's guest
// metrics: PV drivers present, and quiesce (VSS) advertised.
func (m *xenVMRun) readGuestTools(ctx context.Context) {
	if m.v.GuestMetrics == "" || m.v.GuestMetrics == xapi.NullRef {
		return
	}
	gm, err := m.xc.GuestMetrics(ctx, m.v.GuestMetrics)
	if err != nil {
		m.log.Debug("guest metrics unreadable", "err", err)
		return
	}
	m.view.NGT.Installed = gm.PVDriversDetected
	m.view.NGT.Enabled = gm.PVDriversDetected
	m.view.NGT.Reachable = gm.PVDriversDetected && m.view.PowerState == nutanix.PowerOn
	m.view.NGT.VSSCapable = m.view.NGT.Reachable && (gm.Other["feature-quiesce"] == "1" || gm.Other["feature-vss"] == "1")
	m.view.NGT.Version = strings.Trim(gm.PVDriversVersion["major"]+"."+gm.PVDriversVersion["minor"]+"."+gm.PVDriversVersion["micro"], ".")
}

// snapshot takes the VM's snapshot between the hooks, quiesced when asked
// and possible.
func (m *xenVMRun) snapshot(ctx context.Context) error {
	o := m.r.o
	if o.PreSnapshot != nil {
		if err := o.PreSnapshot(ctx, m.cfg); err != nil {
			return fmt.Errorf("pre-snapshot hook: %w", err)
		}
	}
	quiesce := o.Consistency != Crash && m.view.NGT.VSSCapable
	snap, so, err := m.jb.CreateXenSnapshot(ctx, m.v, quiesce)
	if err != nil && quiesce && o.Consistency == App {
		m.warn("quiesced snapshot failed (%v); taking a crash-consistent one", err)
		quiesce = false
		snap, so, err = m.jb.CreateXenSnapshot(ctx, m.v, false)
	}
	if o.PostSnapshot != nil {
		if herr := o.PostSnapshot(context.WithoutCancel(ctx), m.cfg); herr != nil {
			m.warn("post-snapshot hook: %v", herr)
		}
	}
	if err != nil {
		return err
	}
	m.snap, m.snapObj = snap, so
	m.cfg.SnapshotID = snap.UUID
	m.vr.Consistency = "crash"
	if quiesce {
		m.vr.Consistency = "app"
	} else if o.Consistency != Crash {
		if o.Consistency == AppRequired {
			return errors.New("application-consistent snapshot required, but the pool delivered a crash-consistent one")
		}
		m.warn("application-consistent snapshot asked; the VM's guest tools cannot quiesce it, so it is crash-consistent")
	}
	sd, err := xenDisks(ctx, m.xc, snap)
	if err != nil {
		return fmt.Errorf("read snapshot %s: %w", snap.NameLabel, err)
	}
	m.snapVDIs = map[string]xapi.VDI{}
	for _, d := range sd {
		for _, live := range m.disks {
			if d.vdi.SnapshotOf == live.vdi.Ref || d.vbd.Userdevice == live.vbd.Userdevice && d.vdi.SnapshotOf == "" {
				m.snapVDIs[live.vdi.UUID] = d.vdi
			}
		}
	}
	for _, d := range m.disks {
		if _, ok := m.snapVDIs[d.vdi.UUID]; !ok {
			return fmt.Errorf("snapshot %s has no copy of disk %s", snap.NameLabel, d.address())
		}
	}
	// The journal names the snapshot's VDIs too: once their data is
	// destroyed no VBD ties them to the snapshot any more.
	for _, d := range sd {
		m.snapObj.VDIs = append(m.snapObj.VDIs, d.vdi.UUID)
	}
	return m.jb.Record(m.snapObj)
}

// readDisks reads every disk into a new restore point (nil with
// Estimate), o.ConcurrentDisks at once — or, with the XVA strategy's full,
// the one XVA stream of the snapshot.
func (m *xenVMRun) readDisks(ctx context.Context) (*engine.RestorePointWriter, error) {
	r, o := m.r, m.r.o
	var w *engine.RestorePointWriter
	if !o.Estimate {
		cfgJSON, _ := json.Marshal(m.cfg)
		level := engine.LevelFull
		spec := engine.RestorePointSpec{VM: m.v.NameLabel, VMUUID: m.v.UUID,
			Time:  r.rpTime(ctx, m.v.NameLabel, nutanix.Snapshot{CreatedAt: m.snap.SnapshotTime}),
			Level: level, Consistency: m.vr.Consistency, Config: cfgJSON,
			Meta: map[string]string{"snapshot": m.snap.UUID, "snapshot_name": m.snap.NameLabel, "api": string(clusterjob.APIXen),
				"hypervisor": clusterjob.HypervisorXen, "strategy": string(m.strategy)}}
		if m.parent != nil {
			spec.Level, spec.Parent = engine.LevelIncremental, m.parent.ID
		}
		if o.LockUntil != nil {
			spec.LockUntil = o.LockUntil(spec.Time)
		}
		if m.reason != "" {
			spec.Meta["full_reason"] = m.reason
		}
		var err error
		if w, err = r.repo.NewRestorePoint(ctx, spec); err != nil {
			return nil, err
		}
	}
	m.vr.Disks = make([]DiskReport, len(m.disks))
	var err error
	if m.strategy == StrategyXVA && m.parent == nil {
		err = m.readXVA(ctx, w)
	} else {
		err = eachDisk(ctx, len(m.disks), o.ConcurrentDisks,
			func(i int) string { return fmt.Sprintf("disk-%d (%s)", m.disks[i].n, m.disks[i].address()) },
			func(ctx context.Context, i int) error {
				dr, err := m.readDisk(ctx, m.disks[i], w)
				m.vr.Disks[i] = dr
				return err
			})
	}
	sumDisks(m.vr, m.parent != nil, m.warn)
	return endRead(ctx, w, err)
}

// commit commits the restore point, then makes the new snapshot the VM's
// reference and deletes the previous one, in the order Run's commit uses
// (see there): the old snapshot is journaled as this job's, the new
// reference kept in one atomic write, the new snapshot forgotten by the
// job, the old one released. With the CBT strategy the new snapshot's
// data is destroyed first: its CBT metadata is all the next incremental
// needs.
func (m *xenVMRun) commit(ctx context.Context, w *engine.RestorePointWriter) error {
	rp, err := commitPoint(ctx, w, m.vr, m.warn)
	if err != nil {
		return err
	}
	if m.r.o.Level == LevelCopy {
		return nil // outside the chain: the job's teardown deletes the snapshot
	}
	next := &XenReference{VMUUID: m.v.UUID, VM: m.v.NameLabel, Snapshot: m.snap.UUID, SnapshotName: m.snap.NameLabel,
		RestorePoint: rp.ID, Time: rp.Time, Strategy: m.strategy}
	for _, d := range m.disks {
		sv := m.snapVDIs[d.vdi.UUID]
		next.Disks = append(next.Disks, XenRefDisk{VDI: d.vdi.UUID, SnapshotVDI: sv.UUID, N: d.n, Size: sv.VirtualSize})
	}
	if m.strategy == StrategyCBT {
		next.DataDestroyed = true
		for _, d := range m.disks {
			if err := m.xc.DataDestroy(ctx, m.snapVDIs[d.vdi.UUID].Ref); err != nil {
				// The snapshot keeps its data: it still serves as the
				// reference, at the cost of its space.
				next.DataDestroyed = false
				m.warn("free the data of the reference snapshot's %s: %v (the snapshot keeps using space on the SR)", d.address(), err)
				break
			}
		}
	}
	var old *clusterjob.Object
	if m.ref != nil && m.ref.Snapshot != m.snap.UUID {
		o := m.ref.object()
		if err := m.jb.Record(o); err != nil {
			m.warn("restore point %s committed, but the reference was not promoted: %v", rp.Name(), err)
			return nil
		}
		old = &o
	}
	if err := putXenRef(m.r.j, next); err != nil {
		m.warn("restore point %s committed, but: %v", rp.Name(), err)
		if old != nil {
			if err := m.jb.Forget(*old); err != nil {
				m.warn("%v", err)
			}
		}
		return nil
	}
	if err := m.jb.Forget(m.snapObj); err != nil {
		m.warn("%v", err)
	}
	if old != nil {
		cctx, cancel := m.jb.CleanupContext(ctx)
		defer cancel()
		if err := m.jb.Release(cctx, *old); err != nil {
			m.warn("delete the previous reference snapshot: %v", err)
		}
	}
	return nil
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
