package restore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/rptree"
)

// Instant restore (DataPathInstant): no byte is copied before the VM
// exists. The disks are files of the repository's tree on `ahvfs
// nfs-serve`, registered with the cluster as an external repository
// (one for each VM, see externalDisks); the VM's disks are
// backed by them with background hydration (API notes §9a). The
// repository is journaled while the VM does not exist yet, then kept: it
// goes when no VM reads from it any more (Finish, Cancel).

// ExternalRepositoryResult names the repository an instant restore used.
type ExternalRepositoryResult struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Export  string `json:"export"`
	// Hold is the ID of the hold that keeps the restore point while the
	// VM reads from it.
	Hold string `json:"hold,omitempty"`
}

// instantExport is the export nfs-serve serves: the whole tree.
const instantExport = "/"

// splitNFS parses host[:port] of the NFS server (port default 2049).
func splitNFS(s string) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("instant restore needs the address of the ahvfs NFS server as the cluster reaches it (--nfs HOST[:PORT])")
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		host, ps = s, "2049"
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 || host == "" {
		return "", 0, fmt.Errorf("--nfs %q: want HOST[:PORT]", s)
	}
	return host, port, nil
}

// checkInstant fails with nutanix.ErrUnsupported when the cluster cannot
// back disks by external files.
func checkInstant(ctx context.Context, cl nutanix.Cluster) error {
	ir, ok := cl.(nutanix.InstantRecovery)
	if !ok {
		return fmt.Errorf("instant restore: this client cannot manage external repositories: %w", nutanix.ErrUnsupported)
	}
	if _, err := ir.ListExternalRepositories(ctx, ""); err != nil {
		return fmt.Errorf("instant restore: %w", err)
	}
	return nil
}

// externalDisks registers an external repository for the NFS server and
// backs every disk of the VM spec by its file there.
func (r *run) externalDisks(ctx context.Context) (nutanix.VMSpec, error) {
	p, o := r.p, r.o
	host, port, err := splitNFS(o.NFS)
	if err != nil {
		return nutanix.VMSpec{}, err
	}
	// Each restore registers a repository of its own, even for a server
	// another VM already reads from: a repository belongs to one VM, so
	// that VM's finish or cancel can remove it without racing a restore
	// that would be about to use it.
	spec := nutanix.ExternalRepository{Name: r.jb.Name("nfs", host+"-"+strconv.Itoa(port)), ExportName: instantExport, Host: host, Port: port}
	o.Logger.Info("restore: registering the external repository", "name", spec.Name, "nfs", spec.Address())
	created, obj, err := r.jb.CreateExternalRepository(ctx, spec)
	if err != nil {
		return nutanix.VMSpec{}, err
	}
	repo := &created
	r.keep = append(r.keep, obj)
	res := &ExternalRepositoryResult{}
	res.ID, res.Name, res.Address, res.Export = repo.ID, repo.Name, repo.Address(), repo.ExportName
	r.res.ExternalRepository = res
	if err := r.holdPoint(ctx, repo.Name); err != nil {
		return nutanix.VMSpec{}, err
	}
	vm := p.spec
	// The VM says which repository it reads from: finish and cancel find
	// it there after hydration has dropped the disks' data sources.
	vm.Description += clusterjob.InstantMark + repo.Name
	vm.Disks = append([]nutanix.DiskSpec(nil), p.spec.Disks...)
	for i, d := range p.disks {
		vm.Disks[i].SizeBytes = 0 // the file's size
		vm.Disks[i].External = &nutanix.ExternalDisk{RepositoryID: repo.ID, Path: rptree.DiskPath(p.rp, d.Disk), Hydrate: true}
	}
	return vm, nil
}

// repositoryPrefix starts the names of the external repositories instant
// restores register (Job.Name "nfs" prefix): only those are removed when
// no VM reads from them any more.
const repositoryPrefix = "ahvfs-nfs-"

// InstantDisk is one disk of an instantly restored VM.
type InstantDisk struct {
	Address    string `json:"address"`
	Size       int64  `json:"size"`
	Status     string `json:"status"` // IN_PROGRESS, FAILED, DISABLED, or HYDRATED
	Remaining  int64  `json:"remaining_bytes"`
	Repository string `json:"repository,omitempty"` // ID
	Path       string `json:"path,omitempty"`
}

// InstantVM is an instantly restored VM and its hydration.
type InstantVM struct {
	Name       string        `json:"name"`
	UUID       string        `json:"uuid"`
	PowerState string        `json:"power_state"`
	Hydrated   bool          `json:"hydrated"`
	Disks      []InstantDisk `json:"disks"`
}

