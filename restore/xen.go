package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/xapi"
)

// DataPathXen is the Result.DataPath of a restore to an XCP-ng pool:
// every disk streamed whole into a new VDI (PUT /import_raw_vdi).
const DataPathXen = "import_raw_vdi"

// ValidateXen reports every invalid field for RestoreXen: Validate's
// checks, and the options only an AHV cluster has.
func (o *Options) ValidateXen() error {
	var errs []error
	if err := o.Validate(); err != nil {
		errs = append(errs, err)
	}
	ahv := func(set bool, flag, why string) {
		if set {
			errs = append(errs, fmt.Errorf("%s is for AHV clusters: %s", o.key(flag), why))
		}
	}
	ahv(o.TargetCluster != "", "--target-cluster", "an XCP-ng restore goes to the pool it connects to")
	ahv(o.Container != "", "--container", "on an XCP-ng pool give "+o.key("--sr"))
	ahv(o.DataPath != "" && o.DataPath != DataPathAuto, "--data-path", "disks go to an XCP-ng pool through its raw VDI import")
	ahv(o.NFS != "", "--nfs", "an XCP-ng pool has no instant restore")
	ahv(o.ISCSIPort != 0, "--iscsi-port", "disks go to an XCP-ng pool through its raw VDI import")
	ahv(o.InitiatorIQN != "", "--initiator-iqn", "disks go to an XCP-ng pool through its raw VDI import")
	return errors.Join(errs...)
}

// RestoreXen recreates the VM of rp on the XCP-ng / XenServer pool xc
// reaches: a restore point of an XCP-ng VM as it was recorded, one of an
// AHV VM (or an import) mapped as the package doc says ("XCP-ng and
// across hypervisors"). Like Restore it sweeps what earlier jobs left
// (clusterjob.SweepXen), validates everything, then creates the VDIs and
// the VM through a journal job whose teardown removes them again on
// failure or cancellation; a restore killed outright leaves them to the
// next sweep. The repository is only read.
func RestoreXen(ctx context.Context, src Source, xc *xapi.Client, rp *engine.RestorePoint, o Options) (*Result, error) {
	if err := o.ValidateXen(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CleanupTimeout == 0 {
		o.CleanupTimeout = 2 * time.Minute
	}
	j, err := journalOf(src, rp, o)
	if err != nil {
		return nil, err
	}
	var swept *clusterjob.Report
	if !o.SkipCleanup {
		swept, err = clusterjob.SweepXen(ctx, j, xc, o.Logger)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			o.Logger.Warn("cleanup of earlier jobs' leftovers failed; continuing", "err", err)
		}
	}
	start := time.Now()
	p, err := makeXenPlan(ctx, xc, rp, o)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	res := &Result{RestorePoint: rp.Name(), Name: p.name, Cluster: p.pool, DataPath: DataPathXen, NICs: p.nicNames,
		KeptMACs: p.keptMACs, Cleanup: swept, Warnings: p.warnings}
	jb, err := j.BeginXen(ctx, "restore", xc, clusterjob.JobOptions{CleanupTimeout: o.CleanupTimeout, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	r := &xenRun{src: src, xc: xc, jb: jb, p: p, o: o, res: res, bw: clusterjob.NewBandwidth(o.BandwidthLimit)}
	_, err = endJob(ctx, jb, res, r.restore(ctx))
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// journalOf is the journal of o, else of the repository src reads.
func journalOf(src Source, rp *engine.RestorePoint, o Options) (*clusterjob.Journal, error) {
	if o.Journal != nil {
		return o.Journal, nil
	}
	var j *clusterjob.Journal
	var err error
	switch d := src.(type) {
	case *engine.Repository:
		j, err = clusterjob.RepositoryJournal(d)
	case interface{ Dir() string }:
		j, err = clusterjob.OpenJournal(filepath.Join(d.Dir(), "journal"))
	default:
		return nil, fmt.Errorf("restore %s: no journal for the temporary cluster objects", rp.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", rp.Name(), err)
	}
	return j, nil
}

// xenRun is one restore to an XCP-ng pool in progress.
type xenRun struct {
	src Source
	xc  *xapi.Client
	jb  *clusterjob.Job
	p   *xenPlan
	o   Options
	res *Result
	bw  *clusterjob.Bandwidth
}

// xenVDI is a VDI the restore made, with the name it takes once its VM
// is complete.
type xenVDI struct {
	vdi   xapi.VDI
	obj   clusterjob.Object
	label string
}

// restore creates the VDIs, fills them, creates the VM on them, and only
// then gives everything its final name and takes it out of the journal.
func (r *xenRun) restore(ctx context.Context) error {
	p, o, res := r.p, r.o, r.res
	for _, d := range p.disks {
		res.Disks = append(res.Disks, DiskResult{Name: d.place.Disk.Name(), Address: "xvd." + d.userdevice, Size: d.place.Disk.Size})
		res.Bytes += d.place.Disk.Size
	}
	desc := "restored by ahvfs from " + p.rp.Name()
	spec := p.vm
	spec.NameDescription = desc
	var vdis []xenVDI
	for i, d := range p.disks {
		disk := d.place.Disk
		vdi, obj, err := r.jb.CreateXenVDI(ctx, xapi.VDISpec{NameDescription: desc, SR: d.sr.Ref, VirtualSize: disk.Size},
			"restore-"+p.name+"-"+disk.Name())
		if err != nil {
			return err
		}
		vdis = append(vdis, xenVDI{vdi: vdi, obj: obj, label: d.label})
		if vdi.VirtualSize < disk.Size {
			return fmt.Errorf("VDI %s for %s has %d bytes, the disk %d", obj.Name, disk.Name(), vdi.VirtualSize, disk.Size)
		}
		o.Logger.Info("restore: importing", "disk", disk.Name(), "vdi", vdi.UUID, "sr", d.sr.NameLabel)
		n, err := r.importDisk(ctx, disk, vdi)
		res.Disks[i].Written = n
		res.Written += n
		if err != nil {
			return fmt.Errorf("import %s into VDI %s: %w", disk.Name(), vdi.UUID, err)
		}
		spec.Disks = append(spec.Disks, xapi.VBDSpec{VDI: vdi.Ref, Userdevice: d.userdevice, Bootable: d.bootable, ReadOnly: d.readOnly})
	}
	o.Logger.Info("restore: creating the VM", "vm", p.name)
	vm, vmObj, err := r.jb.CreateXenVM(ctx, spec, p.name, p.original)
	if err != nil {
		return err
	}
	if err := setNameLabel(ctx, r.xc, "VM", vm.Ref, p.name); err != nil {
		return fmt.Errorf("name the VM %s: %w", p.name, err)
	}
	for _, v := range vdis {
		if err := setNameLabel(ctx, r.xc, "VDI", v.vdi.Ref, v.label); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("VDI %s keeps the name %s: %v", v.vdi.UUID, v.obj.Name, err))
		}
	}
	// The VM is complete: it leaves the journal (an overwrite commits
	// first, and only then is the original touched beyond powering it
	// off), then its VDIs. A crash in between leaves VDI entries that a
	// sweep keeps, since the VM's VBDs use them (clusterjob
	// releaseXenVDI).
	if orig := p.original; orig != nil {
		o.Logger.Info("restore: replacing the original VM", "vm", orig.NameLabel, "uuid", orig.UUID)
		if err := r.jb.PowerOffXenOriginal(ctx, &vmObj); err != nil {
			return err
		}
		committed, err := r.jb.CommitXenReplacement(ctx, &vmObj)
		if err != nil && !committed {
			return err
		}
		if err != nil {
			// Committed: the new VM is the result whatever fails now;
			// the journal finishes the deletion of the original.
			res.Warnings = append(res.Warnings, err.Error())
		}
		res.Replaced = orig.UUID
	} else if err := r.jb.Forget(vmObj); err != nil {
		return err
	}
	for _, v := range vdis {
		if err := r.jb.Forget(v.obj); err != nil {
			if res.Replaced == "" {
				return err
			}
			// The original is gone: the new VM is the result, and a sweep
			// keeps a VDI its VBDs use.
			res.Warnings = append(res.Warnings, err.Error())
		}
	}
	res.VMUUID = vm.UUID
	if o.PowerOn {
		if err := r.xc.Start(ctx, vm.Ref); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("VM %s is restored, but starting it failed: %v", vm.UUID, err))
			return nil
		}
		res.PoweredOn = true
	}
	return nil
}

