package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
)

// target is a site VMs are brought up at, from the repository r there.
type target struct {
	site clusterjob.Site
	cl   *nutanix.Client
	conn *clusterjob.Connector
	r    *engine.Repository
	j    *clusterjob.Journal // r's
	// chain continues each VM's chain in r (backup.Continue).
	chain bool
	log   *slog.Logger
	// mu guards the state the slots write (their fields and its file) while
	// VMs are brought up side by side; bringUp lets go of it only around
	// the calls to the site.
	mu sync.Mutex
}

// unlocked runs fn, a call to the site, without t.mu.
func (t *target) unlocked(fn func() error) error {
	t.mu.Unlock()
	defer t.mu.Lock()
	return fn()
}

// slot is one VM to bring up, as a failover (VMState) or a failback
// (VMBack) records it: the fields it reads and writes.
type slot struct {
	name, point string
	status      *string
	uuid        *string
	existing    *[]string
	chained     *bool
	external    *string // an instant restore's external repository
	instant     *bool   // the restore is instant
	// options are the restore's options for the point (name, networks,
	// cluster, overrides; the site's parts are set by bringUp). It is
	// called without the state's lock: it writes no state.
	options func(rp *engine.RestorePoint) (restore.Options, error)
	// record saves a new status (and UUID, error message) in the state.
	record func(status, uuid, msg string) error
	// save saves the state.
	save func() error
}

// bringUp restores the slot's point at the target (powered off),
// continues its chain there when the target says so, then powers the VM
// on. Resumed, it goes on from the slot's status: what a restore killed
// or failed midway left is removed first (its VM by UUID, or by name
// leaving out the VMs that had the name before).
func (t *target) bringUp(ctx context.Context, sl slot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	fail := func(err error) error {
		return errors.Join(err, sl.record(VMFailed, "", err.Error()))
	}
	var rp *engine.RestorePoint
	if err := t.unlocked(func() (err error) { rp, err = t.r.Resolve(ctx, sl.point); return err }); err != nil {
		return fail(err)
	}
	if *sl.status != VMRestored {
		if *sl.status == VMRestoring || *sl.status == VMFailed {
			t.log.Info("removing what a killed or failed restore made", "vm", sl.name)
			old := VMState{Name: sl.name, UUID: *sl.uuid, Existing: *sl.existing, Status: *sl.status, ExternalRepo: *sl.external}
			if err := t.unlocked(func() error { return removeVM(ctx, t.cl, t.j, &old, t.log) }); err != nil {
				return fmt.Errorf("a killed restore's VM: %w", err)
			}
			*sl.uuid = ""
		}
		var ro restore.Options
		if err := t.unlocked(func() (err error) { ro, err = sl.options(rp); return err }); err != nil {
			return fail(err)
		}
		*sl.instant = ro.DataPath == restore.DataPathInstant
		// The plan swept the journal before its stages: a restore's own
		// sweep could claim a sibling's job as it starts.
		ro.SkipCleanup = true
		var err error
		if ro.ISCSI.CHAP, err = t.site.CHAP(); err != nil {
			return err
		}
		ro.Name = sl.name
		ro.ISCSIPort, ro.InitiatorIQN, ro.Journal, ro.Clusters, ro.Logger = t.site.ISCSIPort, t.site.InitiatorIQN, t.j, t.conn.Clusters, t.log
		// VMs that have the name already are not ours: undo must never
		// take them for one it made.
		var existing []string
		if err := t.unlocked(func() (err error) { existing, err = namedVMs(ctx, t.cl, sl.name); return err }); err != nil {
			return err
		}
		*sl.existing = existing
		if err := sl.record(VMRestoring, "", ""); err != nil {
			return err
		}
		t.log.Info("restoring", "point", rp.Name(), "as", sl.name, "site", t.site.Name)
		var res *restore.Result
		err = t.unlocked(func() (err error) { res, err = restore.Restore(ctx, t.r, t.cl, rp, ro); return err })
		if err != nil {
			return fail(fmt.Errorf("%s: %w (run the command again to go on)", rp.Name(), err))
		}
		if res.ExternalRepository != nil {
			*sl.external = res.ExternalRepository.Name
		}
		if err := sl.record(VMRestored, res.VMUUID, ""); err != nil {
			return err
		}
	}
	if t.chain && !*sl.chained {
		uuid := *sl.uuid
		if err := t.unlocked(func() error {
			return backup.Continue(ctx, t.r, t.cl, uuid, rp, backup.ContinueOptions{Journal: t.j, Logger: t.log})
		}); err != nil {
			return fmt.Errorf("%w (run the command again to go on)", err)
		}
		*sl.chained = true
		if err := sl.save(); err != nil {
			return err
		}
	}
	uuid := *sl.uuid
	if err := t.unlocked(func() error { return t.cl.SetPowerState(ctx, uuid, nutanix.PowerOn) }); err != nil {
		return fmt.Errorf("restored as %s but not powered on: %w (the next stages need it; run the command again to go on)", uuid, err)
	}
	return sl.record(VMOn, "", "")
}

// failoverSlot is a failover's VM v: restored under its DR name, on the
// mode's networks, on the plan's AHV cluster, with its overrides.
func (p *Plan) failoverSlot(s *State, v *VMState, o Options) slot {
	return slot{name: v.Name, point: v.Point, status: &v.Status, uuid: &v.UUID, existing: &v.Existing, chained: &v.Chained, external: &v.ExternalRepo, instant: &v.Instant,
		options: func(rp *engine.RestorePoint) (restore.Options, error) {
			netMap, err := p.vmNetMap(s.Mode, rp)
			ov := p.override(rp.VM)
			keys := map[string]string{"--target-cluster": "target_ahv_cluster", "--container": "container",
				"--network-map": netMapKey(s.Mode)}
			ro := restore.Options{TargetCluster: p.TargetAHVCluster, Container: firstOf(ov.Container, p.Container), NetworkMap: netMap, Keys: keys,
				VCPUs: ov.VCPUs, MemoryBytes: ov.memory, DataPath: p.DataPath}
			if s.Mode == ModeTest && p.InstantNFS != "" {
				// A test copy runs at once from the DR repository; a real
				// failover's VMs get their disks in full, and depend on no
				// backup host.
				ro.DataPath, ro.NFS = restore.DataPathInstant, p.InstantNFS
			}
			return ro, err
		},
		record: func(status, uuid, msg string) error {
			if status == VMOn {
				v.PoweredOn = time.Now().UTC()
			}
			return step(s, v, o, status, uuid, msg)
		},
		save: s.save}
}