// hydratedInfo: the API notes leave open whether a hydrated disk drops its
// hydration info or shows 0 bytes remaining; both mean done.
func hydratedInfo(h nutanix.Hydration) bool {
	return h.RemainingBytes == 0 && h.Status != "FAILED" && h.Status != "DISABLED"
}

func instantOf(v nutanix.VM) (InstantVM, bool) {
	iv := InstantVM{Name: v.Name, UUID: v.UUID, PowerState: string(v.PowerState), Hydrated: true}
	external := false
	for _, d := range v.Disks {
		if d.IsCDROM || d.VolumeGroupUUID != "" {
			continue
		}
		id := InstantDisk{Address: d.Address(), Size: d.SizeBytes, Status: "HYDRATED"}
		if d.External != nil {
			external = true
			id.Repository, id.Path = d.External.RepositoryID, d.External.Path
			id.Status = "IN_PROGRESS"
		}
		if h := d.Hydration; h != nil && !hydratedInfo(*h) {
			external = true
			id.Status, id.Remaining = h.Status, h.RemainingBytes
		} else if h != nil && d.External != nil {
			// Hydrated, though the cluster still shows the source.
			id.Status = "HYDRATED"
		}
		iv.Hydrated = iv.Hydrated && id.Status == "HYDRATED"
		iv.Disks = append(iv.Disks, id)
	}
	return iv, external
}

// InstantStatus reports the VMs named name (any hydration state), or,
// with name "", every VM with a disk still reading from an external
// repository.
func InstantStatus(ctx context.Context, cl nutanix.Cluster, name string) ([]InstantVM, error) {
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	out := []InstantVM{}
	for _, v := range vms {
		if name != "" && v.Name != name {
			continue
		}
		iv, external := instantOf(v)
		if name != "" || external {
			out = append(out, iv)
		}
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("no VM named %q: %w", name, nutanix.ErrNotFound)
	}
	return out, nil
}

// Unfinished reports the VMs instant restores made that are not finished:
// still reading from an external repository, or hydrated while the
// external repository they were created on is still registered (Finish
// removes it, and releases the restore point's hold).
func Unfinished(ctx context.Context, cl nutanix.Cluster) ([]InstantVM, error) {
	ir, ok := cl.(nutanix.InstantRecovery)
	if !ok {
		return nil, fmt.Errorf("instant restores: this client cannot manage external repositories: %w", nutanix.ErrUnsupported)
	}
	repos, err := ir.ListExternalRepositories(ctx, "")
	if err != nil {
		return nil, err
	}
	registered := map[string]bool{}
	for _, x := range repos {
		registered[x.Name], registered[x.ID] = true, true
	}
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, err
	}
	out := []InstantVM{}
	for _, v := range vms {
		iv, external := instantOf(v)
		i := strings.LastIndex(v.Description, clusterjob.InstantMark)
		if external || i >= 0 && registered[v.Description[i+len(clusterjob.InstantMark):]] {
			out = append(out, iv)
		}
	}
	return out, nil
}

// oneVM finds the only VM named name.
func oneVM(ctx context.Context, cl nutanix.Cluster, name string) (nutanix.VM, error) {
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nutanix.VM{}, err
	}
	var found []nutanix.VM
	for _, v := range vms {
		if v.Name == name {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return nutanix.VM{}, fmt.Errorf("no VM named %q: %w", name, nutanix.ErrNotFound)
	case 1:
		return cl.GetVM(ctx, found[0].UUID)
	}
	return nutanix.VM{}, fmt.Errorf("%d VMs are named %q", len(found), name)
}

// FinishResult says what Finish did.
type FinishResult struct {
	VM                  InstantVM `json:"vm"`
	RemovedRepositories []string  `json:"removed_repositories"`
	KeptRepositories    []string  `json:"kept_repositories"` // still read by other VMs, or not ahvfs's
	// ReleasedHolds are the restore points (VM@TIME) no longer held now
	// that their external repositories are gone (SweepHolds).
	ReleasedHolds []string `json:"released_holds,omitempty"`
}

