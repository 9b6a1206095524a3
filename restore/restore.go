package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Data paths.
const (
	DataPathAuto  = "auto"
	DataPathISCSI = "iscsi"
	DataPathREST  = "rest"
)

// Options configure Restore. Zero values mean the documented default;
// Validate reports every problem at once.
type Options struct {
	// Name of the new VM. Default: the original name; without Overwrite
	// that is an error when a VM of that name exists on the target cluster.
	Name string
	// TargetCluster is a cluster name or UUID. Default: the VM's original
	// cluster when the configuration names one that exists, else the only
	// cluster.
	TargetCluster string
	// Container is the storage container of the new disks, by name or
	// UUID, on the target cluster. Default: the cluster's default
	// container (chosen by the cluster).
	Container string
	// NetworkMap maps a source subnet (name or UUID) to a target subnet
	// (name or UUID, on the target cluster). Unmapped subnets must exist on
	// the target under the same UUID or name.
	NetworkMap map[string]string
	// VCPUs and MemoryBytes override the recorded configuration (0: keep).
	VCPUs       int
	MemoryBytes int64
	// Disks selects disks by index (disk-N); nil restores all.
	Disks []int
	// PowerOn powers the new VM on at the end.
	PowerOn bool
	// Overwrite replaces the original VM: the new VM is created first, then
	// the original is powered off and deleted (see doc.go for the order).
	Overwrite bool
	// DataPath: iscsi writes blank volume group disks over iSCSI, rest
	// uploads images. auto (default) is iscsi.
	DataPath string
	// ISCSIPort overrides the port of the portal the cluster reports (tests
	// and NAT); 0 keeps it (3260).
	ISCSIPort int
	// InitiatorIQN is this host's iSCSI name (default: the iscsi package's).
	InitiatorIQN string
	// ISCSI tunes sessions (Portal, TargetIQN and InitiatorIQN are set
	// by Restore).
	ISCSI iscsi.Options
	// Concurrency is the number of chunk writes in flight per disk
	// (default 16).
	Concurrency int
	// CleanupTimeout bounds the removal of what a failed restore created
	// (default 2 minutes), run with a fresh context so it also works after
	// SIGINT cancelled ctx.
	CleanupTimeout time.Duration
	// Progress, if set, receives the bytes of a disk handled so far (zero
	// chunks count as handled). Called from several goroutines.
	Progress func(disk int, done, total int64)
	// Logger receives progress of the steps (default: discard).
	Logger *slog.Logger
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	switch o.DataPath {
	case "", DataPathAuto, DataPathISCSI, DataPathREST:
	default:
		errs = append(errs, fmt.Errorf("data path %q: want auto, iscsi or rest", o.DataPath))
	}
	if o.VCPUs < 0 {
		errs = append(errs, fmt.Errorf("vcpu %d: must be positive", o.VCPUs))
	}
	if o.MemoryBytes < 0 || (o.MemoryBytes > 0 && o.MemoryBytes < 1<<20) {
		errs = append(errs, fmt.Errorf("memory %d: want at least 1 MiB", o.MemoryBytes))
	}
	if o.ISCSIPort < 0 || o.ISCSIPort > 65535 {
		errs = append(errs, fmt.Errorf("iscsi port %d out of range", o.ISCSIPort))
	}
	if o.Concurrency < 0 {
		errs = append(errs, errors.New("concurrency must not be negative"))
	}
	for k, v := range o.NetworkMap {
		if k == "" || v == "" {
			errs = append(errs, fmt.Errorf("network map %q=%q: want SRC=DST", k, v))
		}
	}
	return errors.Join(errs...)
}

// DiskResult is one restored disk.
type DiskResult struct {
	Name    string `json:"name"` // disk-N of the restore point
	Address string `json:"address"`
	Size    int64  `json:"size"`
	Written int64  `json:"written"` // bytes sent to the cluster
}

