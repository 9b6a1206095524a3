package prismsim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// apiErr is a failure with the HTTP status and v3 reason to answer.
type apiErr struct {
	code   int
	reason string
	msg    string
}

func (e *apiErr) Error() string { return e.msg }

func errNotFound(format string, args ...any) *apiErr {
	return &apiErr{http.StatusNotFound, "ENTITY_NOT_FOUND", fmt.Sprintf(format, args...)}
}

func errInvalid(format string, args ...any) *apiErr {
	return &apiErr{http.StatusUnprocessableEntity, "INVALID_ARGUMENT", fmt.Sprintf(format, args...)}
}

func (s *Sim) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if ae, ok := err.(*apiErr); ok {
		s.apiError(w, r, ae.code, ae.reason, ae.msg)
		return
	}
	s.apiError(w, r, http.StatusInternalServerError, "INTERNAL_ERROR", err.Error())
}

// VMOptions describes a VM added with AddVM. Zero values mean the default.
type VMOptions struct {
	NGT        NGT    // default NGTAbsent
	PowerState string // "ON" (default) or "OFF"
	Cluster    string // cluster name (default "cluster-a")
	Subnet     string // subnet name for the one NIC (default "vlan10")
	MemoryMiB  int64  // default 2048
	VCPUs      int    // per socket, default 2
	Sockets    int    // default 1
	BootType   string // LEGACY (default), UEFI or SECURE_BOOT
	// MachineType is PC (default), Q35 or PSERIES.
	MachineType string
	// NICModel is the model of the one NIC: VIRTIO (default), E1000, …
	NICModel string
	// Buses are the buses of the disks in order (SCSI, SATA, IDE, PCI;
	// default SCSI); each disk takes the next free index on its bus.
	Buses []string
	// Move renames the given files into the state directory instead of
	// copying them (faster for freshly built images).
	Move bool
}

// VMInfo describes a simulated VM.
type VMInfo struct {
	UUID  string
	Name  string
	Disks []string // absolute paths of the live disk files, in disk order
}

type diskSpec struct {
	Bus        string
	Index      int // -1: next free
	DeviceType string
	Size       int64
	SourceKind string // "", image, vm_disk, snapshot_disk, file, file_move
	SourceUUID string
	SourceFile string
	Container  string
}

type nicSpec struct {
	SubnetUUID string
	MAC        string
	Model      string
}

type vmSpec struct {
	Name, Description string
	ClusterUUID       string
	PowerState        string
	NumSockets        int
	VCPUsPerSocket    int
	ThreadsPerCore    int
	MemoryMiB         int64
	MachineType       string
	BootType          string
	Disks             []diskSpec
	NICs              []nicSpec
	NGT               NGT
}

// AddVM adds a VM on cluster-a (by default) whose disks are copies of the
// given image files (disk-0, disk-1, ... at DIR/vms/<name>/disk-N.raw).
func (s *Sim) AddVM(ctx context.Context, name string, diskFiles []string, o VMOptions) (VMInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.m.clusterByName(o.Cluster)
	if o.Cluster == "" {
		cl = s.m.Clusters[1]
	}
	if cl == nil || cl.PC {
		return VMInfo{}, fmt.Errorf("prismsim: add vm %s: unknown cluster %q", name, o.Cluster)
	}
	sn := o.Subnet
	if sn == "" {
		sn = "vlan10"
	}
	sub := s.m.subnetByName(cl.UUID, sn)
	if sub == nil {
		return VMInfo{}, fmt.Errorf("prismsim: add vm %s: unknown subnet %q", name, sn)
	}
	spec := vmSpec{Name: name, ClusterUUID: cl.UUID, PowerState: o.PowerState, NumSockets: o.Sockets, VCPUsPerSocket: o.VCPUs,
		MemoryMiB: o.MemoryMiB, MachineType: o.MachineType, BootType: o.BootType, NGT: o.NGT,
		NICs: []nicSpec{{SubnetUUID: sub.UUID, Model: o.NICModel}}}
	for i, f := range diskFiles {
		kind := "file"
		if o.Move {
			kind = "file_move"
		}
		bus := ""
		if i < len(o.Buses) {
			bus = o.Buses[i]
		}
		spec.Disks = append(spec.Disks, diskSpec{Bus: bus, Index: -1, SourceKind: kind, SourceFile: f})
	}
	v, err := s.createVMLocked(spec)
	if err != nil {
		return VMInfo{}, fmt.Errorf("prismsim: add vm %s: %w", name, err)
	}
	v.State = "COMPLETE"
	s.save()
	return s.vmInfo(v), nil
}

