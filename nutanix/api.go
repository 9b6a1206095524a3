package nutanix

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// Inventory reads what the cluster has. Every method is read-only and safe
// to call concurrently and repeatedly.
type Inventory interface {
	// ListVMs returns every user VM, following pages until the server
	// reports no more.
	ListVMs(ctx context.Context) ([]VM, error)
	// GetVM returns one VM; ErrNotFound if it does not exist.
	GetVM(ctx context.Context, uuid string) (VM, error)
	// ListClusters returns the Prism Element clusters (not Prism Central
	// itself) with their Data Services IP.
	ListClusters(ctx context.Context) ([]ClusterInfo, error)
	// ListSubnets returns every subnet (restore network mapping).
	ListSubnets(ctx context.Context) ([]Subnet, error)
	// ListStorageContainers returns the storage containers of every
	// Prism Element cluster (v4 clustermgmt storage-containers; v2.0
	// storage_containers of the one PE), so a container can be named.
	ListStorageContainers(ctx context.Context) ([]StorageContainer, error)
	// ClusterCapacity returns the memory and the storage containers' free
	// space of one Prism Element cluster (capacity.go says where each API
	// keeps them). Figures the API does not give are Unknown, with a note.
	ClusterCapacity(ctx context.Context, clusterUUID string) (Capacity, error)
	// VMsInCategories returns the UUIDs of the VMs that carry any of
	// cats (v3 category/query CATEGORIES_MATCH_ANY; v4 each category's
	// detailed associations), each once, following pages. A category
	// that does not exist or that no VM carries adds nothing; a category
	// with an empty key or value is an error. No categories: none.
	VMsInCategories(ctx context.Context, cats []Category) ([]string, error)
}

// Snapshots creates, reads and deletes VM snapshots and reads their
// changed regions.
type Snapshots interface {
	// CreateSnapshot snapshots one VM and waits until the snapshot is
	// usable (task SUCCEEDED / state COMPLETE with its disks listed). It is
	// not idempotent: a retried call makes a second snapshot, so callers
	// record the name first and sweep leftovers by name. The returned
	// Consistency is what the cluster delivered, which may be
	// CRASH_CONSISTENT although appConsistent was asked (no NGT/VSS).
	CreateSnapshot(ctx context.Context, vmUUID, name string, appConsistent bool) (Snapshot, error)
	// GetSnapshot re-reads a snapshot by ID, whichever API made it (its
	// API field says which); ErrNotFound when no snapshot namespace the
	// endpoint serves has it, ErrUnsupported when one of them could not be
	// asked (see deletes.go).
	GetSnapshot(ctx context.Context, id string) (Snapshot, error)
	// ListSnapshots returns the snapshots of one VM ("" for every VM).
	ListSnapshots(ctx context.Context, vmUUID string) ([]Snapshot, error)
	// DeleteSnapshot deletes a snapshot, whichever API made it, and waits
	// for the task. Idempotent: a snapshot that no snapshot namespace of
	// the endpoint holds counts as deleted; when one of them could not be
	// asked the answer is an error (ErrUnsupported), never success for a
	// deletion that did not happen (see deletes.go).
	DeleteSnapshot(ctx context.Context, id string) error
	// ChangedRegions calls fn for each region of q's window in ascending,
	// non-overlapping order, following the server's paging (next_offset /
	// nextOffset). Regions are clipped to the window. Without a reference
	// every allocated region is reported; with one, the regions that
	// differ. fn's error stops the walk and is returned as is.
	// ErrUnsupported when the endpoint cannot serve changed regions (v3 on
	// Prism Central).
	ChangedRegions(ctx context.Context, q RegionQuery, fn func(Region) error) error
}

