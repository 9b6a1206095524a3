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
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
)

// Options wire a failover to this host.
type Options struct {
	// Logger, default discard.
	Logger *slog.Logger
	// TuneCluster adjusts the Prism client options (tests).
	TuneCluster func(*nutanix.Options)
	// Progress, when set, is told of each VM's step.
	Progress func(v VMState)
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

// openRepo opens the DR repository to read.
func openRepo(ctx context.Context, p *Plan) (*engine.Repository, error) {
	var pw []byte
	if p.PasswordFile != "" {
		b, err := os.ReadFile(p.PasswordFile)
		if err != nil {
			return nil, err
		}
		pw = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	r, err := engine.Open(ctx, p.Repository, engine.OpenOptions{Password: pw})
	if err != nil {
		return nil, fmt.Errorf("DR repository %s: %w", p.Repository, err)
	}
	return r, nil
}

// Test restores the newest replicated point of every VM of the plan at
// the DR site, renamed with the test suffix, on the test networks, and
// powers them on stage by stage. What it creates is recorded in the plan's
// state as it goes; Undo removes exactly that. A test failover already up
// must be undone first.
func Test(ctx context.Context, p *Plan, o Options) (*State, error) {
	log := o.logger().With("plan", p.Name, "mode", "test")
	r, err := openRepo(ctx, p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	dir, err := r.StateDir()
	if err != nil {
		return nil, err
	}
	if old, err := loadState(dir, p.Name); err != nil {
		return nil, err
	} else if old != nil && old.up() {
		return old, fmt.Errorf("a %s failover of plan %s is up since %s: run ahvfs failover undo first", old.Mode, p.Name, engine.FormatTime(old.Started))
	}
	stages, err := resolve(ctx, r, p)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", p.Name, err)
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	defer conn.Close()
	s := &State{V: stateVersion, Plan: p.File, Mode: "test", Site: site.Prism, Started: time.Now().UTC(), file: stateFile(dir, p.Name)}
	for _, st := range stages {
		for _, rp := range st.points {
			s.VMs = append(s.VMs, VMState{Stage: st.stage, VM: rp.VM, Point: rp.Name(), Name: rp.VM + p.TestSuffix, Status: VMPending})
		}
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	chap, err := site.CHAP()
	if err != nil {
		return s, err
	}
	for _, st := range stages {
		for _, rp := range st.points {
			i := slices.IndexFunc(s.VMs, func(v VMState) bool { return v.Point == rp.Name() })
			v := &s.VMs[i]
			ov := p.override(rp.VM)
			ro := restore.Options{Name: v.Name, TargetCluster: p.TargetAHVCluster, Container: firstOf(ov.Container, p.Container),
				NetworkMap: p.testNetMap, VCPUs: ov.VCPUs, MemoryBytes: ov.memory, PowerOn: true, DataPath: p.DataPath,
				ISCSIPort: site.ISCSIPort, InitiatorIQN: site.InitiatorIQN, Clusters: conn.Clusters, Logger: log}
			ro.ISCSI.CHAP = chap
			if err := step(s, v, o, VMRestoring, "", ""); err != nil {
				return s, err
			}
			log.Info("restoring", "vm", rp.VM, "point", rp.Name(), "as", v.Name, "stage", st.stage)
			res, err := restore.Restore(ctx, r, cl, rp, ro)
			if err != nil {
				serr := step(s, v, o, VMFailed, "", err.Error())
				return s, errors.Join(fmt.Errorf("stage %d: %s: %w (run ahvfs failover undo to remove what the plan made)", st.stage, rp.Name(), err), serr)
			}
			v.PoweredOn = time.Now().UTC()
			if err := step(s, v, o, VMOn, res.VMUUID, ""); err != nil {
				return s, err
			}
		}
		if err := afterStage(ctx, p.Stage[st.stage-1], st.stage, s, log); err != nil {
			return s, fmt.Errorf("stage %d: %w", st.stage, err)
		}
	}
	s.Done = true
	return s, s.save()
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

// Undo removes what the plan's test failover made at the DR site: the
// VMs its state names (powered off, then deleted), and whatever a restore
// killed midway left (the DR repository's journal is swept). It is safe
// to run again.
func Undo(ctx context.Context, p *Plan, o Options) (*State, error) {
	log := o.logger().With("plan", p.Name, "mode", "undo")
	r, err := openRepo(ctx, p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	dir, err := r.StateDir()
	if err != nil {
		return nil, err
	}
	s, err := loadState(dir, p.Name)
	if err != nil || s == nil {
		return nil, errors.Join(err, func() error {
			if s == nil && err == nil {
				return fmt.Errorf("plan %s: nothing to undo (no failover state in %s)", p.Name, dir)
			}
			return nil
		}())
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return s, err
	}
	defer cl.Close()
	defer conn.Close()
	// What killed restores left (volume groups, images, half-made VMs)
	// first: they are journaled.
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return s, err
	}
	if rep, err := clusterjob.SweepBefore(ctx, j, conn.Clusters, log); err != nil {
		return s, fmt.Errorf("sweep the DR repository's journal: %w", err)
	} else if rep != nil && len(rep.Deleted) > 0 {
		log.Info("removed what killed restores left", "objects", len(rep.Deleted))
	}
	var errs []error
	for i := range s.VMs {
		v := &s.VMs[i]
		if v.Status != VMOn && v.Status != VMRestoring {
			continue
		}
		if err := removeVM(ctx, cl, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Name, err))
			continue
		}
		if err := step(s, v, o, VMRemoved, "", ""); err != nil {
			return s, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("undo of plan %s: %w (run undo again)", p.Name, err)
	}
	return s, s.remove()
}

// removeVM powers off and deletes a VM the failover made. One that is
// gone already is no error; a VM killed while its restore ran is looked
// for by its (suffixed) name.
func removeVM(ctx context.Context, cl nutanix.Cluster, v *VMState) error {
	uuids := []string{}
	if v.UUID != "" {
		uuids = append(uuids, v.UUID)
	} else {
		vms, err := cl.ListVMs(ctx)
		if err != nil {
			return err
		}
		for _, vm := range vms {
			if vm.Name == v.Name {
				uuids = append(uuids, vm.UUID)
			}
		}
	}
	for _, id := range uuids {
		vm, err := cl.GetVM(ctx, id)
		if errors.Is(err, nutanix.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if vm.Name != v.Name {
			return fmt.Errorf("VM %s is now named %s: not deleted (check it by hand)", id, vm.Name)
		}
		if vm.PowerState != nutanix.PowerOff {
			if err := cl.SetPowerState(ctx, id, nutanix.PowerOff); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
				return fmt.Errorf("power off: %w", err)
			}
		}
		if err := cl.DeleteVM(ctx, id); err != nil && !errors.Is(err, nutanix.ErrNotFound) {
			return fmt.Errorf("delete: %w", err)
		}
	}
	return nil
}

// Status is the plan's state, each VM checked against the DR site (its
// live power state, or that it is gone).
type Status struct {
	State *State   `json:"state"`
	Live  []LiveVM `json:"live,omitempty"`
}

// LiveVM is what the DR site says of a VM the state names.
type LiveVM struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid,omitempty"`
	Exists     bool   `json:"exists"`
	PowerState string `json:"power_state,omitempty"`
}

// PlanStatus reads the plan's state and asks the DR site about its VMs.
// A plan with no state has none (State nil).
func PlanStatus(ctx context.Context, p *Plan, o Options) (*Status, error) {
	r, err := openRepo(ctx, p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	dir, err := r.StateDir()
	if err != nil {
		return nil, err
	}
	s, err := loadState(dir, p.Name)
	if err != nil || s == nil {
		return &Status{}, err
	}
	site := p.site(p.TargetCluster)
	cl, conn, err := site.Connect(ctx, o.logger(), o.TuneCluster)
	if err != nil {
		return &Status{State: s}, err
	}
	defer cl.Close()
	defer conn.Close()
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return &Status{State: s}, err
	}
	st := &Status{State: s}
	for _, v := range s.VMs {
		lv := LiveVM{Name: v.Name, UUID: v.UUID}
		for _, vm := range vms {
			if (v.UUID != "" && vm.UUID == v.UUID) || (v.UUID == "" && vm.Name == v.Name) {
				lv.Exists, lv.UUID, lv.PowerState = true, vm.UUID, string(vm.PowerState)
			}
		}
		st.Live = append(st.Live, lv)
	}
	return st, nil
}