func (s *Sim) vmInfo(v *vm) VMInfo {
	in := VMInfo{UUID: v.UUID, Name: v.Name}
	for _, d := range v.Disks {
		in.Disks = append(in.Disks, s.abs(d.File))
	}
	return in
}

// VM looks a VM up by name or uuid.
func (s *Sim) VM(nameOrUUID string) (VMInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vmByNameOrUUIDLocked(nameOrUUID)
	if v == nil {
		return VMInfo{}, false
	}
	return s.vmInfo(v), true
}

// VMs lists every VM in creation order.
func (s *Sim) VMs() []VMInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []VMInfo
	for _, v := range s.m.sortedVMs() {
		out = append(out, s.vmInfo(v))
	}
	return out
}

// SetNGT changes the guest tools state a VM reports.
func (s *Sim) SetNGT(nameOrUUID string, n NGT) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[nameOrUUID]
	if v == nil {
		v = s.m.vmByName(nameOrUUID)
	}
	if v == nil {
		return fmt.Errorf("vm %s: %w", nameOrUUID, ErrNotFound)
	}
	v.NGT = n
	v.SpecVersion++
	s.save()
	return nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// vmDirName picks vms/<name>, or vms/<name>-<uuid8> when taken.
func (s *Sim) vmDirName(name, id string) string {
	base := unsafeName.ReplaceAllString(name, "_")
	if base == "" || base == "." || base == ".." {
		base = "vm"
	}
	dir := filepath.Join("vms", base)
	for _, v := range s.m.VMs {
		if v.Dir == dir {
			return filepath.Join("vms", base+"-"+id[:8])
		}
	}
	if _, err := os.Stat(s.abs(dir)); err == nil {
		return filepath.Join("vms", base+"-"+id[:8])
	}
	return dir
}

func randMAC() string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("50:6b:8d:%02x:%02x:%02x", b[0], b[1], b[2])
}

// sourceFile resolves a disk data source to a file and its size.
func (s *Sim) sourceFile(d diskSpec) (string, int64, error) {
	switch d.SourceKind {
	case "":
		return "", 0, nil
	case "file", "file_move":
		sz, err := fileSize(d.SourceFile)
		if err != nil {
			return "", 0, errInvalid("disk source: %v", err)
		}
		return d.SourceFile, sz, nil
	case "image":
		im := s.m.Images[d.SourceUUID]
		if im == nil {
			return "", 0, errNotFound("image %s not found", d.SourceUUID)
		}
		if !im.Uploaded {
			return "", 0, errInvalid("image %s has no data yet", d.SourceUUID)
		}
		return s.abs(im.File), im.Size, nil
	case "vm_disk", "volume_disk":
		f, sz, ok := s.m.diskFileByUUID(d.SourceUUID)
		if !ok {
			return "", 0, errNotFound("disk %s not found", d.SourceUUID)
		}
		return s.abs(f), sz, nil
	case "snapshot_disk":
		_, sd := s.m.diskRP(d.SourceUUID)
		if sd == nil {
			return "", 0, errNotFound("disk recovery point %s not found", d.SourceUUID)
		}
		return s.abs(sd.File), sd.Size, nil
	}
	return "", 0, errInvalid("unsupported disk data source kind %q", d.SourceKind)
}