// Finish waits (polling every poll) until every disk of the VM named name
// is hydrated, then removes the external repositories it read from that
// ahvfs registered and no VM reads from any more. A disk whose hydration
// FAILED or is DISABLED ends the wait with an error.
func Finish(ctx context.Context, cl nutanix.Cluster, name string, poll time.Duration) (*FinishResult, error) {
	v, err := oneVM(ctx, cl, name)
	if err != nil {
		return nil, fmt.Errorf("finish %s: %w", name, err)
	}
	repos := clusterjob.RepositoriesOf(v)
	for {
		iv, _ := instantOf(v)
		for _, d := range iv.Disks {
			if d.Status == "FAILED" || d.Status == "DISABLED" {
				return nil, fmt.Errorf("finish %s: disk %s: hydration %s with %d bytes left: it will not end by waiting (have the cluster hydrate the disk again, or cancel)",
					name, d.Address, d.Status, d.Remaining)
			}
		}
		if iv.Hydrated {
			res := &FinishResult{VM: iv}
			res.RemovedRepositories, res.KeptRepositories, err = removeUnusedRepositories(ctx, cl, repos)
			if err == nil {
				return res, nil
			}
			if !errors.Is(err, nutanix.ErrConflict) {
				return res, fmt.Errorf("finish %s: the VM is hydrated, but: %w", name, err)
			}
			// The disks show nothing left to copy, but the cluster has
			// not let go of the repository yet: wait for it.
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return nil, fmt.Errorf("finish %s: the VM is hydrated, but the cluster still refuses to remove its repository: %w (%w)", name, ctx.Err(), err)
			}
			return nil, fmt.Errorf("finish %s: still hydrating: %w", name, ctx.Err())
		case <-time.After(poll):
		}
		if v, err = cl.GetVM(ctx, v.UUID); err != nil {
			return nil, fmt.Errorf("finish %s: %w", name, err)
		}
	}
}

// Cancel deletes the instantly restored VM named name, which must still
// read from an external repository (a hydrated VM is a complete VM: delete
// it in Prism if that is meant), then removes the repositories as Finish
// does.
func Cancel(ctx context.Context, cl nutanix.Cluster, name string) (*FinishResult, error) {
	v, err := oneVM(ctx, cl, name)
	if err != nil {
		return nil, fmt.Errorf("cancel %s: %w", name, err)
	}
	iv, external := instantOf(v)
	if !external || !strings.Contains(v.Description, clusterjob.InstantMark) {
		return nil, fmt.Errorf("cancel %s: not an ahvfs instant restore still reading from its external repository (hydrated, or made otherwise): not deleted", name)
	}
	res, err := DeleteVM(ctx, cl, v)
	if res != nil {
		res.VM = iv
	}
	if err != nil {
		return res, fmt.Errorf("cancel %s: %w", name, err)
	}
	return res, nil
}

// DeleteVM powers off and deletes a VM a restore made (v as the cluster
// gave it), instant or not, hydrated or not, then the external
// repositories it read from that ahvfs registered and no VM reads from
// any more (a failover's undo). A VM gone meanwhile is no error.
func DeleteVM(ctx context.Context, cl nutanix.Cluster, v nutanix.VM) (*FinishResult, error) {
	repos := clusterjob.RepositoriesOf(v)
	if v.PowerState != nutanix.PowerOff {
		if err := cl.SetPowerState(ctx, v.UUID, nutanix.PowerOff); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
			return nil, err
		}
	}
	if err := cl.DeleteVM(ctx, v.UUID); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
		return nil, err
	}
	res := &FinishResult{}
	var err error
	res.RemovedRepositories, res.KeptRepositories, err = removeUnusedRepositories(ctx, cl, repos)
	if err != nil {
		return res, fmt.Errorf("the VM is deleted, but: %w", err)
	}
	return res, nil
}

// RemoveRepositories deletes the external repositories named (ID or
// name) that ahvfs registered and no VM disk reads from; it returns those
// removed and those kept (still read, or not ahvfs's). One that is gone
// is neither.
func RemoveRepositories(ctx context.Context, cl nutanix.Cluster, names []string) (removed, kept []string, err error) {
	ids := map[string]bool{}
	for _, n := range names {
		ids[n] = true
	}
	return removeUnusedRepositories(ctx, cl, ids)
}

// removeUnusedRepositories deletes the repositories named by ids (ID or
// name) that ahvfs registered and no VM disk reads from.
func removeUnusedRepositories(ctx context.Context, cl nutanix.Cluster, ids map[string]bool) (removed, kept []string, err error) {
	removed, kept = []string{}, []string{}
	if len(ids) == 0 {
		return removed, kept, nil
	}
	ir, ok := cl.(nutanix.InstantRecovery)
	if !ok {
		return nil, nil, fmt.Errorf("external repositories: %w", nutanix.ErrUnsupported)
	}
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, nil, err
	}
	used := map[string]bool{}
	for _, v := range vms {
		for _, d := range v.Disks {
			if d.External != nil && (d.Hydration == nil || !hydratedInfo(*d.Hydration)) {
				used[d.External.RepositoryID] = true
			}
		}
	}
	repos, err := ir.ListExternalRepositories(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, x := range repos {
		if !ids[x.ID] && !ids[x.Name] {
			continue
		}
		if used[x.ID] || !strings.HasPrefix(x.Name, repositoryPrefix) {
			kept = append(kept, x.Name)
			continue
		}
		if err := ir.DeleteExternalRepository(ctx, x.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, x.Name)
	}
	return removed, kept, errors.Join(errs...)
}