// importDisk streams disk whole into vdi (zeros included, padded with
// zeros to the VDI's size) and returns the bytes sent.
func (r *xenRun) importDisk(ctx context.Context, disk *engine.Disk, vdi xapi.VDI) (int64, error) {
	dr, err := r.src.OpenDisk(ctx, r.p.rp, disk.Index)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	s := &vdiStream{ctx: ctx, bw: r.bw, d: dr, size: disk.Size, total: vdi.VirtualSize, index: disk.Index, progress: r.o.Progress}
	err = r.xc.ImportRawVDI(ctx, vdi.Ref, s, vdi.VirtualSize)
	return s.sent, err
}

// setNameLabel renames an object of class (VM, VDI).
func setNameLabel(ctx context.Context, xc *xapi.Client, class string, ref xapi.Ref, name string) error {
	return xc.Call(ctx, class+".set_name_label", nil, ref, name)
}

// vdiStream reads a disk sequentially (the engine reads ahead in
// parallel), then zeros up to total, for an upload. It seeks, so that an
// upload redirected to another host can start again.
type vdiStream struct {
	ctx         context.Context
	bw          *clusterjob.Bandwidth
	d           *engine.DiskReader
	off         int64
	size, total int64
	sent        int64 // the furthest offset read
	index       int
	progress    func(int, int64, int64)
}

var _ io.ReadSeeker = (*vdiStream)(nil)

func (s *vdiStream) Read(p []byte) (int, error) {
	if s.off >= s.total {
		return 0, io.EOF
	}
	if int64(len(p)) > s.total-s.off {
		p = p[:s.total-s.off]
	}
	if s.off < s.size && int64(len(p)) > s.size-s.off {
		p = p[:s.size-s.off]
	}
	if err := s.bw.Wait(s.ctx, len(p)); err != nil {
		return 0, err
	}
	var n int
	var err error
	if s.off < s.size {
		n, err = s.d.ReadAtContext(s.ctx, p, s.off)
		if err == io.EOF && s.off+int64(n) >= s.size {
			err = nil
		}
	} else {
		clear(p)
		n = len(p)
	}
	s.off += int64(n)
	s.sent = max(s.sent, s.off)
	if s.progress != nil && n > 0 {
		s.progress(s.index, min(s.off, s.size), s.size)
	}
	return n, err
}

func (s *vdiStream) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.off
	case io.SeekEnd:
		off += s.total
	default:
		return s.off, fmt.Errorf("seek: whence %d", whence)
	}
	if off < 0 {
		return s.off, errors.New("seek before the start")
	}
	s.off = off
	return off, nil
}
