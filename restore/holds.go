package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// An instant restore holds its restore point (engine.Hold) while a VM
// hydrates from it, so that forget and prune leave the point in place. The
// hold is added once the external repository exists and lasts as long as
// that repository: its Site is the Prism endpoint, its Object the
// repository's name. Finish and cancel remove the repository and then the
// holds whose repository is gone (SweepHolds); so does every restore and
// `ahvfs cleanup`, for an instant restore killed before its VM existed.
// Listing the holds before the repositories keeps a running restore's hold:
// its repository was created before its hold.

// Holder is a repository that can hold restore points (engine.Repository).
type Holder interface {
	AddHold(ctx context.Context, rp *engine.RestorePoint, h engine.Hold) (engine.Hold, error)
	RemoveHold(ctx context.Context, id string) error
	Holds(ctx context.Context) ([]engine.Hold, error)
}

var _ Holder = (*engine.Repository)(nil)

// siteOf is the Prism endpoint of cl, or "" when it has none to give.
func siteOf(cl nutanix.Cluster) string {
	if e, ok := cl.(interface{ Endpoint() string }); ok {
		return e.Endpoint()
	}
	return ""
}

// holdPoint holds the restore point for the VM about to read it through
// external repository repoName.
func (r *run) holdPoint(ctx context.Context, repoName string) error {
	h, ok := r.src.(Holder)
	site := siteOf(r.cl)
	if !ok || site == "" {
		r.unheld(fmt.Errorf("this repository or cluster client cannot hold it"))
		return nil
	}
	hold, err := h.AddHold(ctx, r.p.rp, engine.Hold{
		Reason: fmt.Sprintf("instant restore of VM %s hydrates from it through external repository %s (the hold goes with 'ahvfs instant-restore finish %s --repo ...' or 'cancel', or 'ahvfs cleanup' once that repository is gone)",
			r.p.name, repoName, r.p.name),
		Site: site, Object: repoName,
	})
	switch {
	case errors.Is(err, engine.ErrNotFound): // being forgotten, or gone
		return fmt.Errorf("instant restore: %w", err)
	case err != nil:
		// No hold (a repository this host may only read, say): the VM
		// runs all the same, and the user is told what that risks.
		r.unheld(err)
		return nil
	}
	r.hold = &hold
	r.res.ExternalRepository.Hold = hold.ID
	return nil
}

// unheld warns that the restore point could not be held.
func (r *run) unheld(why error) {
	msg := fmt.Sprintf("%s is not held while the VM hydrates from it (%v): do not forget or prune it until 'instant-restore finish' is done", r.p.rp.Name(), why)
	r.o.Logger.Warn("restore: " + msg)
	r.res.Warnings = append(r.res.Warnings, msg)
}

// dropHold removes the hold of a restore that failed (its repository is
// gone with the job's teardown); a hold it cannot remove is swept later.
func (r *run) dropHold(ctx context.Context) error {
	if r.hold == nil {
		return nil
	}
	return r.src.(Holder).RemoveHold(context.WithoutCancel(ctx), r.hold.ID) // set only for a Holder
}

// SweepHolds removes the holds of instant restores on cl whose external
// repository no longer exists there, and returns them. Holds made through
// another Prism, and all of them when cl cannot list external
// repositories, are left alone.
func SweepHolds(ctx context.Context, h Holder, cl nutanix.Cluster) ([]engine.Hold, error) {
	site := siteOf(cl)
	if site == "" {
		return nil, nil
	}
	holds, err := h.Holds(ctx) // before the repositories: see above
	if err != nil {
		return nil, fmt.Errorf("sweep holds: %w", err)
	}
	var mine []engine.Hold
	for _, x := range holds {
		if x.Site == site && strings.HasPrefix(x.Object, repositoryPrefix) {
			mine = append(mine, x)
		}
	}
	if len(mine) == 0 {
		return nil, nil
	}
	ir, ok := cl.(nutanix.InstantRecovery)
	if !ok {
		return nil, nil
	}
	repos, err := ir.ListExternalRepositories(ctx, "")
	if errors.Is(err, nutanix.ErrUnsupported) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep holds: %w", err)
	}
	exists := map[string]bool{}
	for _, x := range repos {
		exists[x.Name] = true
	}
	var gone []engine.Hold
	for _, x := range mine {
		if exists[x.Object] {
			continue
		}
		if err := h.RemoveHold(ctx, x.ID); err != nil {
			return gone, fmt.Errorf("sweep holds: %w", err)
		}
		gone = append(gone, x)
	}
	return gone, nil
}
