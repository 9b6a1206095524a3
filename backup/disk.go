package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// toCBT converts Prism regions to cbt regions, clipped to size.
func toCBT(regs []nutanix.Region, size int64) []cbt.Region {
	out := make([]cbt.Region, 0, len(regs))
	for _, g := range regs {
		off, end := g.Offset, min(g.End(), size)
		if end <= off {
			continue
		}
		out = append(out, cbt.Region{Off: off, Len: end - off, Zeroed: g.Kind == nutanix.RegionZeroed})
	}
	return out
}

// backupDisk plans and reads one disk into w (nil with Estimate).
func (r *runner) backupDisk(ctx context.Context, cl nutanix.Cluster, v nutanix.VM, snap nutanix.Snapshot, d plannedDisk, plan chainPlan,
	w *engine.RestorePointWriter, opener sourceOpener, rel *releaser) (dr DiskReport, rd RefDisk, err error) {
	size := d.SizeBytes
	if sd, ok := snap.Disk(d.UUID); ok && sd.SizeBytes > 0 {
		size = sd.SizeBytes
	} else if !ok {
		return DiskReport{}, RefDisk{}, fmt.Errorf("not in snapshot %s", snap.ID)
	}
	name := fmt.Sprintf("disk-%d", d.N)
	dr = DiskReport{Disk: name, Address: d.Address(), Size: size}
	rd = RefDisk{UUID: d.UUID, N: d.N, Size: size, Address: d.Address()}

	// What to compare against.
	q := nutanix.RegionQuery{Snapshot: snap, DiskUUID: d.UUID, Length: size}
	rest := cbt.Zero
	var parent *engine.Disk
	if plan.Base != nil {
		old, ok := plan.Base.disk(d.UUID)
		_, inSnap := plan.Base.Snapshot.Disk(d.UUID)
		switch {
		case !ok || !inSnap:
			dr.Reason = "new disk (not in the reference)"
		case old.Size != size:
			dr.Reason = fmt.Sprintf("resized from %d to %d bytes", old.Size, size)
		default:
			pd, err := plan.Parent.Disk(old.N)
			if err != nil || pd.UUID != "" && pd.UUID != d.UUID && pd.UUID != old.From || pd.Size != size {
				dr.Reason = "the parent restore point has no matching disk"
				break
			}
			base := plan.Base.Snapshot
			q.Reference = &base
			rest = cbt.Unchanged
			parent = pd
		}
	} else if plan.Reason != "" {
		dr.Reason = plan.Reason
	}
	var regs []nutanix.Region
	err = cl.ChangedRegions(ctx, q, func(g nutanix.Region) error { regs = append(regs, g); return nil })
	var p cbt.Plan
	switch {
	case err == nil:
		if parent != nil && !r.o.NoPatch {
			// Chunks changed in small part are read in part and
			// completed from the parent restore point.
			p, err = cbt.AlignPatched(toCBT(regs, size), size, r.repo.ChunkSize(), int64(r.repo.ChunkSize())*3/4)
		} else {
			p, err = cbt.Align(toCBT(regs, size), size, r.repo.ChunkSize(), rest)
		}
		if err != nil {
			return dr, rd, err
		}
	case errors.Is(err, nutanix.ErrUnsupported):
		// No changed-region tracking: read everything.
		p, parent = cbt.Full(size), nil
		if dr.Reason == "" && q.Reference != nil {
			dr.Reason = "changed regions not served by this API"
		}
	default:
		if q.Reference != nil && errors.Is(err, nutanix.ErrNotFound) {
			return dr, rd, fmt.Errorf("changed regions against reference %s: %w (the next run reads the disk in full)", q.Reference.ID, err)
		}
		return dr, rd, fmt.Errorf("changed regions: %w", err)
	}
	toRead := p.SourceBytes()
	if r.o.Estimate {
		dr.BytesRead, dr.Zero, dr.Unchanged = toRead, p.Bytes(cbt.Zero), p.Bytes(cbt.Unchanged)
		return dr, rd, nil
	}
	dw, err := w.AddDisk(engine.DiskSpec{Index: d.N, Bus: strings.ToLower(d.Bus), BusIndex: d.Index, UUID: d.UUID, Size: size,
		Parent: parent, Reason: dr.Reason})
	if err != nil {
		return dr, rd, err
	}
	progress := r.o.Progress.DiskStart(v.Name, name, size, toRead)
	var src diskSource
	if toRead > 0 {
		if src, err = opener.open(ctx, snap, d, size); err != nil {
			r.o.Progress.DiskDone(v.Name, name, err)
			return dr, rd, err
		}
		defer rel.release(ctx, name, src)
	}
	var reader cbtSource = emptySource{}
	if src != nil {
		reader = clusterjob.LimitReads(src, r.bw)
	}
	iopt := cbt.Options{Workers: r.o.ReadWorkers, ReadSize: r.o.ReadSize, Progress: progress}
	if parent != nil && p.Bytes(cbt.Patch) > 0 {
		base, err := r.repo.OpenDisk(ctx, plan.Parent, parent.Index)
		if err != nil {
			r.o.Progress.DiskDone(v.Name, name, err)
			return dr, rd, fmt.Errorf("open the parent restore point: %w", err)
		}
		base.DisableReadAhead()
		defer base.Close()
		iopt.Base = base
	}
	st, err := cbt.Ingest(ctx, reader, p, dw, iopt)
	r.o.Progress.DiskDone(v.Name, name, err)
	dr.BytesRead, dr.Zero, dr.Unchanged = st.ReadBytes, st.ZeroBytes, st.UnchangedBytes
	if err != nil {
		return dr, rd, err
	}
	return dr, rd, nil
}

// releaser closes disk sources (logout, detach and delete the volume group)
// in the background; wait returns the warnings of those that failed.
type releaser struct {
	jb   *clusterjob.Job
	log  *slog.Logger
	wg   sync.WaitGroup
	mu   sync.Mutex
	warn []string
}

func (rl *releaser) release(ctx context.Context, disk string, src diskSource) {
	rl.wg.Add(1)
	go func() {
		defer rl.wg.Done()
		cctx, cancel := rl.jb.CleanupContext(ctx)
		defer cancel()
		if err := src.Close(cctx); err != nil {
			msg := fmt.Sprintf("%s: release the data path: %v (the next run or `ahvfs cleanup` retries)", disk, err)
			rl.log.Warn(msg)
			rl.mu.Lock()
			rl.warn = append(rl.warn, msg)
			rl.mu.Unlock()
		}
	}()
}

func (rl *releaser) wait() []string {
	rl.wg.Wait()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.warn
}

type cbtSource interface {
	ReadAt(p []byte, off int64) (int, error)
}

// emptySource backs a plan that reads nothing.
type emptySource struct{}

func (emptySource) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("read from a disk whose plan reads nothing")
}