// DataPath exposes disks over iSCSI through temporary volume groups: a
// snapshot disk for a backup to read, blank disks for a restore to write.
type DataPath interface {
	// CreateVolumeGroupFromSnapshotDisk clones one disk of snap into a new
	// volume group named name and waits for the task. Not idempotent.
	CreateVolumeGroupFromSnapshotDisk(ctx context.Context, snap Snapshot, diskUUID, name string) (VolumeGroup, error)
	// CreateBlankVolumeGroup creates a volume group of blank disks of
	// spec.DiskSizes and waits for every task (v4: the group, then one
	// task per disk; v2: one create_config task). The returned Disks are
	// in the order of spec.DiskSizes (index i). Not idempotent: a retried
	// call makes a second group. On failure the client deletes what it
	// created (best effort) and still returns the group's UUID when it
	// knows it; a failed task can nevertheless leave a group behind
	// (§9), so callers give unique names and reconcile with
	// ListVolumeGroups.
	CreateBlankVolumeGroup(ctx context.Context, spec VolumeGroupSpec) (VolumeGroup, error)
	// ListVolumeGroups returns the volume groups named name ("": all),
	// with their disks. Read-only.
	ListVolumeGroups(ctx context.Context, name string) ([]VolumeGroup, error)
	// AttachISCSIClient allows initiatorIQN to log in to the volume group
	// and returns the target and the portal (Data Services IP:3260).
	// Attaching an already attached initiator succeeds.
	AttachISCSIClient(ctx context.Context, vgUUID, initiatorIQN string) (ISCSITarget, error)
	// DetachISCSIClient removes the initiator's access. Idempotent.
	DetachISCSIClient(ctx context.Context, vgUUID, initiatorIQN string) error
	// DeleteVolumeGroup deletes the volume group and waits. Idempotent: a
	// group that is not there (DELETE and GET answer 404) counts as
	// deleted; one the backend cannot address (v3 without v2.0) is an
	// error.
	DeleteVolumeGroup(ctx context.Context, vgUUID string) error
}

// Provisioner creates what a restore needs: images and VMs.
type Provisioner interface {
	// CreateImage creates an image (fetched from spec.SourceURL, or empty
	// awaiting UploadImage) and waits for the task.
	CreateImage(ctx context.Context, spec ImageSpec) (Image, error)
	// GetImage reads an image; ErrNotFound when gone.
	GetImage(ctx context.Context, uuid string) (Image, error)
	// UploadImage streams size bytes from r into an image created without
	// a source. An image's bytes cannot be changed once uploaded. Not
	// retried (the body is a stream).
	UploadImage(ctx context.Context, uuid string, r io.Reader, size int64) error
	// DownloadImage streams length bytes from offset (length 0: to the
	// end). The caller closes the reader.
	DownloadImage(ctx context.Context, uuid string, offset, length int64) (io.ReadCloser, error)
	// DeleteImage deletes an image and waits. Idempotent: an image that is
	// not there (DELETE and GET answer 404) counts as deleted.
	DeleteImage(ctx context.Context, uuid string) error
	// ListImages returns the images named name ("": all). Read-only; used
	// to reconcile a create whose task failed.
	ListImages(ctx context.Context, name string) ([]Image, error)
	// CreateVM creates a VM (powered off) and waits; returns its UUID.
	// Disks may be blank, clones of images (ImageUUID) or of volume group
	// disks (VolumeDiskUUID: v4 VolumeDiskReference; v3 a vm_disk data
	// source naming the VG disk's vmdisk_uuid). Not idempotent: a failed
	// task can leave a VM, so callers reconcile by name.
	CreateVM(ctx context.Context, spec VMSpec) (string, error)
	// SetPowerState powers a VM on or off (hard) and waits. Setting the
	// state it already has succeeds.
	SetPowerState(ctx context.Context, vmUUID string, state PowerState) error
	// ShutdownVM asks a VM's guest to shut down: through Nutanix Guest
	// Tools when guest (the VM needs NGT), else by ACPI. It waits for the
	// request's task, not for the VM to be off: a guest may take its time
	// or ignore the request, so callers poll GetVM and power off hard
	// after a timeout. A VM already off succeeds.
	ShutdownVM(ctx context.Context, vmUUID string, guest bool) error
	// DeleteVM deletes a VM and waits. Idempotent: a VM that is not there
	// (DELETE and GET answer 404) counts as deleted.
	DeleteVM(ctx context.Context, uuid string) error
}