// Result says what Restore did.
type Result struct {
	RestorePoint string        `json:"restore_point"`
	VMUUID       string        `json:"vm_uuid"`
	Name         string        `json:"name"`
	Cluster      string        `json:"cluster"`
	DataPath     string        `json:"data_path"`
	Disks        []DiskResult  `json:"disks"`
	NICs         []string      `json:"nics"` // target subnet names, in order
	KeptMACs     bool          `json:"kept_macs"`
	PoweredOn    bool          `json:"powered_on"`
	Replaced     string        `json:"replaced,omitempty"` // UUID of the VM --overwrite deleted
	Bytes        int64         `json:"bytes"`
	Written      int64         `json:"written"`
	Duration     time.Duration `json:"duration_ns"`
	Warnings     []string      `json:"warnings,omitempty"`
}

// plan is everything validated before the first object is created.
type plan struct {
	rp       *engine.RestorePoint
	cfg      *VMConfig
	cluster  nutanix.ClusterInfo
	name     string
	disks    []diskPlace
	nics     []nutanix.NICSpec
	nicNames []string
	keepMACs bool
	original *nutanix.VM // the VM --overwrite replaces
	dataPath string
	spec     nutanix.VMSpec
}

// Restore recreates the VM of rp on a cluster. It validates everything
// first, records each object it creates and, on failure or cancellation,
// removes them again (with a fresh context bounded by CleanupTimeout) and
// reports what failed and what could not be removed. The repository is
// only read.
func Restore(ctx context.Context, src Source, cl nutanix.Cluster, rp *engine.RestorePoint, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	start := time.Now()
	p, err := makePlan(ctx, cl, rp, o)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	res := &Result{RestorePoint: rp.Name(), Name: p.name, Cluster: p.cluster.Name, DataPath: p.dataPath, NICs: p.nicNames, KeptMACs: p.keepMACs}
	u := &undo{log: o.Logger}
	err = run(ctx, src, cl, p, o, u, res)
	if err != nil {
		if cerr := u.run(o.CleanupTimeout); cerr != nil {
			err = fmt.Errorf("%w; cleanup incomplete: %v", err, cerr)
		} else if len(u.steps) > 0 {
			err = fmt.Errorf("%w (removed what the restore had created)", err)
		}
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

func makePlan(ctx context.Context, cl nutanix.Cluster, rp *engine.RestorePoint, o Options) (*plan, error) {
	cfg, err := ParseConfig(rp)
	if err != nil {
		return nil, err
	}
	p := &plan{rp: rp, cfg: cfg}
	var errs []error
	// Target cluster.
	clusters, err := cl.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range clusters {
		names = append(names, c.Name)
	}
	found := false
	switch {
	case o.TargetCluster != "":
		for _, c := range clusters {
			if c.Name == o.TargetCluster || c.UUID == o.TargetCluster {
				p.cluster, found = c, true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("target cluster %q not found (clusters: %s)", o.TargetCluster, strings.Join(names, ", ")))
		}
	default:
		for _, c := range clusters {
			if (cfg.ClusterUUID != "" && c.UUID == cfg.ClusterUUID) || (cfg.ClusterUUID == "" && cfg.ClusterName != "" && c.Name == cfg.ClusterName) {
				p.cluster, found = c, true
			}
		}
		if !found && len(clusters) == 1 {
			p.cluster, found = clusters[0], true
		}
		if !found {
			errs = append(errs, fmt.Errorf("the original cluster is unknown or gone: choose --target-cluster (clusters: %s)", strings.Join(names, ", ")))
		}
	}
	// Disks.
	p.disks, err = placeDisks(rp, o.Disks)
	if err != nil {
		errs = append(errs, err)
	} else if len(p.disks) == 0 {
		errs = append(errs, errors.New("the restore point has no disks"))
	}
	// Original VM (overwrite, MAC policy, name clash).
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	var origAnywhere bool
	for i := range vms {
		if cfg.UUID != "" && vms[i].UUID == cfg.UUID {
			origAnywhere = true
			if o.Overwrite {
				p.original = &vms[i]
			}
		}
	}
	p.name = o.Name
	if p.name == "" {
		p.name = cfg.Name
	}
	if o.Overwrite && p.original == nil && found {
		// Restore points made by import have no UUID: match by name.
		for i := range vms {
			if vms[i].Name == cfg.Name && vms[i].ClusterUUID == p.cluster.UUID {
				if p.original != nil {
					errs = append(errs, fmt.Errorf("--overwrite: several VMs are named %q on %s", cfg.Name, p.cluster.Name))
					break
				}
				p.original = &vms[i]
			}
		}
	}
	if found {
		for _, v := range vms {
			if v.Name == p.name && v.ClusterUUID == p.cluster.UUID && (p.original == nil || v.UUID != p.original.UUID) {
				errs = append(errs, fmt.Errorf("a VM named %q already exists on %s: give --name, or --overwrite to replace the original", p.name, p.cluster.Name))
				break
			}
		}
	}
	p.keepMACs = !origAnywhere
	// Networks.
	subnets, err := cl.ListSubnets(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for i, n := range cfg.NICs {
		dst, key := "", ""
		for _, k := range []string{n.SubnetUUID, n.SubnetName} {
			if k == "" {
				continue
			}
			if v, ok := o.NetworkMap[k]; ok {
				dst, key = v, k
				used[k] = true
				break
			}
		}
		var match *nutanix.Subnet
		for j := range subnets {
			s := &subnets[j]
			if s.ClusterUUID != "" && found && s.ClusterUUID != p.cluster.UUID {
				continue
			}
			if key != "" {
				if s.UUID == dst || s.Name == dst {
					match = s
					break
				}
				continue
			}
			if (n.SubnetUUID != "" && s.UUID == n.SubnetUUID) || (match == nil && n.SubnetName != "" && s.Name == n.SubnetName) {
				match = s
			}
		}
		switch {
		case match == nil && key != "":
			errs = append(errs, fmt.Errorf("NIC %d: --network-map %s=%s: subnet %q not found on the target cluster", i, key, dst, dst))
		case match == nil:
			errs = append(errs, fmt.Errorf("NIC %d: subnet %s not found on the target cluster: map it with --network-map %s=SUBNET",
				i, firstOf(n.SubnetName, n.SubnetUUID), firstOf(n.SubnetName, n.SubnetUUID)))
		default:
			ns := nutanix.NICSpec{SubnetUUID: match.UUID, Model: n.Model}
			if p.keepMACs {
				ns.MAC = n.MAC
			}
			p.nics = append(p.nics, ns)
			p.nicNames = append(p.nicNames, match.Name)
		}
	}
	for k := range o.NetworkMap {
		if !used[k] {
			errs = append(errs, fmt.Errorf("--network-map %s: no NIC of the VM is on subnet %q", k, k))
		}
	}
	// Storage container.
	container := ""
	if o.Container != "" && found {
		c, err := findContainer(ctx, cl, p.cluster, o.Container)
		if err != nil {
			errs = append(errs, err)
		}
		container = c
	}
	// Data path.
	p.dataPath = DataPathISCSI
	if o.DataPath == DataPathREST {
		p.dataPath = DataPathREST
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// VM spec.
	sockets, cores := cfg.Sockets()
	if o.VCPUs > 0 {
		sockets, cores = o.VCPUs, 1
	}
	mem := cfg.MemoryBytes
	if o.MemoryBytes > 0 {
		mem = o.MemoryBytes
	}
	p.spec = nutanix.VMSpec{Name: p.name, ClusterUUID: p.cluster.UUID, NumSockets: sockets, CoresPerSocket: cores, MemoryBytes: mem,
		BootType: nutanix.BootType(cfg.BootType), MachineType: cfg.MachineType, NICs: p.nics,
		Description: "restored by ahvfs from " + rp.Name()}
	for _, d := range p.disks {
		p.spec.Disks = append(p.spec.Disks, nutanix.DiskSpec{Bus: d.Bus, Index: d.Index, SizeBytes: d.Disk.Size, ContainerUUID: container})
	}
	return p, nil
}

// findContainer resolves a storage container name or UUID on cluster c.
// A name must be unique on the cluster; a UUID must be one of its
// containers (containers the API reports without a cluster are accepted).
func findContainer(ctx context.Context, cl nutanix.Cluster, c nutanix.ClusterInfo, want string) (string, error) {
	ctrs, err := cl.ListStorageContainers(ctx)
	if err != nil {
		return "", fmt.Errorf("--container %s: %w", want, err)
	}
	var names, byName []string
	for _, x := range ctrs {
		if x.ClusterUUID != "" && x.ClusterUUID != c.UUID {
			continue
		}
		if x.UUID == want {
			return x.UUID, nil
		}
		if x.Name == want {
			byName = append(byName, x.UUID)
		}
		names = append(names, x.Name)
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return "", fmt.Errorf("--container %q: no such storage container on %s (containers: %s)", want, c.Name, strings.Join(names, ", "))
	}
	return "", fmt.Errorf("--container %q: %d storage containers of that name on %s: give the UUID (%s)", want, len(byName), c.Name, strings.Join(byName, ", "))
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// undo is the list of what to remove when a restore fails, newest first.
type undo struct {
	log   *slog.Logger
	mu    sync.Mutex
	steps []undoStep
}

type undoStep struct {
	what string
	fn   func(ctx context.Context) error
}

// add records fn, which removes what, to run on failure.
func (u *undo) add(what string, fn func(ctx context.Context) error) {
	u.mu.Lock()
	u.steps = append(u.steps, undoStep{what, fn})
	u.mu.Unlock()
}

// run undoes every step in reverse order with a fresh context.
func (u *undo) run(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		u.log.Info("restore: cleanup", "remove", s.what)
		if err := s.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.what, err))
		}
	}
	return errors.Join(errs...)
}

// run performs the restore proper; every object created is recorded in u
// before the call that creates it returns.
func run(ctx context.Context, src Source, cl nutanix.Cluster, p *plan, o Options, u *undo, res *Result) error {
	tag := fmt.Sprintf("ahvfs-restore-%s-%d", safeName(p.name), time.Now().Unix())
	for _, d := range p.disks {
		res.Disks = append(res.Disks, DiskResult{Name: d.Disk.Name(), Address: fmt.Sprintf("%s.%d", strings.ToLower(d.Bus), d.Index), Size: d.Disk.Size})
		res.Bytes += d.Disk.Size
	}
	// temps are removed on success too, after the VM exists.
	var temps []undoStep
	var vmUUID string
	var err error
	switch p.dataPath {
	case DataPathREST:
		vmUUID, temps, err = restoreREST(ctx, src, cl, p, o, u, res, tag)
	default:
		vmUUID, temps, err = restoreISCSI(ctx, src, cl, p, o, u, res, tag)
	}
	if err != nil {
		return err
	}
	res.VMUUID = vmUUID
	for _, d := range res.Disks {
		res.Written += d.Written
	}
	// Overwrite: only now, with the new VM complete, touch the original.
	if p.original != nil {
		orig := p.original
		if orig.PowerState != nutanix.PowerOff {
			o.Logger.Info("restore: powering the original VM off", "vm", orig.Name, "uuid", orig.UUID)
			if err := cl.SetPowerState(ctx, orig.UUID, nutanix.PowerOff); err != nil {
				return fmt.Errorf("power off the original VM %s: %w", orig.UUID, err)
			}
			if orig.PowerState == nutanix.PowerOn {
				u.add("power the original VM "+orig.UUID+" back on", func(ctx context.Context) error {
					return cl.SetPowerState(ctx, orig.UUID, nutanix.PowerOn)
				})
			}
		}
		o.Logger.Info("restore: deleting the original VM", "vm", orig.Name, "uuid", orig.UUID)
		if err := cl.DeleteVM(ctx, orig.UUID); err != nil {
			return fmt.Errorf("delete the original VM %s: %w", orig.UUID, err)
		}
		res.Replaced = orig.UUID
		// The original is gone: from here on the new VM is the result and
		// is kept whatever fails.
		u.mu.Lock()
		u.steps = nil
		u.mu.Unlock()
	}
	for _, t := range temps {
		o.Logger.Info("restore: removing", "what", t.what)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.CleanupTimeout)
		if err := t.fn(cctx); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("could not remove %s: %v", t.what, err))
		}
		cancel()
	}
	// The temporary objects are gone; a later failure must not try again.
	u.mu.Lock()
	kept := u.steps[:0]
	for _, s := range u.steps {
		if !isTemp(s, temps) {
			kept = append(kept, s)
		}
	}
	u.steps = kept
	u.mu.Unlock()
	if o.PowerOn {
		if err := cl.SetPowerState(ctx, vmUUID, nutanix.PowerOn); err != nil {
			if res.Replaced != "" {
				res.Warnings = append(res.Warnings, fmt.Sprintf("power on: %v", err))
				return nil
			}
			return fmt.Errorf("power on VM %s: %w", vmUUID, err)
		}
		res.PoweredOn = true
	}
	return nil
}

