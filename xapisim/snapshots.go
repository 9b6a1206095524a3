package xapisim

import (
	"os"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

func vmSnapshot(c *call) (any, error)        { return c.s.snapshot(c, false) }
func vmSnapshotQuiesce(c *call) (any, error) { return c.s.snapshot(c, true) }

// snapPlan is one disk of a snapshot being taken.
type snapPlan struct {
	live *vdiRec // the VM's VDI
	snap *vdiRec // the new snapshot VDI
	src  string  // the live file (absolute)
}

// snapshot makes a snapshot VM: a copy of the VM's record (is_a_snapshot,
// snapshot_of, snapshot_time), with VBDs to new snapshot VDIs, each a copy
// of a live disk (reflink, else sparse copy) carrying CBT metadata when its
// disk has CBT enabled, and copies of its CD VBDs and VIFs. The copies are
// made outside s.mu.
func (s *Sim) snapshot(c *call, quiesce bool) (any, error) {
	s.mu.Lock()
	v, err := c.vm(0)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	name, err := c.str(1)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if err := ordinaryVM(v, "snapshotted"); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if quiesce && (!v.Quiesce || v.PowerState != "Running" || s.m.Metrics[v.GuestMetrics] == nil) {
		s.mu.Unlock()
		return nil, xerr("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", v.Ref, "the guest tools cannot quiesce this VM")
	}
	now := time.Now().UTC().Truncate(time.Second)
	snapVM := *v
	snapVM.Ref, snapVM.UUID, snapVM.NameLabel = newRef(), simkit.NewUUID(), name
	snapVM.IsASnapshot, snapVM.SnapshotOf, snapVM.SnapshotTime = true, v.Ref, now
	snapVM.PowerState, snapVM.GuestMetrics, snapVM.Dir, snapVM.Quiesce = "Halted", "", "", false
	snapVM.HVMBootParams, snapVM.Platform = cloneMap(v.HVMBootParams), cloneMap(v.Platform)
	snapVM.OtherConfig, snapVM.Tags = cloneMap(v.OtherConfig), append([]string{}, v.Tags...)
	if quiesce {
		snapVM.OtherConfig["snapshot_quiesced"] = "true"
	}
	var plans []snapPlan
	var vbds []*vbdRec
	for _, b := range s.m.vbdsOf(v.Ref) {
		nb := *b
		nb.Ref, nb.UUID, nb.VM, nb.OtherConfig = newRef(), simkit.NewUUID(), snapVM.Ref, cloneMap(b.OtherConfig)
		if d := s.m.VDIs[b.VDI]; d != nil && b.Type == "Disk" {
			if d.File == "" {
				s.mu.Unlock()
				return nil, xerr("VDI_INCOMPATIBLE_TYPE", d.Ref, d.Type)
			}
			sd := *d
			sd.Ref, sd.UUID = newRef(), simkit.NewUUID()
			sd.IsASnapshot, sd.SnapshotOf, sd.SnapshotTime = true, d.Ref, now
			sd.OtherConfig = cloneMap(d.OtherConfig)
			sd.File = filepath.Join("vdis", sd.UUID+".raw")
			sd.CBTOf, sd.CBTEpoch, sd.CBTFile = "", 0, ""
			if d.CBTEnabled {
				sd.CBTOf, sd.CBTEpoch = d.Ref, d.CBTEpoch
				sd.CBTFile = filepath.Join("cbt", sd.UUID+".cbt")
			}
			plans = append(plans, snapPlan{live: d, snap: &sd, src: s.abs(d.File)})
			nb.VDI = sd.Ref
		}
		vbds = append(vbds, &nb)
	}
	var vifs []*vifRec
	for _, f := range s.m.vifsOf(v.Ref) {
		nf := *f
		nf.Ref, nf.UUID, nf.VM, nf.OtherConfig = newRef(), simkit.NewUUID(), snapVM.Ref, cloneMap(f.OtherConfig)
		vifs = append(vifs, &nf)
	}
	s.mu.Unlock()

	cleanup := func() {
		for _, p := range plans {
			os.Remove(s.abs(p.snap.File))
			if p.snap.CBTFile != "" {
				os.Remove(s.abs(p.snap.CBTFile))
			}
		}
	}
	s.diskMu.RLock()
	for _, p := range plans {
		err = simkit.CopyDisk(s.abs(p.snap.File), p.src, p.snap.VirtualSize)
		if err != nil {
			break
		}
	}
	s.diskMu.RUnlock()
	if err == nil {
		for _, p := range plans {
			if p.snap.CBTFile == "" {
				continue
			}
			if err = writeCBTMetadata(s.abs(p.snap.CBTFile), s.abs(p.snap.File), p.snap.VirtualSize); err != nil {
				break
			}
		}
	}
	if err != nil {
		cleanup()
		return nil, xerr("SR_BACKEND_FAILURE_82", "", "Failed to snapshot VDI: "+err.Error(), "")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.VMs[v.Ref] == nil {
		cleanup()
		return nil, handleInvalid("VM", v.Ref)
	}
	snapVM.Seq = s.m.next()
	s.m.VMs[snapVM.Ref] = &snapVM
	for _, p := range plans {
		p.snap.Seq = s.m.next()
		s.m.VDIs[p.snap.Ref] = p.snap
	}
	for _, b := range vbds {
		b.Seq = s.m.next()
		s.m.VBDs[b.Ref] = b
	}
	for _, f := range vifs {
		f.Seq = s.m.next()
		s.m.VIFs[f.Ref] = f
	}
	s.save()
	return snapVM.Ref, nil
}