// Cluster is the version-neutral Prism API the backup and restore jobs
// use. Implementations: v4 and v3+v2, chosen by Options.API; *Client
// forwards to the one Probe picked. All methods take ctx first and are
// safe for concurrent use.
type Cluster interface {
	Inventory
	Snapshots
	DataPath
	Provisioner
	// API names the API family serving the calls (APIV4 or APIV3).
	API() APIVersion
	// WaitTask polls a task until it is terminal or the deadline
	// (Options.TaskTimeout or ctx) passes: ErrTaskTimeout. A task that ends
	// FAILED/ABORTED/CANCELED returns the task and a *TaskError.
	WaitTask(ctx context.Context, taskID string) (Task, error)
}

// Client is the entry point: New builds it (no I/O), Probe picks the
// backend. Every Cluster method probes on first use if Probe was not
// called. Close releases idle connections.
type Client struct {
	opts      Options
	rest      *rest
	transport *http.Transport

	mu      sync.Mutex
	backend Cluster
	report  *ProbeReport
}

var _ Cluster = (*Client)(nil)

// New validates opts and builds the client. It does no network I/O. With
// Insecure it logs a warning.
func New(opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	opts.API, _ = ParseAPIVersion(string(opts.API))
	pw, err := opts.password()
	if err != nil {
		return nil, err
	}
	base, _ := opts.BaseURL()
	hc, tr, err := newHTTPClient(opts, pw)
	if err != nil {
		return nil, err
	}
	if opts.Insecure {
		opts.Logger.Warn("TLS certificate verification is disabled (--insecure): use only in a lab", "endpoint", base.Host)
	}
	return &Client{opts: opts, rest: &rest{base: base, hc: hc, log: opts.Logger}, transport: tr}, nil
}

// Connect is New followed by Probe.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if _, err := c.Probe(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close releases idle connections. The client must not be used afterwards.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// Endpoint returns the normalised base URL.
func (c *Client) Endpoint() string { return c.rest.base.String() }

// Report returns the last probe report (zero before Probe).
func (c *Client) Report() ProbeReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.report == nil {
		return ProbeReport{}
	}
	return *c.report
}

func (c *Client) setBackend(b Cluster, rep ProbeReport) {
	c.mu.Lock()
	c.backend, c.report = b, &rep
	c.mu.Unlock()
	c.opts.Logger.Info("prism API selected", "api", rep.Selected, "reason", rep.Reason)
}

// b returns the backend, probing first if needed.
func (c *Client) b(ctx context.Context) (Cluster, error) {
	c.mu.Lock()
	b := c.backend
	c.mu.Unlock()
	if b != nil {
		return b, nil
	}
	if _, err := c.Probe(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.backend, nil
}

// API implements Cluster ("" before the probe).
func (c *Client) API() APIVersion {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backend == nil {
		return ""
	}
	return c.backend.API()
}

func (c *Client) ListVMs(ctx context.Context) ([]VM, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListVMs(ctx)
}

func (c *Client) GetVM(ctx context.Context, uuid string) (VM, error) {
	b, err := c.b(ctx)
	if err != nil {
		return VM{}, err
	}
	return b.GetVM(ctx, uuid)
}

func (c *Client) ListClusters(ctx context.Context) ([]ClusterInfo, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListClusters(ctx)
}

func (c *Client) ListSubnets(ctx context.Context) ([]Subnet, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListSubnets(ctx)
}

func (c *Client) ListStorageContainers(ctx context.Context) ([]StorageContainer, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListStorageContainers(ctx)
}

func (c *Client) ClusterCapacity(ctx context.Context, clusterUUID string) (Capacity, error) {
	b, err := c.b(ctx)
	if err != nil {
		return Capacity{}, err
	}
	return b.ClusterCapacity(ctx, clusterUUID)
}

func (c *Client) VMsInCategories(ctx context.Context, cats []Category) ([]string, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.VMsInCategories(ctx, cats)
}

func (c *Client) CreateSnapshot(ctx context.Context, vmUUID, name string, appConsistent bool) (Snapshot, error) {
	b, err := c.b(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	return b.CreateSnapshot(ctx, vmUUID, name, appConsistent)
}

func (c *Client) GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	b, err := c.b(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	return b.GetSnapshot(ctx, id)
}

func (c *Client) ListSnapshots(ctx context.Context, vmUUID string) ([]Snapshot, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListSnapshots(ctx, vmUUID)
}

func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.DeleteSnapshot(ctx, id)
}

func (c *Client) ChangedRegions(ctx context.Context, q RegionQuery, fn func(Region) error) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.ChangedRegions(ctx, q, fn)
}