// createVMLocked creates the VM and its disk files synchronously (state
// PENDING; the caller's task completion sets COMPLETE).
func (s *Sim) createVMLocked(sp vmSpec) (*vm, error) {
	if strings.TrimSpace(sp.Name) == "" {
		return nil, errInvalid("spec.name is required")
	}
	cl := s.m.clusterByUUID(sp.ClusterUUID)
	if sp.ClusterUUID == "" {
		cl = s.m.Clusters[1]
	}
	if cl == nil || cl.PC {
		return nil, errInvalid("cluster %s is not an AHV cluster managed here", sp.ClusterUUID)
	}
	now := time.Now()
	v := &vm{
		UUID: newUUID(), Name: sp.Name, Description: sp.Description, ClusterUUID: cl.UUID,
		PowerState: strings.ToUpper(sp.PowerState), NumSockets: sp.NumSockets, VCPUsPerSocket: sp.VCPUsPerSocket,
		ThreadsPerCore: sp.ThreadsPerCore, MemoryMiB: sp.MemoryMiB, MachineType: sp.MachineType, BootType: sp.BootType,
		NGT: sp.NGT, State: "PENDING", GenerationUUID: newUUID(), Created: now, Updated: now,
	}
	if v.PowerState == "" {
		v.PowerState = "ON"
	}
	if v.PowerState != "ON" && v.PowerState != "OFF" {
		return nil, errInvalid("power_state %q is not ON or OFF", sp.PowerState)
	}
	if v.NumSockets <= 0 {
		v.NumSockets = 1
	}
	if v.VCPUsPerSocket <= 0 {
		v.VCPUsPerSocket = 2
	}
	if v.ThreadsPerCore <= 0 {
		v.ThreadsPerCore = 1
	}
	if v.MemoryMiB <= 0 {
		v.MemoryMiB = 2048
	}
	if v.MachineType == "" {
		v.MachineType = "PC"
	}
	if v.BootType == "" {
		v.BootType = "LEGACY"
	}
	if v.NGT == "" {
		v.NGT = NGTAbsent
	}
	for _, n := range sp.NICs {
		sub := s.m.subnetByUUID(n.SubnetUUID)
		if sub == nil {
			return nil, errNotFound("subnet %s not found", n.SubnetUUID)
		}
		mac := n.MAC
		if mac == "" {
			mac = randMAC()
		}
		model := n.Model
		if model == "" {
			model = "VIRTIO"
		}
		v.NICs = append(v.NICs, &vmNIC{UUID: newUUID(), MAC: mac, SubnetUUID: sub.UUID, Model: model})
	}
	v.Dir = s.vmDirName(v.Name, v.UUID)
	ctr := s.m.containerFor(cl.UUID)
	used := map[string]bool{}
	type todo struct {
		d    *vmDisk
		src  string
		move bool
	}
	var work []todo
	n := 0
	for _, ds := range sp.Disks {
		bus := strings.ToUpper(ds.Bus)
		if bus == "" {
			bus = "SCSI"
		}
		idx := ds.Index
		if idx < 0 {
			idx = 0
			for used[fmt.Sprintf("%s.%d", bus, idx)] {
				idx++
			}
		}
		key := fmt.Sprintf("%s.%d", bus, idx)
		if used[key] {
			return nil, errInvalid("disk address %s used twice", strings.ToLower(key))
		}
		used[key] = true
		src, srcSize, err := s.sourceFile(ds)
		if err != nil {
			return nil, err
		}
		size := max(ds.Size, srcSize)
		if size <= 0 {
			return nil, errInvalid("disk %s: a disk needs disk_size_bytes or a data source", strings.ToLower(key))
		}
		dt := ds.DeviceType
		if dt == "" {
			dt = "DISK"
		}
		cu := ds.Container
		if cu == "" {
			cu = ctr.UUID
		}
		d := &vmDisk{UUID: newUUID(), VDiskUUID: newUUID(), Bus: bus, Index: idx, DeviceType: dt, Size: size,
			File: filepath.Join(v.Dir, fmt.Sprintf("disk-%d.raw", n)), ContainerUUID: cu,
			SourceKind: ds.SourceKind, SourceUUID: ds.SourceUUID}
		if ds.SourceKind == "file" || ds.SourceKind == "file_move" {
			d.SourceKind, d.SourceUUID = "", ""
		}
		v.Disks = append(v.Disks, d)
		work = append(work, todo{d, src, ds.SourceKind == "file_move"})
		n++
	}
	if err := os.MkdirAll(s.abs(v.Dir), 0o755); err != nil {
		return nil, err
	}
	for _, w := range work {
		dst := s.abs(w.d.File)
		var err error
		switch {
		case w.src == "":
			err = blankDisk(dst, w.d.Size)
		case w.move:
			if err = os.Rename(w.src, dst); errors.Is(err, syscall.EXDEV) {
				// Another filesystem: copy, then drop the source.
				if err = copyDisk(dst, w.src, w.d.Size); err == nil {
					err = os.Remove(w.src)
				}
			} else if err == nil {
				err = os.Truncate(dst, w.d.Size)
			}
		default:
			err = copyDisk(dst, w.src, w.d.Size)
		}
		if err != nil {
			os.RemoveAll(s.abs(v.Dir))
			return nil, fmt.Errorf("create disk %s: %w", w.d.File, err)
		}
	}
	s.m.VMs[v.UUID] = v
	return v, nil
}

