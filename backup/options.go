package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Level is the backup level asked for.
type Level string

const (
	LevelAuto         Level = "auto" // incremental when a reference exists, else full
	LevelFull         Level = "full"
	LevelIncremental  Level = "incremental"
	LevelDifferential Level = "differential"
	// LevelCopy reads everything, like a full, outside the chain: the
	// reference snapshots are neither used nor moved, so the next
	// incremental continues from the last chained backup.
	LevelCopy Level = "copy"
)

// Consistency is the snapshot consistency asked for.
type Consistency string

const (
	// Crash: a crash-consistent snapshot.
	Crash Consistency = "crash"
	// App: application-consistent when the VM's guest tools allow it,
	// else crash-consistent with a warning.
	App Consistency = "app"
	// AppRequired: application-consistent or the VM fails.
	AppRequired Consistency = "app-required"
)

// DataPath is how snapshot disk bytes are read.
type DataPath string

const (
	// PathAuto uses iSCSI when the cluster's iSCSI portal answers a TCP
	// connect, else REST.
	PathAuto DataPath = "auto"
	// PathISCSI: a volume group cloned from the snapshot disk, read over
	// iSCSI by the userspace initiator.
	PathISCSI DataPath = "iscsi"
	// PathREST: an image imported from the snapshot vDisk, read with ranged
	// HTTPS downloads (v3 snapshots only).
	PathREST DataPath = "rest"
)

// Hook runs around the snapshot of one VM (e.g. quiesce an application
// without NGT). A PreSnapshot error fails the VM before anything is
// created, and PostSnapshot does not run; once PreSnapshot succeeded (or
// when there is none), PostSnapshot runs whether or not the snapshot was
// taken, and its error is a warning.
type Hook func(ctx context.Context, vm clusterjob.VMConfig) error

// Progress receives the progress of a run. Calls come from several
// goroutines; implementations must be safe for concurrent use and quick.
type Progress interface {
	// DiskStart announces a disk whose plan is ready: size bytes to cover
	// (read, zeroed or unchanged), of which read are to be read. It
	// returns the function called with the bytes covered so far
	// (monotonic).
	DiskStart(vm, disk string, size, read int64) func(done int64)
	// DiskDone ends a disk started with DiskStart.
	DiskDone(vm, disk string, err error)
	// VMDone reports a finished VM (success or failure).
	VMDone(r VMReport)
}

