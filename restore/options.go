package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/iscsi"
)

// Data paths.
const (
	DataPathAuto  = "auto"
	DataPathISCSI = "iscsi"
	DataPathREST  = "rest"
	// DataPathInstant backs the VM's disks by their files on an ahvfs NFS
	// export (Options.NFS), registered as an external repository: the VM
	// runs at once and hydrates in the background (v4.2 APIs).
	DataPathInstant = "instant"
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
	// SR is the storage repository of the new disks of a restore to an
	// XCP-ng pool (RestoreXen), by name (unique on the pool) or UUID.
	// Default: the SR each disk came from, when the restore point is of
	// an XCP-ng VM and that SR is on the pool; else the pool's default SR.
	SR string
	// NetworkMap maps a source subnet (name or UUID) to a target subnet
	// (name or UUID, on the target cluster). Unmapped subnets must exist on
	// the target under the same UUID or name. For an XCP-ng pool (source
	// or target) read network for subnet: an XCP-ng VM's NICs are on
	// networks, named by their name_label.
	NetworkMap map[string]string
	// Keys names options in errors as the caller's user knows them when
	// not by the CLI's flags: a recovery plan gives "--network-map" →
	// "network_map". A flag it leaves out keeps its name.
	Keys map[string]string
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
	// Replace, with Overwrite, names the VM (UUID) that is the original:
	// the one the new VM replaces (a failback's old VM at the source);
	// default the VM the restore point was taken of, else the VM of its
	// name on the target cluster.
	Replace string
	// DataPath: iscsi writes blank volume group disks over iSCSI, rest
	// uploads images, instant copies nothing (see DataPathInstant).
	// auto (default) is iscsi.
	DataPath string
	// NFS is the ahvfs NFS server (`ahvfs nfs-serve`) exporting this
	// repository's tree, as the cluster reaches it: host:port (port
	// default 2049). Required by DataPathInstant.
	NFS string
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
	// BandwidthLimit caps the bytes per second written to the cluster
	// (0: unlimited).
	BandwidthLimit int64
	// Journal records the temporary cluster objects of the restore
	// (default: the repository's, REPO/journal, when the source has a
	// directory).
	Journal *clusterjob.Journal
	// Clusters gives clients of other Prism API families for the sweep of
	// earlier jobs' leftovers (default: only the restore's client).
	Clusters clusterjob.Clusters
	// SkipCleanup does not sweep leftovers of earlier jobs at the start.
	SkipCleanup bool
	// Logger receives progress of the steps (default: discard).
	Logger *slog.Logger
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	switch o.DataPath {
	case "", DataPathAuto, DataPathISCSI, DataPathREST:
	case DataPathInstant:
		if _, _, err := splitNFS(o.NFS); err != nil {
			errs = append(errs, err)
		}
		if o.Overwrite {
			errs = append(errs, errors.New("an instant restore cannot overwrite the original: the new VM depends on the NFS server until hydrated"))
		}
	default:
		errs = append(errs, fmt.Errorf("data path %q: want auto, iscsi, rest or instant", o.DataPath))
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
	if o.BandwidthLimit < 0 {
		errs = append(errs, errors.New("bandwidth limit must not be negative"))
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
	Cluster      string        `json:"cluster"`   // the AHV cluster, or the XCP-ng pool (its address when unnamed)
	DataPath     string        `json:"data_path"` // iscsi, rest, instant; DataPathXen on a pool
	Disks        []DiskResult  `json:"disks"`
	NICs         []string      `json:"nics"` // target subnet names, in order
	KeptMACs     bool          `json:"kept_macs"`
	PoweredOn    bool          `json:"powered_on"`
	Replaced     string        `json:"replaced,omitempty"` // UUID of the VM --overwrite deleted
	Bytes        int64         `json:"bytes"`
	Written      int64         `json:"written"`
	Duration     time.Duration `json:"duration_ns"`
	// ExternalRepository is the repository the disks read from (instant).
	ExternalRepository *ExternalRepositoryResult `json:"external_repository,omitempty"`
	Warnings           []string                  `json:"warnings,omitempty"`
	// Cleanup is what the sweep of earlier jobs' leftovers did.
	Cleanup *clusterjob.Report `json:"cleanup,omitempty"`
}

// Source is the read side of the repository a restore needs.
// *engine.Repository implements it; a restore never writes to it.
type Source interface {
	// OpenDisk opens disk n of rp for concurrent random reads.
	OpenDisk(ctx context.Context, rp *engine.RestorePoint, n int) (*engine.DiskReader, error)
	// ChunkIDs lists a disk's chunks in order, engine.ZeroID for zero ones.
	ChunkIDs(ctx context.Context, d *engine.Disk) ([]engine.ID, error)
	// ChunkSize is the repository's chunk size.
	ChunkSize() int
}

var _ Source = (*engine.Repository)(nil)

// key is how errors name flag: its Keys entry, else the flag.
func (o Options) key(flag string) string {
	if k := o.Keys[flag]; k != "" {
		return k
	}
	return flag
}