func isTemp(s undoStep, temps []undoStep) bool {
	for _, t := range temps {
		if t.what == s.what {
			return true
		}
	}
	return false
}

// createVM records the VM for removal and reconciles by name when the
// create call failed without telling the VM's UUID (a failed task can
// still leave a VM behind).
func createVM(ctx context.Context, cl nutanix.Cluster, p *plan, u *undo, create func(context.Context) (string, error)) (string, error) {
	before := map[string]bool{}
	if vms, err := cl.ListVMs(ctx); err == nil {
		for _, v := range vms {
			before[v.UUID] = true
		}
	}
	u.add("VM "+p.name+" (created by this restore)", func(ctx context.Context) error {
		vms, err := cl.ListVMs(ctx)
		if err != nil {
			return err
		}
		var errs []error
		for _, v := range vms {
			if v.Name == p.name && !before[v.UUID] {
				if v.PowerState == nutanix.PowerOn {
					cl.SetPowerState(ctx, v.UUID, nutanix.PowerOff)
				}
				if err := cl.DeleteVM(ctx, v.UUID); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	})
	id, err := create(ctx)
	if err != nil {
		return "", fmt.Errorf("create VM %s: %w", p.name, err)
	}
	return id, nil
}

// restoreREST uploads each disk as an image and creates the VM from them.
func restoreREST(ctx context.Context, src Source, cl nutanix.Cluster, p *plan, o Options, u *undo, res *Result, tag string) (string, []undoStep, error) {
	var temps []undoStep
	spec := p.spec
	spec.Disks = append([]nutanix.DiskSpec(nil), p.spec.Disks...)
	for i, d := range p.disks {
		name := fmt.Sprintf("%s-%s", tag, d.Disk.Name())
		o.Logger.Info("restore: creating image", "image", name)
		// Registered before the call: a failed task can leave an image the
		// client does not know, found again by its (unique) name.
		var imID string
		step := undoStep{"image " + name, func(ctx context.Context) error { return removeImages(ctx, cl, imID, name) }}
		u.add(step.what, step.fn)
		temps = append(temps, step)
		im, err := cl.CreateImage(ctx, nutanix.ImageSpec{Name: name, Type: nutanix.DiskImage, ClusterUUID: p.cluster.UUID,
			Description: "temporary image of an ahvfs restore of " + p.rp.Name()})
		imID = im.UUID
		if err != nil {
			return "", nil, fmt.Errorf("create image %s: %w", name, err)
		}
		dr, err := src.OpenDisk(ctx, p.rp, d.Disk.Index)
		if err != nil {
			return "", nil, err
		}
		r := &diskStream{ctx: ctx, d: dr, size: d.Disk.Size, progress: o.Progress, index: d.Disk.Index}
		err = cl.UploadImage(ctx, im.UUID, r, d.Disk.Size)
		dr.Close()
		if err != nil {
			if r.err != nil {
				err = r.err
			}
			return "", nil, fmt.Errorf("upload %s: %w", d.Disk.Name(), err)
		}
		res.Disks[i].Written = r.off
		spec.Disks[i].ImageUUID = im.UUID
	}
	id, err := createVM(ctx, cl, p, u, func(ctx context.Context) (string, error) { return cl.CreateVM(ctx, spec) })
	return id, temps, err
}

// removeImages deletes the image id (if known) and every image named name.
func removeImages(ctx context.Context, cl nutanix.Cluster, id, name string) error {
	var errs []error
	if id != "" {
		if err := cl.DeleteImage(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	l, err := cl.ListImages(ctx, name)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, im := range l {
		if im.UUID != id {
			if err := cl.DeleteImage(ctx, im.UUID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// diskStream reads a disk sequentially (the engine reads ahead in
// parallel) for an upload.
type diskStream struct {
	ctx      context.Context
	d        *engine.DiskReader
	off      int64
	size     int64
	err      error
	index    int
	progress func(int, int64, int64)
}

func (s *diskStream) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if int64(len(p)) > s.size-s.off {
		p = p[:s.size-s.off]
	}
	n, err := s.d.ReadAtContext(s.ctx, p, s.off)
	s.off += int64(n)
	if s.progress != nil && n > 0 {
		s.progress(s.index, s.off, s.size)
	}
	if err == io.EOF && s.off >= s.size {
		err = nil
	}
	if err != nil {
		s.err = err
		return n, err
	}
	return n, nil
}

// restoreISCSI creates a blank volume group, writes the non-zero chunks of
// each disk into its LUNs and creates the VM from the volume group disks.
func restoreISCSI(ctx context.Context, src Source, cl nutanix.Cluster, p *plan, o Options, u *undo, res *Result, tag string) (string, []undoStep, error) {
	var sizes []int64
	for _, d := range p.disks {
		sizes = append(sizes, d.Disk.Size)
	}
	o.Logger.Info("restore: creating volume group", "name", tag, "disks", len(sizes))
	// Registered before the call: a failed task can leave a group the
	// client does not know, so the step also removes any group of the
	// (unique) tag name.
	var vgID string
	vgStep := undoStep{"volume group " + tag, func(ctx context.Context) error { return removeVolumeGroups(ctx, cl, vgID, tag) }}
	u.add(vgStep.what, vgStep.fn)
	vg, err := cl.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{Name: tag, ClusterUUID: p.cluster.UUID,
		ContainerUUID: p.spec.Disks[0].ContainerUUID, DiskSizes: sizes, Description: "temporary volume group of an ahvfs restore of " + p.rp.Name()})
	vgID = vg.UUID
	if err != nil {
		return "", nil, err // names the operation and the group
	}
	if len(vg.Disks) != len(sizes) {
		return "", nil, fmt.Errorf("volume group %s has %d disks, want %d", vg.UUID, len(vg.Disks), len(sizes))
	}
	iqn := o.InitiatorIQN
	if iqn == "" {
		iqn = o.ISCSI.InitiatorIQN
	}
	if iqn == "" {
		iqn = iscsi.DefaultInitiatorIQN()
	}
	tgt, err := cl.AttachISCSIClient(ctx, vg.UUID, iqn)
	detach := undoStep{"iSCSI attachment of " + iqn + " to " + vg.UUID, func(ctx context.Context) error { return cl.DetachISCSIClient(ctx, vg.UUID, iqn) }}
	u.add(detach.what, detach.fn)
	if err != nil {
		return "", nil, fmt.Errorf("attach %s to volume group %s: %w", iqn, vg.UUID, err)
	}
	portal := tgt.Portal
	if o.ISCSIPort != 0 {
		host, _, err := net.SplitHostPort(portal)
		if err != nil {
			host = portal
		}
		portal = net.JoinHostPort(host, strconv.Itoa(o.ISCSIPort))
	}
	so := o.ISCSI
	so.Portal, so.TargetIQN, so.InitiatorIQN = portal, tgt.TargetIQN, iqn
	if so.Logger == nil {
		so.Logger = o.Logger
	}
	sess, err := iscsi.Dial(ctx, so)
	if err != nil {
		return "", nil, fmt.Errorf("iSCSI login to %s at %s: %w", tgt.TargetIQN, portal, err)
	}
	o.Logger.Info("restore: writing disks over iSCSI", "target", tgt.TargetIQN, "portal", portal)
	werr := writeLUNs(ctx, src, sess, p, o, res)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	sess.Close(cctx)
	cancel()
	if werr != nil {
		return "", nil, werr
	}
	// Detach before the VM is created from the disks.
	if err := cl.DetachISCSIClient(ctx, vg.UUID, iqn); err != nil {
		return "", nil, fmt.Errorf("detach %s from volume group %s: %w", iqn, vg.UUID, err)
	}
	spec := p.spec
	spec.Disks = append([]nutanix.DiskSpec(nil), p.spec.Disks...)
	for i := range spec.Disks {
		spec.Disks[i].VolumeDiskUUID = vg.Disks[i].UUID
	}
	o.Logger.Info("restore: creating the VM from the volume group disks", "vm", spec.Name)
	id, err := createVM(ctx, cl, p, u, func(ctx context.Context) (string, error) { return cl.CreateVM(ctx, spec) })
	return id, []undoStep{detach, vgStep}, err
}

// removeVolumeGroups deletes the group id (if known) and every group
// named name (a restore's unique tag).
func removeVolumeGroups(ctx context.Context, cl nutanix.Cluster, id, name string) error {
	var errs []error
	if id != "" {
		if err := cl.DeleteVolumeGroup(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	l, err := cl.ListVolumeGroups(ctx, name)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, g := range l {
		if g.UUID != id {
			if err := cl.DeleteVolumeGroup(ctx, g.UUID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// writeLUNs writes each disk's non-zero chunks into LUN i+1 (the
// simulator and AOS number a volume group's LUNs from 1 in disk order;
// LUN 0 when the target reports only that).
func writeLUNs(ctx context.Context, src Source, sess *iscsi.Session, p *plan, o Options, res *Result) error {
	luns, err := sess.ReportLUNs(ctx)
	if err != nil {
		return fmt.Errorf("iSCSI REPORT LUNS: %w", err)
	}
	for i, d := range p.disks {
		n := uint64(i + 1)
		if len(luns) == len(p.disks) {
			n = luns[i]
		}
		lun, err := sess.LUN(ctx, n)
		if err != nil {
			return fmt.Errorf("%s: LUN %d: %w", d.Disk.Name(), n, err)
		}
		if lun.Size() < d.Disk.Size {
			return fmt.Errorf("%s: LUN %d holds %d bytes, the disk %d", d.Disk.Name(), n, lun.Size(), d.Disk.Size)
		}
		w, err := writeDisk(ctx, src, p.rp, d.Disk, lun, o)
		res.Disks[i].Written = w
		if err != nil {
			return fmt.Errorf("write %s to LUN %d: %w", d.Disk.Name(), n, err)
		}
		if err := lun.Sync(ctx); err != nil {
			return fmt.Errorf("%s: SYNCHRONIZE CACHE: %w", d.Disk.Name(), err)
		}
	}
	return nil
}

// ChunkWriter is where writeDisk puts a disk's bytes: an iSCSI LUN, or
// anything WriteAt-shaped and safe for concurrent callers.
type ChunkWriter interface {
	WriteAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// syncer is a ChunkWriter with a write cache to flush (an iSCSI LUN:
// SYNCHRONIZE CACHE).
type syncer interface {
	Sync(ctx context.Context) error
}

// flushEvery is how many bytes writeDisk writes between the flushes it
// starts in the background, so that the target writes back while data
// still arrives and the final flush has only the tail left.
const flushEvery = 256 << 20

// writeDisk copies the non-zero chunks of d into w with o.Concurrency
// writes in flight and returns the bytes written. A w with a Sync method
// is flushed every flushEvery bytes without waiting (the caller still
// flushes at the end).
func writeDisk(ctx context.Context, src Source, rp *engine.RestorePoint, d *engine.Disk, w ChunkWriter, o Options) (int64, error) {
	ids, err := src.ChunkIDs(ctx, d)
	if err != nil {
		return 0, err
	}
	dr, err := src.OpenDisk(ctx, rp, d.Index)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	cs := int64(src.ChunkSize())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		done    atomic.Int64
		written atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; cancel() })
	}
	var (
		flushing atomic.Bool
		flushes  sync.WaitGroup
	)
	sy, _ := w.(syncer)
	flush := func() {
		if sy == nil || !flushing.CompareAndSwap(false, true) {
			return // one at a time; the next threshold catches up
		}
		flushes.Add(1)
		go func() {
			defer flushes.Done()
			defer flushing.Store(false)
			if err := sy.Sync(ctx); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("SYNCHRONIZE CACHE: %w", err))
			}
		}()
	}
	workers := min(o.Concurrency, max(1, len(ids)))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, cs)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(ids)) || ctx.Err() != nil {
					return
				}
				off := i * cs
				n := min(cs, d.Size-off)
				if !ids[i].IsZero() {
					b := buf[:n]
					if _, err := dr.ReadAtContext(ctx, b, off); err != nil && err != io.EOF {
						fail(err)
						return
					}
					if _, err := w.WriteAtContext(ctx, b, off); err != nil {
						fail(fmt.Errorf("at %d: %w", off, err))
						return
					}
					if t := written.Add(n); t/flushEvery != (t-n)/flushEvery {
						flush()
					}
				}
				if o.Progress != nil {
					o.Progress(d.Index, done.Add(n), d.Size)
				}
			}
		}()
	}
	wg.Wait()
	flushes.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return written.Load(), first
}
