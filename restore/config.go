package restore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
)

// VMConfig is the VM configuration a restore point records (rp.Config),
// as restore and export read it. The backup job writes it
// (backup.VMConfig, snake_case keys such as "memory_bytes"); this decoder
// also accepts the shape of nutanix.VM (Go field names): keys match
// case-insensitively with underscores ignored. Every field here must be
// one backup.VMConfig records under a matching name
// (TestParseConfigReadsBackupConfig).
//
// Restore points made by `ahvfs import` carry no configuration; then
// DefaultConfig applies: 1 vCPU, 2 GiB, legacy BIOS, machine type PC, the
// restore point's disks on their recorded bus (SCSI by default), no NIC.
type VMConfig struct {
	Name           string
	UUID           string
	Description    string
	ClusterUUID    string
	ClusterName    string
	VCPUs          int // total; NumSockets × CoresPerSocket when those are set
	NumSockets     int
	CoresPerSocket int
	MemoryBytes    int64
	BootType       string // LEGACY, UEFI, SECURE_BOOT
	MachineType    string // PC, Q35, PSERIES
	Disks          []DiskConfig
	NICs           []NICConfig
}

// DiskConfig is one device of the VM as recorded.
type DiskConfig struct {
	UUID            string
	Bus             string // SCSI, IDE, PCI, SATA
	Index           int
	SizeBytes       int64
	IsCDROM         bool
	VolumeGroupUUID string
	ContainerUUID   string
}

// NICConfig is one network interface as recorded.
type NICConfig struct {
	SubnetUUID  string
	SubnetName  string
	MAC         string
	Model       string // VIRTIO, E1000, …
	IsConnected bool
}

// Defaults of a restore point without configuration.
const (
	DefaultVCPUs       = 1
	DefaultMemoryBytes = 2 << 30
)

// Sockets returns the socket and cores-per-socket counts (at least 1×1).
func (c *VMConfig) Sockets() (sockets, cores int) {
	sockets, cores = c.NumSockets, c.CoresPerSocket
	if cores < 1 {
		cores = 1
	}
	if sockets < 1 {
		sockets = max(1, c.VCPUs/cores)
	}
	return sockets, cores
}

// TotalVCPUs is sockets × cores.
func (c *VMConfig) TotalVCPUs() int {
	s, k := c.Sockets()
	return s * k
}

// ParseConfig decodes rp's configuration; a restore point without one gets
// DefaultConfig. Missing CPU, memory or boot fields get the defaults too.
func ParseConfig(rp *engine.RestorePoint) (*VMConfig, error) {
	c := &VMConfig{}
	raw := bytes.TrimSpace(rp.Config)
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("restore point %s: VM configuration: %w", rp.Name(), err)
		}
		norm, _ := json.Marshal(stripUnderscores(v))
		if err := json.Unmarshal(norm, c); err != nil {
			return nil, fmt.Errorf("restore point %s: VM configuration: %w", rp.Name(), err)
		}
	}
	if c.Name == "" {
		c.Name = rp.VM
	}
	if c.UUID == "" {
		c.UUID = rp.VMUUID
	}
	if c.VCPUs == 0 && c.NumSockets == 0 {
		c.VCPUs = DefaultVCPUs
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	c.BootType = strings.ToUpper(c.BootType)
	if c.BootType == "" {
		c.BootType = "LEGACY"
	}
	c.MachineType = strings.ToUpper(c.MachineType)
	if c.MachineType == "" {
		c.MachineType = "PC"
	}
	for i := range c.NICs {
		c.NICs[i].Model = strings.ToUpper(c.NICs[i].Model)
	}
	return c, nil
}

func stripUnderscores(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[strings.ReplaceAll(k, "_", "")] = stripUnderscores(x)
		}
		return out
	case []any:
		for i := range t {
			t[i] = stripUnderscores(t[i])
		}
		return t
	}
	return v
}

// diskPlace is where a restore point's disk goes on the VM.
type diskPlace struct {
	Disk  *engine.Disk
	Bus   string // upper case: SCSI, SATA, IDE, PCI
	Index int
}

// placeDisks returns the restore point's disks selected by want (nil: all)
// with their bus and index, in bus/index order. The restore point's own
// bus/index win; a disk without one gets SCSI and the next free index.
func placeDisks(rp *engine.RestorePoint, want []int) ([]diskPlace, error) {
	sel := map[int]bool{}
	for _, n := range want {
		if _, err := rp.Disk(n); err != nil {
			return nil, fmt.Errorf("--disks: %w", err)
		}
		sel[n] = true
	}
	var out []diskPlace
	used := map[string]bool{}
	for i := range rp.Disks {
		d := &rp.Disks[i]
		if len(want) > 0 && !sel[d.Index] {
			continue
		}
		bus := strings.ToUpper(d.Bus)
		if bus == "" {
			bus = "SCSI"
		}
		out = append(out, diskPlace{Disk: d, Bus: bus, Index: d.BusIndex})
	}
	for i := range out {
		k := fmt.Sprintf("%s.%d", out[i].Bus, out[i].Index)
		for used[k] {
			out[i].Index++
			k = fmt.Sprintf("%s.%d", out[i].Bus, out[i].Index)
		}
		used[k] = true
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Bus != out[j].Bus {
			return busOrder(out[i].Bus) < busOrder(out[j].Bus)
		}
		return out[i].Index < out[j].Index
	})
	return out, nil
}

func busOrder(b string) int {
	switch b {
	case "SCSI":
		return 0
	case "PCI":
		return 1
	case "SATA":
		return 2
	case "IDE":
		return 3
	}
	return 4
}