// Options configure Run. The zero value of every field means its
// documented default; Validate reports every problem at once.
type Options struct {
	// VMs are globs (path.Match) on VM names, or VM UUIDs. Empty: every
	// VM, unless Categories select.
	VMs []string
	// Categories select the VMs that carry any of them, in addition to
	// those VMs selects (Select). Default none: VMs alone decides.
	Categories []nutanix.Category
	// Exclude are globs or UUIDs of VMs to skip.
	Exclude []string
	// ExcludeDisks are disk addresses ("scsi.1") or globs ("sata.*"), or
	// "VMGLOB:scsi.1" to exclude a disk of matching VMs only.
	ExcludeDisks []string
	// Level, default auto.
	Level Level
	// Consistency, default crash.
	Consistency Consistency
	// DataPath, default auto (on an XCP-ng pool: NBD when the pool names
	// an NBD server for the disk, else its HTTP export; PathNBD or
	// PathREST force one).
	DataPath DataPath
	// Strategy on an XCP-ng pool (RunXen), default auto.
	Strategy Strategy
	// ConcurrentVMs backed up at once, default 2.
	ConcurrentVMs int
	// ConcurrentDisks of one VM read at once, default 4.
	ConcurrentDisks int
	// ReadWorkers is the number of reads in flight per disk, default 8.
	ReadWorkers int
	// ReadSize is the size of one read, default 4 MiB (rounded up to the
	// chunk size).
	ReadSize int
	// BandwidthLimit caps the bytes per second read from the cluster, all
	// disks and VMs of the run together (0: unlimited).
	BandwidthLimit int64
	// Estimate takes the snapshots and computes the plans (bytes to read)
	// but reads nothing and stores no restore point; the snapshots are
	// deleted and the references stay as they were.
	Estimate bool
	// InitiatorIQN of this host, default iscsi.DefaultInitiatorIQN().
	InitiatorIQN string
	// ISCSIPort overrides the port of the portal the cluster names
	// (DSIP:3260); 0 keeps it.
	ISCSIPort int
	// CHAP credentials for the iSCSI login, default none.
	CHAP iscsi.CHAP
	// PreSnapshot and PostSnapshot hooks, default none.
	PreSnapshot, PostSnapshot Hook
	// Progress, default none.
	Progress Progress
	// CleanupTimeout bounds the deletion of cluster objects after a
	// failure or cancellation, default 2 minutes.
	CleanupTimeout time.Duration
	// NoPatch reads every changed chunk whole in an incremental, instead of
	// reading only its changed ranges and completing it from the parent
	// restore point.
	NoPatch bool
	// SkipCleanup does not sweep leftovers of earlier jobs at the start.
	SkipCleanup bool
	// Journal records the temporary cluster objects of the run, default
	// the repository's (REPO/journal).
	Journal *clusterjob.Journal
	// Clusters gives clients of other Prism API families: the sweep
	// deletes each leftover through the API that created it, and a VM's
	// chain continues through the API that built it. Default: only the
	// run's client.
	Clusters clusterjob.Clusters
	// LockUntil, when set, gives the end of the retention lock each new
	// restore point is committed with, from the point's time; default no
	// lock.
	LockUntil func(rpTime time.Time) time.Time
	// Now is the clock, default time.Now (tests).
	Now func() time.Time
	// Logger, default discard.
	Logger *slog.Logger
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	switch o.Level {
	case "", LevelAuto, LevelFull, LevelIncremental, LevelDifferential, LevelCopy:
	default:
		errs = append(errs, fmt.Errorf("level %q: want auto, full, incremental, differential or copy", o.Level))
	}
	switch o.Consistency {
	case "", Crash, App, AppRequired:
	default:
		errs = append(errs, fmt.Errorf("consistency %q: want crash, app or app-required", o.Consistency))
	}
	switch o.DataPath {
	case "", PathAuto, PathISCSI, PathREST, PathNBD:
	default:
		errs = append(errs, fmt.Errorf("data path %q: want auto, iscsi, nbd or rest", o.DataPath))
	}
	switch o.Strategy {
	case "", StrategyAuto, StrategyCBT, StrategyXVA:
	default:
		errs = append(errs, fmt.Errorf("strategy %q: want auto, cbt or xva", o.Strategy))
	}
	for _, g := range append(append(append([]string{}, o.VMs...), o.Exclude...), o.ExcludeDisks...) {
		if _, err := path.Match(g, ""); err != nil {
			errs = append(errs, fmt.Errorf("pattern %q: %w", g, err))
		}
	}
	for _, c := range o.Categories {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.ConcurrentVMs < 0 || o.ConcurrentDisks < 0 || o.ReadWorkers < 0 || o.ReadSize < 0 || o.BandwidthLimit < 0 {
		errs = append(errs, errors.New("concurrency, read size and bandwidth limit must not be negative"))
	}
	if o.ISCSIPort < 0 || o.ISCSIPort > 65535 {
		errs = append(errs, fmt.Errorf("iSCSI port %d out of range", o.ISCSIPort))
	}
	if (o.CHAP.User == "") != (o.CHAP.Secret == "") {
		errs = append(errs, errors.New("CHAP user and secret go together"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("backup options: %w", errors.Join(errs...))
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Level == "" {
		o.Level = LevelAuto
	}
	if o.Consistency == "" {
		o.Consistency = Crash
	}
	if o.DataPath == "" {
		o.DataPath = PathAuto
	}
	if o.Strategy == "" {
		o.Strategy = StrategyAuto
	}
	if o.ConcurrentVMs == 0 {
		o.ConcurrentVMs = 2
	}
	if o.ConcurrentDisks == 0 {
		o.ConcurrentDisks = 4
	}
	if o.ReadWorkers == 0 {
		o.ReadWorkers = 8
	}
	if o.ReadSize == 0 {
		o.ReadSize = 4 << 20
	}
	if o.InitiatorIQN == "" {
		o.InitiatorIQN = iscsi.DefaultInitiatorIQN()
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = noProgress{}
	}
	return o
}

type noProgress struct{}

func (noProgress) DiskStart(string, string, int64, int64) func(int64) { return func(int64) {} }
func (noProgress) DiskDone(string, string, error)                     {}
func (noProgress) VMDone(VMReport)                                    {}

// Report is the outcome of Run.
type Report struct {
	Start    time.Time          `json:"start"`
	Duration time.Duration      `json:"duration_ns"`
	DataPath DataPath           `json:"data_path,omitempty"`
	Cleanup  *clusterjob.Report `json:"cleanup,omitempty"`
	VMs      []VMReport         `json:"vms"`
}

// Failed counts the VMs that failed.
func (r *Report) Failed() int {
	n := 0
	for _, v := range r.VMs {
		if v.Err != "" {
			n++
		}
	}
	return n
}

// VMReport is the outcome for one VM. Err is empty on success.
type VMReport struct {
	VM           string        `json:"vm"`
	UUID         string        `json:"uuid"`
	Level        string        `json:"level,omitempty"`
	Consistency  string        `json:"consistency,omitempty"`
	RestorePoint string        `json:"restore_point,omitempty"` // VM@TIME
	ID           string        `json:"id,omitempty"`            // restore point ID
	Size         int64         `json:"size"`                    // logical bytes of the disks stored
	BytesRead    int64         `json:"bytes_read"`              // read from the cluster (or to read, with Estimate)
	BytesNew     int64         `json:"bytes_new"`               // new data stored (after dedup and compression)
	Duration     time.Duration `json:"duration_ns"`
	DataPath     DataPath      `json:"data_path,omitempty"`
	Disks        []DiskReport  `json:"disks,omitempty"`
	Warnings     []string      `json:"warnings,omitempty"`
	Err          string        `json:"error,omitempty"`
	Estimate     bool          `json:"estimate,omitempty"`
	// ExcludedDisks are the addresses ("scsi.1") of the disks
	// Options.ExcludeDisks left out; the restore point's VMConfig marks
	// them Excluded.
	ExcludedDisks []string `json:"excluded_disks,omitempty"`

	restorePoint *engine.RestorePoint
}

// RestorePointValue is the committed restore point (nil on failure or
// estimate).
func (r VMReport) RestorePointValue() *engine.RestorePoint { return r.restorePoint }

// DiskReport is the outcome for one disk.
type DiskReport struct {
	Disk      string `json:"disk"` // disk-N
	Address   string `json:"address"`
	Size      int64  `json:"size"`
	BytesRead int64  `json:"bytes_read"`
	Zero      int64  `json:"zero_bytes"`
	Unchanged int64  `json:"unchanged_bytes"`
	Reason    string `json:"reason,omitempty"` // why read in full in an incremental job
}
