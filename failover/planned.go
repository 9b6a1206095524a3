package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Planned moves the plan's VMs to the DR site with no data lost. At the
// source site each VM is shut down (the guest asked through NGT where it
// runs, else by ACPI; powered off hard after shutdown_timeout), in
// reverse stage order; then each gets a final backup into the source
// repository, which is synced to the DR repository; then the VMs are
// restored at the DR site from those points, on the production networks,
// and powered on stage by stage. The DR VMs' disks are the source VMs'
// disks as they were at shutdown. Every step is in the plan's state: run
// again after a kill or a failure, it goes on where it stopped.
func Planned(ctx context.Context, p *Plan, o Options) (*State, error) {
	if p.SourceRepository == "" {
		return nil, fmt.Errorf("plan %s: source_repository: missing (a planned failover backs each VM up there last)", p.Name)
	}
	log := o.logger().With("plan", p.Name, "mode", ModePlanned)
	ps, err := openState(ctx, p, true, true)
	if err != nil {
		return nil, err
	}
	defer ps.close()
	s, err := ps.begin(p, ModePlanned)
	if err != nil {
		return s, err
	}
	// Once synced, the source site is no longer needed: a resumed
	// failover goes on even if it is gone since.
	if !s.Synced {
		if err := stopAndBackUp(ctx, p, o, ps.r, s, log); err != nil {
			return s, err
		}
	}
	return s, restoreVMs(ctx, p, o, ps.r, s)
}

// stopAndBackUp is a planned failover's source side: the VMs shut down
// (shutDown), backed up last into the source repository and synced to
// the DR repository dst (backUpAndSync).
func stopAndBackUp(ctx context.Context, p *Plan, o Options, dst *engine.Repository, s *State, log *slog.Logger) error {
	cl, conn, err := p.site(p.SourceCluster).Connect(ctx, log, o.TuneCluster)
	if err != nil {
		return fmt.Errorf("source site: %w", err)
	}
	defer cl.Close()
	defer conn.Close()
	if len(s.VMs) == 0 {
		if s.VMs, err = sourceVMs(ctx, cl, p); err != nil {
			return fmt.Errorf("plan %s: %w", p.Name, err)
		}
		if err := s.save(); err != nil {
			return err
		}
	}
	legs := make([]leg, len(s.VMs))
	for i := range s.VMs {
		v := &s.VMs[i]
		legs[i] = leg{stage: v.Stage, vm: v.VM, uuid: v.SourceUUID, status: &v.Status, shutdown: &v.Shutdown, point: &v.Point, pointTime: &v.PointTime,
			before: func(first bool) error {
				if !first {
					return nil
				}
				vm, err := cl.GetVM(ctx, v.SourceUUID)
				if err != nil {
					return fmt.Errorf("source VM %s: %w", v.VM, err)
				}
				v.SourceWasOn = vm.PowerState != nutanix.PowerOff
				return nil
			},
			record: func(status string) error {
				if status == VMStopped {
					v.SourceOff = time.Now().UTC()
				}
				return step(s, v, o, status, "", "")
			}}
	}
	if err := shutDown(ctx, p, cl, legs, "source", log); err != nil {
		return err
	}
	src, err := openRepository(ctx, "source repository", p.SourceRepository, firstOf(p.SourcePasswordFile, p.PasswordFile), true)
	if err != nil {
		return err
	}
	defer src.Close()
	sent, err := backUpAndSync(ctx, p, p.site(p.SourceCluster), cl, conn, src, dst, legs, "DR", log)
	if err != nil {
		return err
	}
	s.Synced, s.BytesSent = true, s.BytesSent+sent
	log.Info("synced", "bytes", sent)
	return s.save()
}

// sourceVMs lists the VMs the plan's stages name at the source site, in
// stage order (a VM two stages name belongs to the first). A pattern
// that names no VM there is a problem, as are two VMs of one name: the
// repository knows VMs by name.
func sourceVMs(ctx context.Context, cl nutanix.Cluster, p *Plan) ([]VMState, error) {
	vms, err := cl.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("source site: list VMs: %w", err)
	}
	slices.SortFunc(vms, func(a, b nutanix.VM) int { return strings.Compare(a.Name, b.Name) })
	var out []VMState
	var errs []error
	taken := map[string]string{}
	for i, st := range p.Stage {
		for _, g := range st.VMs {
			hit := false
			for _, v := range vms {
				if ok, _ := path.Match(g, v.Name); !ok {
					continue
				}
				hit = true
				if other, dup := taken[v.Name]; dup {
					if other != v.UUID {
						errs = append(errs, fmt.Errorf("stage %d: two VMs at the source site are named %s (%s, %s): rename one", i+1, v.Name, other, v.UUID))
					}
					continue
				}
				taken[v.Name] = v.UUID
				out = append(out, VMState{Stage: i + 1, VM: v.Name, Name: v.Name, SourceUUID: v.UUID, SourceAHVCluster: v.ClusterUUID, Status: VMPending})
			}
			if !hit {
				errs = append(errs, fmt.Errorf("stage %d: %q matches no VM at the source site %s", i+1, g, p.site(p.SourceCluster).Prism))
			}
		}
	}
	return out, errors.Join(errs...)
}