func (c *Client) CreateVolumeGroupFromSnapshotDisk(ctx context.Context, snap Snapshot, diskUUID, name string) (VolumeGroup, error) {
	b, err := c.b(ctx)
	if err != nil {
		return VolumeGroup{}, err
	}
	return b.CreateVolumeGroupFromSnapshotDisk(ctx, snap, diskUUID, name)
}

func (c *Client) CreateBlankVolumeGroup(ctx context.Context, spec VolumeGroupSpec) (VolumeGroup, error) {
	b, err := c.b(ctx)
	if err != nil {
		return VolumeGroup{}, err
	}
	return b.CreateBlankVolumeGroup(ctx, spec)
}

func (c *Client) ListVolumeGroups(ctx context.Context, name string) ([]VolumeGroup, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListVolumeGroups(ctx, name)
}

func (c *Client) AttachISCSIClient(ctx context.Context, vgUUID, initiatorIQN string) (ISCSITarget, error) {
	b, err := c.b(ctx)
	if err != nil {
		return ISCSITarget{}, err
	}
	return b.AttachISCSIClient(ctx, vgUUID, initiatorIQN)
}

func (c *Client) DetachISCSIClient(ctx context.Context, vgUUID, initiatorIQN string) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.DetachISCSIClient(ctx, vgUUID, initiatorIQN)
}

func (c *Client) DeleteVolumeGroup(ctx context.Context, vgUUID string) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.DeleteVolumeGroup(ctx, vgUUID)
}

func (c *Client) CreateImage(ctx context.Context, spec ImageSpec) (Image, error) {
	b, err := c.b(ctx)
	if err != nil {
		return Image{}, err
	}
	return b.CreateImage(ctx, spec)
}

func (c *Client) GetImage(ctx context.Context, uuid string) (Image, error) {
	b, err := c.b(ctx)
	if err != nil {
		return Image{}, err
	}
	return b.GetImage(ctx, uuid)
}

func (c *Client) UploadImage(ctx context.Context, uuid string, r io.Reader, size int64) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.UploadImage(ctx, uuid, r, size)
}

func (c *Client) DownloadImage(ctx context.Context, uuid string, offset, length int64) (io.ReadCloser, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.DownloadImage(ctx, uuid, offset, length)
}

func (c *Client) DeleteImage(ctx context.Context, uuid string) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.DeleteImage(ctx, uuid)
}

func (c *Client) ListImages(ctx context.Context, name string) ([]Image, error) {
	b, err := c.b(ctx)
	if err != nil {
		return nil, err
	}
	return b.ListImages(ctx, name)
}

func (c *Client) CreateVM(ctx context.Context, spec VMSpec) (string, error) {
	b, err := c.b(ctx)
	if err != nil {
		return "", err
	}
	return b.CreateVM(ctx, spec)
}

func (c *Client) SetPowerState(ctx context.Context, vmUUID string, state PowerState) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.SetPowerState(ctx, vmUUID, state)
}

func (c *Client) ShutdownVM(ctx context.Context, vmUUID string, guest bool) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.ShutdownVM(ctx, vmUUID, guest)
}

func (c *Client) DeleteVM(ctx context.Context, uuid string) error {
	b, err := c.b(ctx)
	if err != nil {
		return err
	}
	return b.DeleteVM(ctx, uuid)
}

func (c *Client) WaitTask(ctx context.Context, taskID string) (Task, error) {
	b, err := c.b(ctx)
	if err != nil {
		return Task{}, err
	}
	return b.WaitTask(ctx, taskID)
}
