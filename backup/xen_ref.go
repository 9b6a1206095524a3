package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/xapi"
)

// Strategy is how a VM of an XCP-ng pool is read.
type Strategy string

// Strategies.
const (
	// StrategyAuto is CBT when every disk's SR can track changed blocks,
	// else XVA.
	StrategyAuto Strategy = "auto"
	// StrategyCBT: changed-block tracking on every disk; a full reads the
	// snapshot's disks whole, an incremental reads the 64 KiB blocks
	// VDI.list_changed_blocks names, both over NBD (or, without an NBD
	// network, from /export_raw_vdi). The reference snapshot's data is
	// destroyed: its CBT metadata is all the next incremental needs.
	StrategyCBT Strategy = "cbt"
	// StrategyXVA: a full streams the snapshot's XVA export into the
	// repository; an incremental streams each disk's delta VHD against
	// the reference snapshot, whose data is kept.
	StrategyXVA Strategy = "xva"
)

// XenReference is what the repository remembers about a VM's reference
// snapshot on an XCP-ng pool: the journal's kept record "xenref-<vm uuid>".
// There is one per VM (no differential level).
type XenReference struct {
	VMUUID       string       `json:"vm_uuid"`
	VM           string       `json:"vm"`
	Snapshot     string       `json:"snapshot"` // the snapshot VM's UUID
	SnapshotName string       `json:"snapshot_name"`
	RestorePoint string       `json:"restore_point"` // restore point ID
	Time         time.Time    `json:"time"`
	Strategy     Strategy     `json:"strategy"`
	Disks        []XenRefDisk `json:"disks"`
	// DataDestroyed: the snapshot's disks hold only CBT metadata.
	DataDestroyed bool `json:"data_destroyed,omitempty"`
}

// XenRefDisk is one disk of the reference.
type XenRefDisk struct {
	VDI         string `json:"vdi"`          // the live VDI's UUID
	SnapshotVDI string `json:"snapshot_vdi"` // its copy in the snapshot
	N           int    `json:"n"`            // disk-N in the restore point
	Size        int64  `json:"size"`
}

func (r *XenReference) disk(vdi string) (XenRefDisk, bool) {
	for _, d := range r.Disks {
		if d.VDI == vdi {
			return d, true
		}
	}
	return XenRefDisk{}, false
}

// object is the reference snapshot as a kept cluster object.
func (r *XenReference) object() clusterjob.Object {
	o := clusterjob.Object{Kind: clusterjob.KindSnapshot, Name: r.SnapshotName, ID: r.Snapshot, API: clusterjob.APIXen,
		VMUUID: r.VMUUID, VM: r.VM, Created: r.Time}
	for _, d := range r.Disks {
		o.VDIs = append(o.VDIs, d.SnapshotVDI)
	}
	return o
}

func xenRefOwner(vmUUID string) string { return "xenref-" + vmUUID }

// LoadXenReference reads a VM's reference on an XCP-ng pool (nil, nil
// when there is none).
func LoadXenReference(j *clusterjob.Journal, vmUUID string) (*XenReference, error) {
	return loadKept[XenReference](j, xenRefOwner(vmUUID), vmUUID)
}

func putXenRef(j *clusterjob.Journal, r *XenReference) error {
	if err := j.Keep(xenRefOwner(r.VMUUID), []clusterjob.Object{r.object()}, r); err != nil {
		return fmt.Errorf("promote snapshot %s as the reference of %s: %w", r.SnapshotName, r.VM, err)
	}
	return nil
}

// decideStrategy turns changed-block tracking on where the strategy needs
// it. Tracking starts with the next snapshot, so enabling it costs
// nothing now; an SR that cannot track makes auto fall back to XVA.
func (m *xenVMRun) decideStrategy(ctx context.Context) error {
	want := m.r.o.Strategy
	if want == StrategyXVA {
		m.strategy = StrategyXVA
		return nil
	}
	for _, d := range m.disks {
		if d.vdi.CBTEnabled {
			continue
		}
		if err := m.xc.EnableCBT(ctx, d.vdi.Ref); err != nil {
			if want == StrategyCBT {
				return fmt.Errorf("enable changed-block tracking on %s (SR %s): %w", d.address(), d.sr.NameLabel, err)
			}
			m.warn("changed-block tracking unavailable on %s (SR %s): %v; using the XVA strategy", d.address(), d.sr.NameLabel, err)
			m.strategy = StrategyXVA
			return nil
		}
		m.log.Info("changed-block tracking enabled", "disk", d.address())
		if m.cbtOff == nil {
			m.cbtOff = map[string]bool{}
		}
		m.cbtOff[d.vdi.UUID] = true // changes before now are not tracked
	}
	m.strategy = StrategyCBT
	return nil
}

// decideLevel picks full or incremental: incremental when the reference
// was taken with the same strategy, its snapshot is still on the pool
// and its restore point still in the repository.
func (m *xenVMRun) decideLevel(ctx context.Context) {
	want, ref := m.r.o.Level, m.ref
	if want == LevelFull || want == LevelCopy {
		return
	}
	full := func(reason string) { m.reason = reason }
	switch {
	case ref == nil:
		if want == LevelIncremental {
			full("no reference snapshot: first backup of this VM")
		}
		return
	case ref.Strategy != m.strategy:
		full(fmt.Sprintf("the reference was taken with the %s strategy, this backup uses %s", ref.Strategy, m.strategy))
		return
	case m.strategy == StrategyXVA && ref.DataDestroyed:
		full("the reference snapshot's data was destroyed; a delta VHD needs it")
		return
	}
	if _, err := m.xc.VMByUUID(ctx, ref.Snapshot); err != nil {
		if errors.Is(err, xapi.ErrNotFound) {
			full(fmt.Sprintf("reference snapshot %s vanished from the pool", ref.SnapshotName))
		} else {
			full(fmt.Sprintf("reference snapshot %s unreadable: %v", ref.SnapshotName, err))
		}
		return
	}
	parent, err := m.r.repo.RestorePointByID(ctx, ref.RestorePoint)
	if err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			full(fmt.Sprintf("the reference's restore point %s is no longer in the repository", ref.RestorePoint))
		} else {
			full(fmt.Sprintf("the reference's restore point %s unreadable: %v", ref.RestorePoint, err))
		}
		return
	}
	m.parent = parent
}
