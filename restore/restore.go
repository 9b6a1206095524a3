package restore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Restore recreates the VM of rp on a cluster. It sweeps what earlier
// jobs left, validates everything, then creates the VM through a journal
// job: every object it creates is journaled first, and on failure or
// cancellation the job's teardown removes them again (with a fresh
// context bounded by CleanupTimeout); a restore killed outright leaves
// them to the next sweep. The repository is only read.
func Restore(ctx context.Context, src Source, cl nutanix.Cluster, rp *engine.RestorePoint, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	if o.SR != "" {
		return nil, fmt.Errorf("%s names an SR of an XCP-ng pool: on an AHV cluster give %s", o.key("--sr"), o.key("--container"))
	}
	j, err := journalOf(src, rp, o)
	if err != nil {
		return nil, err
	}
	swept, err := sweepBefore(ctx, j, cl, o.Clusters, o.SkipCleanup, o.Logger)
	if err != nil {
		return nil, err
	}
	if h, ok := src.(Holder); ok && !o.SkipCleanup {
		if gone, err := SweepHolds(ctx, h, cl); err != nil {
			o.Logger.Warn("restore: " + err.Error())
		} else {
			for _, x := range gone {
				o.Logger.Info("restore: removed the hold of a finished instant restore", "point", x.Point, "external_repository", x.Object)
			}
		}
	}
	start := time.Now()
	p, err := makePlan(ctx, cl, rp, o)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	res := &Result{RestorePoint: rp.Name(), Name: p.name, Cluster: p.cluster.Name, DataPath: p.dataPath, NICs: p.nicNames,
		KeptMACs: p.keepMACs, Cleanup: swept, Warnings: p.warnings}
	jb, err := j.Begin("restore", cl, clusterjob.JobOptions{CleanupTimeout: o.CleanupTimeout, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	r := &run{src: src, cl: cl, jb: jb, p: p, o: o, res: res, bw: clusterjob.NewBandwidth(o.BandwidthLimit)}
	// After an incomplete cleanup the external repository may outlive
	// the job: its hold stays, for the sweep that removes both.
	cleaned, err := endJob(ctx, jb, res, r.restore(ctx))
	if cleaned {
		if herr := r.dropHold(ctx); herr != nil {
			err = fmt.Errorf("%w; the hold on the restore point stays until 'ahvfs cleanup': %v", err, herr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// endJob closes the restore's job after its work ended with err. A
// teardown that leaves objects behind is a warning of res after a
// success and joins err after a failure; cleaned reports a failure whose
// teardown removed everything the restore had created.
func endJob(ctx context.Context, jb *clusterjob.Job, res *Result, err error) (cleaned bool, _ error) {
	cerr := jb.Close(ctx)
	switch {
	case cerr != nil && err == nil:
		res.Warnings = append(res.Warnings, cerr.Error())
	case cerr != nil:
		err = fmt.Errorf("%w; cleanup incomplete: %v", err, cerr)
	case err != nil:
		return true, fmt.Errorf("%w (removed what the restore had created)", err)
	}
	return false, err
}

// sweepBefore sweeps the leftovers of earlier jobs (clusterjob.SweepBefore)
// unless skip, through clusters or, when nil, cl alone.
func sweepBefore(ctx context.Context, j *clusterjob.Journal, cl nutanix.Cluster, clusters clusterjob.Clusters, skip bool, logger *slog.Logger) (*clusterjob.Report, error) {
	if skip {
		return nil, nil
	}
	if clusters == nil {
		clusters = clusterjob.Only(cl)
	}
	return clusterjob.SweepBefore(ctx, j, clusters, logger)
}

// run is one restore in progress.
type run struct {
	src Source
	cl  nutanix.Cluster
	jb  *clusterjob.Job
	p   *plan
	o   Options
	res *Result
	bw  *clusterjob.Bandwidth

	temps []clusterjob.Object // volume group or images: released once the VM exists
	keep  []clusterjob.Object // an external repository: kept once the VM exists
	hold  *engine.Hold        // an instant restore's hold on its point
}

// restore performs the restore proper, in the order of the package doc.
func (r *run) restore(ctx context.Context) error {
	p, o, res := r.p, r.o, r.res
	for _, d := range p.disks {
		res.Disks = append(res.Disks, DiskResult{Name: d.Disk.Name(), Address: fmt.Sprintf("%s.%d", strings.ToLower(d.Bus), d.Index), Size: d.Disk.Size})
		res.Bytes += d.Disk.Size
	}
	var spec nutanix.VMSpec
	var err error
	switch p.dataPath {
	case DataPathREST:
		spec, err = r.uploadImages(ctx)
	case DataPathInstant:
		spec, err = r.externalDisks(ctx)
	default:
		spec, err = r.writeVolumeGroup(ctx)
	}
	if err != nil {
		return err
	}
	for _, d := range res.Disks {
		res.Written += d.Written
	}
	o.Logger.Info("restore: creating the VM", "vm", spec.Name)
	vmUUID, vm, err := r.jb.CreateVM(ctx, spec, p.original)
	if err != nil {
		return err
	}
	res.VMUUID = vmUUID
	// Overwrite: only now, with the new VM complete, touch the original.
	if orig := p.original; orig != nil {
		o.Logger.Info("restore: replacing the original VM", "vm", orig.Name, "uuid", orig.UUID)
		if err := r.jb.PowerOffOriginal(ctx, &vm); err != nil {
			return err
		}
		if err := r.jb.CommitReplacement(ctx, &vm); err != nil {
			// Committed: the new VM is the result whatever fails now; the
			// journal finishes the deletion of the original.
			res.Warnings = append(res.Warnings, err.Error())
		}
		res.Replaced = orig.UUID
	} else if err := r.jb.Forget(vm); err != nil {
		return err
	}
	// The VM is the result first, then what it reads from: a kill in
	// between leaves the repository to the sweep, which keeps it for the
	// VM that names it (the other order would leave it to nobody).
	for _, k := range r.keep {
		if err := r.jb.Forget(k); err != nil {
			return err
		}
	}
	cctx, cancel := r.jb.CleanupContext(ctx)
	defer cancel()
	for _, t := range r.temps {
		o.Logger.Info("restore: removing", "what", t.String())
		if err := r.jb.Release(cctx, t); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("could not remove %v", err))
		}
	}
	if o.PowerOn {
		if err := r.cl.SetPowerState(ctx, vmUUID, nutanix.PowerOn); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("VM %s is restored, but powering it on failed: %v", vmUUID, err))
			return nil
		}
		res.PoweredOn = true
	}
	return nil
}

// uploadImages uploads each disk as a temporary image; the VM's disks
// are clones of them.
func (r *run) uploadImages(ctx context.Context) (nutanix.VMSpec, error) {
	p, o := r.p, r.o
	spec := p.spec
	spec.Disks = append([]nutanix.DiskSpec(nil), p.spec.Disks...)
	for i, d := range p.disks {
		im, io, err := r.jb.CreateImage(ctx, nutanix.ImageSpec{Type: nutanix.DiskImage, ClusterUUID: p.cluster.UUID,
			Description: "temporary image of an ahvfs restore of " + p.rp.Name()}, "restore-"+p.name+"-"+d.Disk.Name())
		if err != nil {
			return spec, err
		}
		r.temps = append(r.temps, io)
		o.Logger.Info("restore: uploading", "disk", d.Disk.Name(), "image", io.Name)
		dr, err := r.src.OpenDisk(ctx, p.rp, d.Disk.Index)
		if err != nil {
			return spec, err
		}
		s := &diskStream{ctx: ctx, bw: r.bw, d: dr, size: d.Disk.Size, progress: o.Progress, index: d.Disk.Index}
		err = r.cl.UploadImage(ctx, im.UUID, s, d.Disk.Size)
		dr.Close()
		if err != nil {
			if s.err != nil {
				err = s.err
			}
			return spec, fmt.Errorf("upload %s: %w", d.Disk.Name(), err)
		}
		r.res.Disks[i].Written = s.off
		spec.Disks[i].ImageUUID = im.UUID
	}
	return spec, nil
}

// writeVolumeGroup creates a blank volume group, writes the non-zero
// chunks of each disk into its LUNs and detaches; the VM's disks are
// clones of the group's disks.
func (r *run) writeVolumeGroup(ctx context.Context) (nutanix.VMSpec, error) {
	p, o := r.p, r.o
	spec := p.spec
	var sizes []int64
	for _, d := range p.disks {
		sizes = append(sizes, d.Disk.Size)
	}
	o.Logger.Info("restore: creating volume group", "disks", len(sizes))
	vg, vgo, err := r.jb.CreateBlankVolumeGroup(ctx, nutanix.VolumeGroupSpec{ClusterUUID: p.cluster.UUID,
		ContainerUUID: p.spec.Disks[0].ContainerUUID, DiskSizes: sizes,
		Description: "temporary volume group of an ahvfs restore of " + p.rp.Name()}, "restore-"+p.name)
	if err != nil {
		return spec, err
	}
	r.temps = append(r.temps, vgo)
	a, err := r.jb.Attach(ctx, vg, sizes, clusterjob.AttachOptions{Initiator: o.InitiatorIQN, Port: o.ISCSIPort, ISCSI: o.ISCSI})
	if err != nil {
		return spec, err
	}
	o.Logger.Info("restore: writing disks over iSCSI", "target", a.Target, "portal", a.Portal)
	werr := writeLUNs(ctx, r.src, a.LUNs, p, o, r.bw, r.res)
	// Detach before the VM is created from the disks.
	if err := a.Close(ctx); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		return spec, werr
	}
	spec.Disks = append([]nutanix.DiskSpec(nil), p.spec.Disks...)
	for i := range spec.Disks {
		spec.Disks[i].VolumeDiskUUID = vg.Disks[i].UUID
	}
	return spec, nil
}
