package prismsim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

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
	// Categories are the VM's categories, key → one or more values
	// (default none); see also Sim.SetVMCategories.
	Categories map[string][]string
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
	External   *diskExternal // SourceKind "external"
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
	cats, err := normCategories(o.Categories)
	if err != nil {
		return VMInfo{}, fmt.Errorf("prismsim: add vm %s: %w", name, err)
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
	s.m.ensureCategoriesLocked(cats)
	v.Categories = cats
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
	return s.changeVM(nameOrUUID, func(v *vm) {
		v.NGT = n
		v.SpecVersion++
	})
}

// SetGuestHung makes a VM's guest ignore shutdown requests (ACPI and
// NGT), as a hung or busy guest does, or heed them again: the request's
// task succeeds, and the VM stays on.
func (s *Sim) SetGuestHung(nameOrUUID string, hung bool) error {
	return s.changeVM(nameOrUUID, func(v *vm) { v.GuestHung = hung })
}

// changeVM applies fn to a VM (by name or UUID) and saves the state.
func (s *Sim) changeVM(nameOrUUID string, fn func(v *vm)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.m.VMs[nameOrUUID]
	if v == nil {
		v = s.m.vmByName(nameOrUUID)
	}
	if v == nil {
		return fmt.Errorf("vm %s: %w", nameOrUUID, ErrNotFound)
	}
	fn(v)
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
	case "external":
		return "", d.Size, nil // a blank disk, hydrated from the export
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
		UUID: simkit.NewUUID(), Name: sp.Name, Description: sp.Description, ClusterUUID: cl.UUID,
		PowerState: strings.ToUpper(sp.PowerState), NumSockets: sp.NumSockets, VCPUsPerSocket: sp.VCPUsPerSocket,
		ThreadsPerCore: sp.ThreadsPerCore, MemoryMiB: sp.MemoryMiB, MachineType: sp.MachineType, BootType: sp.BootType,
		NGT: sp.NGT, State: "PENDING", GenerationUUID: simkit.NewUUID(), Created: now, Updated: now,
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
		v.NICs = append(v.NICs, &vmNIC{UUID: simkit.NewUUID(), MAC: mac, SubnetUUID: sub.UUID, Model: model})
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
		d := &vmDisk{UUID: simkit.NewUUID(), VDiskUUID: simkit.NewUUID(), Bus: bus, Index: idx, DeviceType: dt, Size: size,
			File: filepath.Join(v.Dir, fmt.Sprintf("disk-%d.raw", n)), ContainerUUID: cu,
			SourceKind: ds.SourceKind, SourceUUID: ds.SourceUUID}
		switch ds.SourceKind {
		case "file", "file_move":
			d.SourceKind, d.SourceUUID = "", ""
		case "external":
			x := *ds.External
			d.SourceKind, d.External = "", &x
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
			err = simkit.BlankDisk(dst, w.d.Size)
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

// createVMTaskLocked creates the VM of sp now, unless op's task is chosen to
// fail (then nothing is created, v is nil and the task names a fresh uuid,
// id), and starts op's task, whose success marks the VM COMPLETE. The caller
// holds s.mu.
func (s *Sim) createVMTaskLocked(op string, sp vmSpec) (t *task, v *vm, id string, err error) {
	fail := s.taskFailure(op)
	id = simkit.NewUUID()
	if fail == "" {
		if v, err = s.createVMLocked(sp); err != nil {
			return nil, nil, "", err
		}
		id = v.UUID
	}
	t = s.startTask(op, sp.ClusterUUID, []taskEntity{{Kind: "vm", UUID: id, Name: sp.Name}}, fail, func() {
		if v != nil {
			v.State = "COMPLETE"
		}
	})
	return t, v, id, nil
}

func (s *Sim) deleteVMLocked(v *vm) {
	for _, d := range v.Disks {
		s.stopHydratorLocked(d)
	}
	delete(s.m.VMs, v.UUID)
	os.RemoveAll(s.abs(v.Dir))
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
	if d.External != nil {
		return fmt.Errorf("prismsim: resize disk: disk %d of %s still reads from an external repository", n, v.Name)
	}
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
	d := &vmDisk{UUID: simkit.NewUUID(), VDiskUUID: simkit.NewUUID(), Bus: "SCSI", Index: idx, DeviceType: "DISK", Size: st.Size(),
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