// powerDown shuts a VM down and returns how: "guest" (through NGT, when
// its tools answer), "acpi", or "hard" (a power-off, after timeout). A VM
// off already gives "".
func powerDown(ctx context.Context, cl nutanix.Cluster, uuid string, timeout time.Duration, log *slog.Logger) (string, error) {
	vm, err := cl.GetVM(ctx, uuid)
	if err != nil {
		return "", err
	}
	if vm.PowerState == nutanix.PowerOff {
		return "", nil
	}
	how := "acpi"
	if vm.NGT.Installed && vm.NGT.Enabled && vm.NGT.Reachable {
		how = "guest"
		if err := cl.ShutdownVM(ctx, uuid, true); err != nil {
			log.Warn("guest shutdown refused; trying ACPI", "err", err)
			how = "acpi"
		}
	}
	if how == "acpi" {
		if err := cl.ShutdownVM(ctx, uuid, false); err != nil {
			log.Warn("ACPI shutdown refused; powering off", "err", err)
			how = "hard"
		}
	}
	if how != "hard" {
		poll := min(2*time.Second, timeout/4)
		deadline := time.Now().Add(timeout)
		for {
			vm, err := cl.GetVM(ctx, uuid)
			if err != nil {
				return "", err
			}
			if vm.PowerState == nutanix.PowerOff {
				return how, nil
			}
			if time.Now().After(deadline) {
				log.Warn("the guest did not shut down in time; powering off", "timeout", timeout)
				how = "hard"
				break
			}
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(poll):
			}
		}
	}
	if err := cl.SetPowerState(ctx, uuid, nutanix.PowerOff); err != nil {
		return "", err
	}
	return how, nil
}

// backupVMs backs the VMs (UUIDs) of a site up into r and returns each
// one's restore point by UUID. A VM whose backup failed is missing, and
// the error names it.
func backupVMs(ctx context.Context, site clusterjob.Site, dataPath string, cl *nutanix.Client, conn *clusterjob.Connector, r *engine.Repository,
	uuids []string, log *slog.Logger) (map[string]*engine.RestorePoint, error) {
	out := map[string]*engine.RestorePoint{}
	if len(uuids) == 0 {
		return out, nil
	}
	j, err := clusterjob.RepositoryJournal(r)
	if err != nil {
		return out, err
	}
	bo := backup.Options{VMs: uuids, Level: backup.LevelAuto, DataPath: backup.DataPath(dataPath), Journal: j, Clusters: conn.Clusters,
		ISCSIPort: site.ISCSIPort, InitiatorIQN: site.InitiatorIQN, Logger: log}
	if bo.CHAP, err = site.CHAP(); err != nil {
		return out, err
	}
	log.Info("backups", "vms", len(uuids), "site", site.Name)
	rep, err := backup.Run(ctx, r, cl, bo)
	if rep != nil {
		for _, vr := range rep.VMs {
			if rp := vr.RestorePointValue(); vr.Err == "" && rp != nil {
				out[vr.UUID] = rp
			}
		}
	}
	if err != nil {
		return out, fmt.Errorf("backup at %s: %w (run the command again to go on)", site.Name, err)
	}
	for _, id := range uuids {
		if out[id] == nil {
			return out, fmt.Errorf("backup at %s of VM %s failed (run the command again to go on)", site.Name, id)
		}
	}
	return out, nil
}

// syncPoints syncs the VMs' points from src to dst (the to repository)
// and checks that the points want arrived; it returns the bytes sent.
func syncPoints(ctx context.Context, src, dst *engine.Repository, vms, want []string, to string) (int64, error) {
	rep, err := dr.Sync(ctx, &dr.Local{R: src}, &dr.Local{R: dst}, dr.Options{VMs: engine.ExactVMs(vms)})
	if err != nil {
		return 0, fmt.Errorf("sync to the %s repository: %w (run the command again to go on)", to, err)
	}
	for _, w := range want {
		if !slices.Contains(rep.Synced, w) && !slices.Contains(rep.AlreadyThere, w) {
			return rep.BytesSent, fmt.Errorf("sync to the %s repository: %s did not arrive (%s)", to, w, strings.Join(append(rep.Older, rep.Conflicts...), ", "))
		}
	}
	return rep.BytesSent, nil
}