func (s *Sim) deleteVMLocked(v *vm) {
	delete(s.m.VMs, v.UUID)
	os.RemoveAll(s.abs(v.Dir))
}

// snapshotVMLocked copies every disk of v now (point in time) and registers
// the snapshot in state PENDING.
func (s *Sim) snapshotVMLocked(v *vm, name, reqType, api string) (*snapshot, error) {
	if reqType == "" {
		reqType = CrashConsistent
	}
	if reqType != CrashConsistent && reqType != AppConsistent {
		return nil, errInvalid("snapshot type %q is not CRASH_CONSISTENT or APPLICATION_CONSISTENT", reqType)
	}
	typ := CrashConsistent
	if reqType == AppConsistent && v.NGT == NGTVSS && v.PowerState == "ON" {
		typ = AppConsistent
	}
	cl := s.m.clusterByUUID(v.ClusterUUID)
	sn := &snapshot{
		UUID: newUUID(), VMUUID: v.UUID, Name: name, Type: typ, RequestedType: reqType,
		GroupUUID: newUUID(), LocationUUID: newUUID(), SnapID: s.m.next() + 100, State: "PENDING",
		Created: time.Now(), VM: *v, API: api,
	}
	sn.VM.Disks = nil
	for _, d := range v.Disks {
		dc := *d
		sn.VM.Disks = append(sn.VM.Disks, &dc)
	}
	dir := filepath.Join("snapshots", sn.UUID)
	for i, d := range v.Disks {
		ctr := s.m.containerByUUID(d.ContainerUUID)
		ctrName := "default"
		if ctr != nil {
			ctrName = ctr.Name
		}
		sd := &snapDisk{
			DiskUUID: d.UUID, VDiskUUID: d.VDiskUUID, DiskRPUUID: newUUID(), Bus: d.Bus, Index: d.Index, Size: d.Size,
			File:      filepath.Join(dir, fmt.Sprintf("disk-%d.raw", i)),
			LivePath:  fmt.Sprintf("/%s/.acropolis/vmdisk/%s", ctrName, d.VDiskUUID),
			SnapPath:  fmt.Sprintf("/%s/.snapshot/%02d/%d-%d-%d/.acropolis/vmdisk/%s", ctrName, sn.SnapID%100, cl.ClusterID, cl.IncarnationID, sn.SnapID, d.VDiskUUID),
			Container: d.ContainerUUID,
		}
		if err := copyDisk(s.abs(sd.File), s.abs(d.File), d.Size); err != nil {
			os.RemoveAll(s.abs(dir))
			return nil, fmt.Errorf("snapshot %s: %w", v.Name, err)
		}
		sn.Disks = append(sn.Disks, sd)
	}
	s.m.Snapshots[sn.UUID] = sn
	return sn, nil
}

func (s *Sim) removeSnapshotLocked(id string) {
	sn := s.m.Snapshots[id]
	if sn == nil {
		return
	}
	delete(s.m.Snapshots, id)
	for _, d := range sn.Disks {
		os.Remove(s.abs(d.File))
		os.Remove(filepath.Dir(s.abs(d.File))) // only when empty
	}
	os.Remove(s.abs(filepath.Join("snapshots", id)))
	if rp := s.m.RecoveryPoints[sn.RPUUID]; rp != nil {
		out := rp.Snapshots[:0]
		for _, x := range rp.Snapshots {
			if x != id {
				out = append(out, x)
			}
		}
		rp.Snapshots = out
	}
}

// ---------- volume groups ----------

type vgDiskSpec struct {
	Index         int // -1: position
	Size          int64
	SourceKind    string // "" (blank), snapshot_disk, vm_disk, file
	SourceUUID    string
	SourceFile    string
	ContainerUUID string // "": the cluster's container
}

var iqnUnsafe = regexp.MustCompile(`[^a-z0-9.-]+`)

