package failover

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// openRepo opens the DR repository, to read unless writable.
func openRepo(ctx context.Context, p *Plan, writable bool) (*engine.Repository, error) {
	return openRepository(ctx, "DR repository", p.Repository, p.PasswordFile, writable)
}

// openRepository opens the repository at location (what names it in
// errors) with the password in pwFile (none: unencrypted).
func openRepository(ctx context.Context, what, location, pwFile string, writable bool) (*engine.Repository, error) {
	var pw []byte
	if pwFile != "" {
		var err error
		if pw, err = engine.ReadPasswordFile(pwFile); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	r, err := engine.Open(ctx, location, engine.OpenOptions{Password: pw, Writable: writable})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, location, err)
	}
	return r, nil
}

// planState is a plan's state as a failover, undo or status reads it:
// the DR repository opened to read, the state's file, the state (nil when
// there is none) and, for a failover or undo, the plan's lock.
type planState struct {
	r    *engine.Repository
	file string
	s    *State
	lock *os.File
}

// openState opens the DR repository (to read unless writable) and, with lock, takes the
// plan's lock (lockPlan), then loads the plan's state from the
// repository's state directory. A state made at another DR site than the
// plan names now is refused. Close the planState.
func openState(ctx context.Context, p *Plan, lock, writable bool) (*planState, error) {
	r, err := openRepo(ctx, p, writable)
	if err != nil {
		return nil, err
	}
	ps := &planState{r: r}
	if err := ps.load(p, lock); err != nil {
		ps.close()
		return nil, err
	}
	return ps, nil
}

func (ps *planState) load(p *Plan, lock bool) error {
	dir, err := ps.r.StateDir()
	if err != nil {
		return err
	}
	ps.file = stateFile(dir, p.Name, p.File)
	if lock {
		if ps.lock, err = lockPlan(ps.file); err != nil {
			return err
		}
	}
	if ps.s, err = loadState(ps.file); err != nil {
		return err
	}
	if site := p.site(p.TargetCluster).Prism; ps.s != nil && ps.s.Site != site {
		return fmt.Errorf("plan %s: its failover state names the DR site %s, the plan now names %s: put target_cluster back, or check the VMs of %s by hand",
			p.Name, ps.s.Site, site, ps.file)
	}
	return nil
}

// close releases the lock and closes the repository.
func (ps *planState) close() {
	if ps.lock != nil {
		ps.lock.Close()
	}
	ps.r.Close()
}

// begin returns the state a failover of mode goes on with: a new one, or
// the plan's state when a failover of mode was killed or failed before
// its end (it resumes). Any other failover of the plan that is up must be
// undone first.
func (ps *planState) begin(p *Plan, mode string) (*State, error) {
	old := ps.s
	switch {
	case old != nil && old.Mode == mode && !old.Done:
		return old, nil
	case old != nil && old.up():
		return old, fmt.Errorf("a %s failover of plan %s is up since %s: run ahvfs failover undo first", old.Mode, p.Name, engine.FormatTime(old.Started))
	}
	s := &State{V: stateVersion, Plan: p.File, Mode: mode, Site: p.site(p.TargetCluster).Prism, Started: time.Now().UTC(), file: ps.file}
	return s, s.save()
}
