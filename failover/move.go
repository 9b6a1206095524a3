package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// leg is one VM of a move with no data lost (a planned failover, a
// failback) at the site it leaves: the fields of the state its shutdown
// and last backup read and record.
type leg struct {
	stage     int
	vm        string // its name there, and in the repository
	uuid      string // at the site it leaves
	status    *string
	shutdown  *string
	point     *string
	pointTime *time.Time
	// before, if set, runs as the VM's shutdown begins; first says it did
	// not begin in an earlier run.
	before func(first bool) error
	// record saves a new status in the state.
	record func(status string) error
}

// shutDown shuts the legs' VMs down, the last stage's first (the
// applications before the databases they use). A VM shut down by an
// earlier run is checked off again: one that something started since is
// shut down again and, if backed up already, backed up again (its last
// backup predates what it wrote since).
func shutDown(ctx context.Context, p *Plan, cl nutanix.Cluster, legs []leg, site string, log *slog.Logger) error {
	for stage := len(p.Stage); stage >= 1; stage-- {
		for _, l := range legs {
			if l.stage != stage {
				continue
			}
			log := log.With("vm", l.vm, "site", site)
			switch *l.status {
			case VMPending, VMStopping:
				if l.before != nil {
					if err := l.before(*l.status == VMPending); err != nil {
						return err
					}
				}
				if err := l.record(VMStopping); err != nil {
					return err
				}
				how, err := powerDown(ctx, cl, l.uuid, p.shutdownTimeout, log)
				if err != nil {
					return fmt.Errorf("shut down %s at the %s site: %w (run the command again to go on)", l.vm, site, err)
				}
				*l.shutdown = how
				if err := l.record(VMStopped); err != nil {
					return err
				}
			case VMStopped, VMBackedUp:
				how, err := powerDown(ctx, cl, l.uuid, p.shutdownTimeout, log)
				if err != nil {
					return fmt.Errorf("shut down %s at the %s site: %w (run the command again to go on)", l.vm, site, err)
				}
				if how != "" {
					log.Warn("the VM was running again: shut down again", "how", how)
					*l.shutdown = how
					if err := l.record(VMStopped); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// backUpAndSync backs the stopped legs' VMs up last into from (an
// incremental where a chain exists) and syncs every leg's point to the
// repository to (named toName in errors); it returns the bytes sent.
func backUpAndSync(ctx context.Context, p *Plan, site clusterjob.Site, cl *nutanix.Client, conn *clusterjob.Connector, from, to *engine.Repository,
	legs []leg, toName string, log *slog.Logger) (int64, error) {
	var uuids []string
	for _, l := range legs {
		if *l.status == VMStopped {
			uuids = append(uuids, l.uuid)
		}
	}
	points, err := backupVMs(ctx, site, p.DataPath, cl, conn, from, uuids, log)
	for _, l := range legs {
		if rp := points[l.uuid]; rp != nil && *l.status == VMStopped {
			*l.point, *l.pointTime = rp.Name(), rp.Time
			if err := l.record(VMBackedUp); err != nil {
				return 0, err
			}
		}
	}
	if err != nil {
		return 0, err
	}
	var names, want []string
	for _, l := range legs {
		names, want = append(names, l.vm), append(want, *l.point)
	}
	return syncPoints(ctx, from, to, names, want, toName)
}

// bringUpStages brings the state's VMs up at the target stage by stage,
// from the stage after *done: slotOf gives a VM's slot (nil: up
// already). After each stage its delay and script run, and *done counts
// it in the saved state.
func (t *target) bringUpStages(ctx context.Context, p *Plan, s *State, done *int, slotOf func(v *VMState) *slot) error {
	for stage := *done + 1; stage <= len(p.Stage); stage++ {
		// The VMs of a stage come up side by side, p.Parallel at a time,
		// started in the plan's order; a VM that fails does not stop its
		// siblings, and the next stage waits until every VM of this one is
		// on. Once ctx ends no more are started.
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		type vmSlot struct {
			vm string
			sl *slot
		}
		var slots []vmSlot
		t.mu.Lock()
		for i := range s.VMs {
			v := &s.VMs[i]
			if v.Stage != stage {
				continue
			}
			if sl := slotOf(v); sl != nil {
				slots = append(slots, vmSlot{v.VM, sl})
			}
		}
		t.mu.Unlock()
		sem := make(chan struct{}, max(p.Parallel, 1))
	start:
		for _, x := range slots {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				errs = append(errs, fmt.Errorf("stage %d: %w", stage, ctx.Err()))
				mu.Unlock()
				break start
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := t.bringUp(ctx, *x.sl); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stage %d: %s: %w", stage, x.vm, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if err := afterStage(ctx, p.Stage[stage-1], stage, s, t.log); err != nil {
			return fmt.Errorf("stage %d: %w", stage, err)
		}
		*done = stage
		if err := s.save(); err != nil {
			return err
		}
	}
	return nil
}