func (s *Sim) createVGLocked(name, desc, clusterUUID, usage, api string, disks []vgDiskSpec) (*volumeGroup, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errInvalid("volume group name is required")
	}
	cl := s.m.clusterByUUID(clusterUUID)
	if clusterUUID == "" {
		cl = s.m.Clusters[1]
	}
	if cl == nil || cl.PC {
		return nil, errInvalid("cluster %s is not an AHV cluster managed here", clusterUUID)
	}
	if usage == "" {
		usage = "USER"
	}
	g := &volumeGroup{UUID: newUUID(), Name: name, Description: desc, ClusterUUID: cl.UUID, UsageType: usage,
		Created: time.Now(), Version: 1, API: api, Clients: []string{}}
	g.TargetName = "iqn.2010-06.com.nutanix:" + strings.Trim(iqnUnsafe.ReplaceAllString(strings.ToLower(name), "-"), "-") + "-" + g.UUID
	dir := filepath.Join("vgs", g.UUID)
	ctr := s.m.containerFor(cl.UUID)
	for i, ds := range disks {
		var src string
		var srcSize int64
		switch ds.SourceKind {
		case "":
		case "snapshot_disk":
			_, sd := s.m.diskRP(ds.SourceUUID)
			if sd == nil {
				return nil, errNotFound("disk recovery point %s not found", ds.SourceUUID)
			}
			src, srcSize = s.abs(sd.File), sd.Size
		case "vm_disk":
			f, sz, ok := s.m.diskFileByUUID(ds.SourceUUID)
			if !ok {
				return nil, errNotFound("vm disk %s not found", ds.SourceUUID)
			}
			src, srcSize = s.abs(f), sz
		case "file":
			src = ds.SourceFile
			sz, err := fileSize(src)
			if err != nil {
				return nil, errNotFound("clone source: %v", err)
			}
			srcSize = sz
		default:
			return nil, errInvalid("unsupported disk source %q", ds.SourceKind)
		}
		size := max(ds.Size, srcSize)
		if size <= 0 {
			return nil, errInvalid("disk %d needs a size or a source", i)
		}
		idx := ds.Index
		if idx < 0 {
			idx = i
		}
		dctr := ctr
		if ds.ContainerUUID != "" {
			if dctr = s.m.containerByUUID(ds.ContainerUUID); dctr == nil || dctr.ClusterUUID != cl.UUID {
				return nil, errNotFound("storage container %s not found on cluster %s", ds.ContainerUUID, cl.Name)
			}
		}
		d := &vgDisk{UUID: newUUID(), Index: idx, Size: size, File: filepath.Join(dir, fmt.Sprintf("disk-%d.raw", i)),
			ContainerUUID: dctr.UUID, SourceKind: ds.SourceKind, SourceUUID: ds.SourceUUID}
		var err error
		if src == "" {
			err = blankDisk(s.abs(d.File), size)
		} else {
			err = copyDisk(s.abs(d.File), src, size)
		}
		if err != nil {
			os.RemoveAll(s.abs(dir))
			return nil, err
		}
		g.Disks = append(g.Disks, d)
	}
	s.m.VGs[g.UUID] = g
	return g, nil
}

// exportVGLocked makes the iSCSI target of g match its attached clients.
func (s *Sim) exportVGLocked(g *volumeGroup) error {
	if s.tgt == nil {
		return nil
	}
	var luns, acl []string
	var accts []chapAccount
	for _, d := range g.Disks {
		luns = append(luns, s.abs(d.File))
	}
	for _, id := range g.Clients {
		c := s.m.ISCSIClients[id]
		if c == nil {
			continue
		}
		if c.IQN != "" {
			acl = append(acl, c.IQN)
			if c.Secret != "" {
				accts = append(accts, chapAccount{c.IQN, c.Secret})
			}
		} else if c.IP != "" {
			acl = append(acl, c.IP)
		}
	}
	return s.tgt.sync(g.TargetName, luns, acl, accts)
}

func (s *Sim) attachClientLocked(g *volumeGroup, iqn, ip, secret string) (*iscsiClient, error) {
	if iqn == "" && ip == "" {
		return nil, errInvalid("an iSCSI initiator name or address is required")
	}
	var c *iscsiClient
	for _, x := range s.m.ISCSIClients {
		if (iqn != "" && x.IQN == iqn) || (iqn == "" && ip != "" && x.IP == ip) {
			c = x
			break
		}
	}
	if c == nil {
		c = &iscsiClient{UUID: newUUID(), IQN: iqn, IP: ip}
		s.m.ISCSIClients[c.UUID] = c
	}
	if secret != "" {
		c.Secret = secret
	}
	found := false
	for _, id := range g.Clients {
		if id == c.UUID {
			found = true
		}
	}
	if !found {
		g.Clients = append(g.Clients, c.UUID)
	}
	g.Version++
	if err := s.exportVGLocked(g); err != nil {
		return nil, fmt.Errorf("export %s: %w", g.TargetName, err)
	}
	return c, nil
}

