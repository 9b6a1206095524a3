package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/rptree"
)

// Files straight back into a running guest (vmm v4.3
// transfer-files-to-guest): the restore point's disk is read by the
// cluster from the ahvfs NFS export, registered as an external repository
// for the time of the copy (journaled, removed at the end), and the
// cluster writes the files into the VM through its guest tools.

// DiskFiles are the files to copy out of one disk of the restore point.
type DiskFiles struct {
	Disk  int                 `json:"disk"` // disk-N
	Files []nutanix.GuestFile `json:"files"`
}

// GuestFilesOptions configure FilesToGuest.
type GuestFilesOptions struct {
	// VM is the running VM receiving the files, by name.
	VM string
	// NFS is the ahvfs NFS server exporting this repository's tree, as
	// the cluster reaches it: host[:port].
	NFS string
	// Credential logs the cluster in to the guest.
	Credential nutanix.GuestCredential
	// Journal, Clusters, SkipCleanup and CleanupTimeout as in Options.
	Journal        *clusterjob.Journal
	Clusters       clusterjob.Clusters
	SkipCleanup    bool
	CleanupTimeout time.Duration
	Logger         *slog.Logger
}

// GuestFilesResult says what FilesToGuest copied.
type GuestFilesResult struct {
	RestorePoint string        `json:"restore_point"`
	VM           string        `json:"vm"`
	VMUUID       string        `json:"vm_uuid"`
	Files        int           `json:"files"`
	Repository   string        `json:"external_repository"` // registered for the copy, then removed
	Duration     time.Duration `json:"duration_ns"`
}

// FilesToGuest copies sets (files of the restore point rp's disks) into
// the running VM o.VM.
func FilesToGuest(ctx context.Context, cl nutanix.Cluster, repo *engine.Repository, rp *engine.RestorePoint, sets []DiskFiles, o GuestFilesOptions) (*GuestFilesResult, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	fail := func(err error) (*GuestFilesResult, error) {
		return nil, fmt.Errorf("restore files of %s into VM %s: %w", rp.Name(), o.VM, err)
	}
	ft, ok := cl.(nutanix.GuestFileTransfer)
	if !ok {
		return fail(fmt.Errorf("this client cannot copy files into guests: %w", nutanix.ErrUnsupported))
	}
	if o.Credential.Username == "" {
		return fail(errors.New("no guest credentials"))
	}
	// What the cluster lacks is said before anything is created.
	if err := ft.CheckGuestFileTransfer(ctx); err != nil {
		return fail(err)
	}
	host, port, err := splitNFS(o.NFS)
	if err != nil {
		return fail(err)
	}
	res := &GuestFilesResult{RestorePoint: rp.Name(), VM: o.VM}
	for _, s := range sets {
		if _, err := rp.Disk(s.Disk); err != nil {
			return fail(err)
		}
		res.Files += len(s.Files)
	}
	j := o.Journal
	if j == nil {
		if j, err = clusterjob.RepositoryJournal(repo); err != nil {
			return fail(err)
		}
	}
	if _, err := sweepBefore(ctx, j, cl, o.Clusters, o.SkipCleanup, o.Logger); err != nil {
		return fail(err)
	}
	vm, err := oneVM(ctx, cl, o.VM)
	if err != nil {
		return fail(err)
	}
	switch {
	case vm.PowerState != nutanix.PowerOn:
		return fail(fmt.Errorf("the VM is %s: files go into a running guest (power it on first)", vm.PowerState))
	case !vm.NGT.Installed || !vm.NGT.Enabled:
		return fail(errors.New("the VM has no enabled Nutanix Guest Tools: the cluster copies files through them (install and enable NGT in the guest)"))
	case !vm.NGT.Reachable:
		return fail(errors.New("the VM's Nutanix Guest Tools do not answer the cluster (check the guest's NGT service and its network)"))
	}
	res.VMUUID = vm.UUID
	start := time.Now()
	err = j.Run(ctx, "restore-file", cl, clusterjob.JobOptions{CleanupTimeout: o.CleanupTimeout, Logger: o.Logger}, func(jb *clusterjob.Job) error {
		spec := nutanix.ExternalRepository{Name: jb.Name("nfs", host+"-"+strconv.Itoa(port)), ExportName: instantExport, Host: host, Port: port}
		o.Logger.Info("restore-file: registering the external repository", "name", spec.Name, "nfs", spec.Address())
		created, _, err := jb.CreateExternalRepository(ctx, spec)
		if err != nil {
			return err
		}
		res.Repository = created.Name
		for _, s := range sets {
			d, _ := rp.Disk(s.Disk)
			path := rptree.DiskPath(rp, d)
			o.Logger.Info("restore-file: copying into the guest", "vm", vm.Name, "disk", path, "files", len(s.Files))
			// Once asked, the cluster copies on its own: an interrupted
			// command still waits for the task (up to the client's task
			// timeout; a second signal exits at once), so that the
			// repository is not removed from under a copy in progress.
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := ft.TransferFilesToGuest(context.WithoutCancel(ctx), vm.UUID, o.Credential, created.ID, path, s.Files); err != nil {
				return fmt.Errorf("%w (existing files are replaced only with --overwrite; the guest's login is in --guest-credentials-file)", err)
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	res.Duration = time.Since(start)
	return res, nil
}
