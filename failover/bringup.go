package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Options wire a failover to this host.
type Options struct {
	// Logger, default discard.
	Logger *slog.Logger
	// TuneCluster adjusts the Prism client options (tests).
	TuneCluster func(*nutanix.Options)
	// Progress, when set, is told of each VM's step.
	Progress func(v VMState)
	// Force runs an unplanned failover while the source site runs the
	// plan's VMs, and undoes a failover that is not a test.
	Force bool
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// stageVMs is what one stage restores: each VM's newest restore point in
// the DR repository.
type stageVMs struct {
	stage  int
	points []*engine.RestorePoint
}

// resolve picks, stage by stage, the newest restore point of each VM the
// stage names (a VM named by two stages belongs to the first). Every
// pattern that matches no VM of the repository is a problem.
func resolve(ctx context.Context, r *engine.Repository, p *Plan) ([]stageVMs, error) {
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return nil, err
	}
	newest := map[string]*engine.RestorePoint{}
	for _, rp := range rps {
		if n := newest[rp.VM]; n == nil || rp.Time.After(n.Time) {
			newest[rp.VM] = rp
		}
	}
	names := make([]string, 0, len(newest))
	for n := range newest {
		names = append(names, n)
	}
	slices.Sort(names)
	taken := map[string]bool{}
	var out []stageVMs
	var errs []error
	for i, st := range p.Stage {
		sv := stageVMs{stage: i + 1}
		for _, g := range st.VMs {
			hit := false
			for _, n := range names {
				if ok, _ := path.Match(g, n); ok {
					hit = true
					if !taken[n] {
						taken[n] = true
						sv.points = append(sv.points, newest[n])
					}
				}
			}
			if !hit {
				errs = append(errs, fmt.Errorf("stage %d: %q matches no VM with a restore point in %s", i+1, g, p.Repository))
			}
		}
		out = append(out, sv)
	}
	return out, errors.Join(errs...)
}

// Test restores the newest replicated point of every VM of the plan at
// the DR site, renamed with the test suffix, on the test networks, and
// powers them on stage by stage. What it creates is recorded in the plan's
// state as it goes; Undo removes exactly that. A failover already up
// must be undone first.
func Test(ctx context.Context, p *Plan, o Options) (*State, error) {
	return bringUp(ctx, p, o, ModeTest)
}

// bringUp restores and powers on the plan's VMs at the DR site in mode:
// the newest restore point of each, or, resuming a failover of mode that
// was killed or failed, the points it chose.
func bringUp(ctx context.Context, p *Plan, o Options, mode string) (*State, error) {
	// An instant restore holds its point in the repository while the VM
	// hydrates from it.
	ps, err := openState(ctx, p, true, mode == ModeTest && p.InstantNFS != "")
	if err != nil {
		return nil, err
	}
	defer ps.close()
	s, err := ps.begin(p, mode)
	if err != nil {
		return s, err
	}
	if len(s.VMs) == 0 {
		stages, err := resolve(ctx, ps.r, p)
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", p.Name, err)
		}
		for _, st := range stages {
			for _, rp := range st.points {
				s.VMs = append(s.VMs, VMState{Stage: st.stage, VM: rp.VM, Point: rp.Name(), PointTime: rp.Time, Name: p.nameFor(mode, rp.VM), Status: VMPending})
			}
		}
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	return s, restoreVMs(ctx, p, o, ps.r, s)
}

// restoreVMs restores the state's VMs from their points in r at the DR
// site and powers them on, stage by stage, skipping the stages done and
// the VMs on already. A VM whose restore was killed is removed first (the
// restore sweeps what the journal names; the VM is found by its UUID or
// name).
func restoreVMs(ctx context.Context, p *Plan, o Options, r *engine.Repository, s *State) error {
	log := o.logger().With("plan", p.Name, "mode", s.Mode)
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer conn.Close()
	// What killed jobs of an earlier run left (a restore's volume groups,
	// a chain's snapshot not yet kept) goes first.
	if err := sweep(ctx, r, conn.Clusters, "DR", log); err != nil {
		return err
	}
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return err
	}
	at := &target{site: site, cl: cl, conn: conn, r: r, j: j, chain: s.Mode != ModeTest, log: log}
	if err := at.bringUpStages(ctx, p, s, &s.StagesDone, func(v *VMState) *slot {
		if v.Status == VMOn {
			return nil
		}
		sl := p.failoverSlot(s, v, o)
		return &sl
	}); err != nil {
		return err
	}
	s.Done = true
	return s.save()
}

// namedVMs returns the UUIDs of the VMs named name at the site.
func namedVMs(ctx context.Context, cl nutanix.Cluster, name string) ([]string, error) {
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("DR site: list VMs: %w", err)
	}
	var out []string
	for _, v := range vms {
		if v.Name == name {
			out = append(out, v.UUID)
		}
	}
	return out, nil
}

// step records a VM's new status.
func step(s *State, v *VMState, o Options, status, uuid, msg string) error {
	v.Status, v.Error = status, msg
	if uuid != "" {
		v.UUID = uuid
	}
	if o.Progress != nil {
		o.Progress(*v)
	}
	return s.save()
}

// afterStage waits the stage's delay and runs its script
// ($AHVFS_PLAN_STATE names the state file, $AHVFS_STAGE the stage).
func afterStage(ctx context.Context, st StageConfig, stage int, s *State, log *slog.Logger) error {
	if st.delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(st.delay):
		}
	}
	if st.Script == "" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", st.Script)
	// Cancelled (SIGINT), the whole script goes, children included, and
	// output a child keeps open does not hold the plan.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), "AHVFS_PLAN_STATE="+s.file, fmt.Sprintf("AHVFS_STAGE=%d", stage))
	out, err := cmd.CombinedOutput()
	log.Info("stage script", "output", strings.TrimSpace(string(out)), "err", err)
	if err != nil {
		return fmt.Errorf("script: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
