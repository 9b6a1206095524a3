package prismsim

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// snapshotVMLocked copies every disk of v now (point in time) and registers
// the snapshot in state PENDING.
func (s *Sim) snapshotVMLocked(v *vm, name, reqType, api string) (*snapshot, error) {
	if reqType == "" {
		reqType = CrashConsistent
	}
	if reqType != CrashConsistent && reqType != AppConsistent {
		return nil, errInvalid("snapshot type %q is not CRASH_CONSISTENT or APPLICATION_CONSISTENT", reqType)
	}
	typ := CrashConsistent
	if reqType == AppConsistent && v.NGT == NGTVSS && v.PowerState == "ON" {
		typ = AppConsistent
	}
	cl := s.m.clusterByUUID(v.ClusterUUID)
	sn := &snapshot{
		UUID: simkit.NewUUID(), VMUUID: v.UUID, Name: name, Type: typ, RequestedType: reqType,
		GroupUUID: simkit.NewUUID(), LocationUUID: simkit.NewUUID(), SnapID: s.m.next() + 100, State: "PENDING",
		Created: time.Now(), VM: *v, API: api,
	}
	sn.VM.Disks = nil
	for _, d := range v.Disks {
		dc := *d
		sn.VM.Disks = append(sn.VM.Disks, &dc)
	}
	dir := filepath.Join("snapshots", sn.UUID)
	for i, d := range v.Disks {
		ctr := s.m.containerByUUID(d.ContainerUUID)
		ctrName := "default"
		if ctr != nil {
			ctrName = ctr.Name
		}
		sd := &snapDisk{
			DiskUUID: d.UUID, VDiskUUID: d.VDiskUUID, DiskRPUUID: simkit.NewUUID(), Bus: d.Bus, Index: d.Index, Size: d.Size,
			File:      filepath.Join(dir, fmt.Sprintf("disk-%d.raw", i)),
			LivePath:  fmt.Sprintf("/%s/.acropolis/vmdisk/%s", ctrName, d.VDiskUUID),
			SnapPath:  fmt.Sprintf("/%s/.snapshot/%02d/%d-%d-%d/.acropolis/vmdisk/%s", ctrName, sn.SnapID%100, cl.ClusterID, cl.IncarnationID, sn.SnapID, d.VDiskUUID),
			Container: d.ContainerUUID,
		}
		if err := copyDisk(s.abs(sd.File), s.abs(d.File), d.Size); err != nil {
			os.RemoveAll(s.abs(dir))
			return nil, fmt.Errorf("snapshot %s: %w", v.Name, err)
		}
		sn.Disks = append(sn.Disks, sd)
	}
	s.m.Snapshots[sn.UUID] = sn
	return sn, nil
}

func (s *Sim) removeSnapshotLocked(id string) {
	sn := s.m.Snapshots[id]
	if sn == nil {
		return
	}
	delete(s.m.Snapshots, id)
	for _, d := range sn.Disks {
		os.Remove(s.abs(d.File))
		os.Remove(filepath.Dir(s.abs(d.File))) // only when empty
	}
	os.Remove(s.abs(filepath.Join("snapshots", id)))
	if rp := s.m.RecoveryPoints[sn.RPUUID]; rp != nil {
		out := rp.Snapshots[:0]
		for _, x := range rp.Snapshots {
			if x != id {
				out = append(out, x)
			}
		}
		rp.Snapshots = out
	}
}

// SnapshotDiskFiles returns the files of a snapshot's disks (v3 snapshot
// uuid, v2 snapshot uuid or v4 VM recovery point extId).
func (s *Sim) SnapshotDiskFiles(id string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.m.Snapshots[id]
	if sn == nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	var out []string
	for _, d := range sn.Disks {
		out = append(out, s.abs(d.File))
	}
	return out, nil
}