func (s *Sim) detachClientLocked(g *volumeGroup, clientUUID string) error {
	out := g.Clients[:0]
	found := false
	for _, id := range g.Clients {
		if id == clientUUID {
			found = true
			continue
		}
		out = append(out, id)
	}
	if !found {
		return errNotFound("iSCSI client %s is not attached to volume group %s", clientUUID, g.UUID)
	}
	g.Clients = out
	g.Version++
	return s.exportVGLocked(g)
}

func (s *Sim) deleteVGLocked(g *volumeGroup) error {
	g.Clients = nil
	err := s.exportVGLocked(g)
	delete(s.m.VGs, g.UUID)
	for _, d := range g.Disks {
		os.Remove(s.abs(d.File))
		os.Remove(filepath.Dir(s.abs(d.File)))
	}
	os.Remove(s.abs(filepath.Join("vgs", g.UUID)))
	return err
}

// VolumeGroupDiskFiles returns the backing files of a volume group's disks
// (by uuid or name), so tests can compare what an initiator wrote.
func (s *Sim) VolumeGroupDiskFiles(nameOrUUID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.m.VGs[nameOrUUID]
	if g == nil {
		for _, x := range s.m.VGs {
			if x.Name == nameOrUUID {
				g = x
			}
		}
	}
	if g == nil {
		return nil, fmt.Errorf("volume group %s: %w", nameOrUUID, ErrNotFound)
	}
	var out []string
	for _, d := range g.Disks {
		out = append(out, s.abs(d.File))
	}
	return out, nil
}

// SnapshotDiskFiles returns the files of a snapshot's disks (v3 snapshot
// uuid, v2 snapshot uuid or v4 VM recovery point extId).
func (s *Sim) SnapshotDiskFiles(id string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.m.Snapshots[id]
	if sn == nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	var out []string
	for _, d := range sn.Disks {
		out = append(out, s.abs(d.File))
	}
	return out, nil
}

// ResizeDisk grows disk n (position in the VM's disk list) to size bytes,
// as an administrator extending a vDisk would. Shrinking is refused, as on
// AHV.
func (s *Sim) ResizeDisk(nameOrUUID string, n int, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vmByNameOrUUIDLocked(nameOrUUID)
	if v == nil {
		return fmt.Errorf("prismsim: resize disk: VM %q not found", nameOrUUID)
	}
	if n < 0 || n >= len(v.Disks) {
		return fmt.Errorf("prismsim: resize disk: VM %s has no disk %d", v.Name, n)
	}
	d := v.Disks[n]
	if size < d.Size {
		return fmt.Errorf("prismsim: resize disk: %d bytes is smaller than %d", size, d.Size)
	}
	if err := os.Truncate(s.abs(d.File), size); err != nil {
		return fmt.Errorf("prismsim: resize disk: %w", err)
	}
	d.Size = size
	v.Updated = time.Now()
	s.save()
	return nil
}

// AddDisk attaches a new SCSI disk to the VM holding a copy of file, at the
// next free SCSI index, and returns the VM's disk files.
func (s *Sim) AddDisk(nameOrUUID, file string) (VMInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vmByNameOrUUIDLocked(nameOrUUID)
	if v == nil {
		return VMInfo{}, fmt.Errorf("prismsim: add disk: VM %q not found", nameOrUUID)
	}
	st, err := os.Stat(file)
	if err != nil {
		return VMInfo{}, fmt.Errorf("prismsim: add disk: %w", err)
	}
	idx := 0
	for _, d := range v.Disks {
		if d.Bus == "SCSI" && d.Index >= idx {
			idx = d.Index + 1
		}
	}
	d := &vmDisk{UUID: newUUID(), VDiskUUID: newUUID(), Bus: "SCSI", Index: idx, DeviceType: "DISK", Size: st.Size(),
		File: filepath.Join(v.Dir, fmt.Sprintf("disk-%d.raw", len(v.Disks))), ContainerUUID: s.m.containerFor(v.ClusterUUID).UUID}
	if err := copyDisk(s.abs(d.File), file, d.Size); err != nil {
		return VMInfo{}, fmt.Errorf("prismsim: add disk: %w", err)
	}
	v.Disks = append(v.Disks, d)
	v.Updated = time.Now()
	s.save()
	return s.vmInfo(v), nil
}

func (s *Sim) vmByNameOrUUIDLocked(nameOrUUID string) *vm {
	if v := s.m.VMs[nameOrUUID]; v != nil {
		return v
	}
	return s.m.vmByName(nameOrUUID)
}
