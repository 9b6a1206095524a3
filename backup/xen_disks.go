package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/xapi"
)

// Data paths of an XCP-ng pool: NBD (the host's NBD server, TLS, several
// reads in flight) or the HTTP export of the whole disk (PathREST).
const PathNBD DataPath = "nbd"

// readDisk reads one disk of the snapshot into w (nil with Estimate):
// the CBT strategy's full or incremental, or the XVA strategy's delta VHD.
func (m *xenVMRun) readDisk(ctx context.Context, d xenDisk, w *engine.RestorePointWriter) (DiskReport, error) {
	o := m.r.o
	sv := m.snapVDIs[d.vdi.UUID]
	size := sv.VirtualSize
	if size <= 0 {
		size = d.vdi.VirtualSize
	}
	name := fmt.Sprintf("disk-%d", d.n)
	dr := DiskReport{Disk: name, Address: d.address(), Size: size}

	// The parent's copy of the disk, when the level is incremental.
	var parent *engine.Disk
	var base XenRefDisk
	if m.parent != nil {
		old, ok := m.ref.disk(d.vdi.UUID)
		switch {
		case m.cbtOff[d.vdi.UUID]:
			dr.Reason = "changed-block tracking was off until this backup"
		case !ok:
			dr.Reason = "new disk (not in the reference)"
		case old.Size != size:
			dr.Reason = fmt.Sprintf("resized from %d to %d bytes", old.Size, size)
		default:
			pd, err := m.parent.Disk(old.N)
			if err != nil || pd.Size != size {
				dr.Reason = "the parent restore point has no matching disk"
				break
			}
			parent, base = pd, old
		}
	} else if m.reason != "" {
		dr.Reason = m.reason
	}

	if m.strategy == StrategyXVA {
		if parent == nil {
			// A disk the delta cannot cover: its full raw export.
			return m.readRaw(ctx, d, sv, cbt.Full(size), nil, w, dr)
		}
		return m.readVHDDelta(ctx, d, sv, base, parent, w, dr)
	}

	plan := cbt.Full(size)
	if parent != nil {
		regs, err := m.changedBlocks(ctx, base, sv, size)
		switch {
		case err == nil:
			if plan, err = cbt.Align(regs, size, m.r.repo.ChunkSize(), cbt.Unchanged); err != nil {
				return dr, err
			}
		case xapi.IsCode(err, "VDI_NO_CBT_METADATA"):
			dr.Reason = "the reference snapshot has no changed-block metadata for it"
			parent = nil
		case ctx.Err() != nil:
			return dr, ctx.Err()
		default:
			// A full read is always right; a broken chain must not fail
			// every later backup.
			dr.Reason = fmt.Sprintf("changed blocks against the reference unavailable: %v", err)
			parent = nil
		}
	}
	if o.Estimate {
		dr.BytesRead, dr.Zero, dr.Unchanged = plan.SourceBytes(), plan.Bytes(cbt.Zero), plan.Bytes(cbt.Unchanged)
		return dr, nil
	}
	path := o.DataPath
	var infos []xapi.NBDInfo
	if path != PathREST {
		var err error
		if infos, err = m.xc.NBDInfo(ctx, sv.Ref); err != nil {
			if path == PathNBD {
				return dr, fmt.Errorf("NBD info of the snapshot's %s: %w", d.address(), err)
			}
			m.log.Warn("no NBD info; reading the pool's HTTP export instead", "disk", d.address(), "err", err)
		}
		if len(infos) == 0 && path == PathNBD {
			return dr, fmt.Errorf("no NBD server for the snapshot's %s: the pool has no network with purpose nbd (or use --data-path rest)", d.address())
		}
	}
	if len(infos) == 0 {
		return m.readRaw(ctx, d, sv, plan, parent, w, dr)
	}
	m.setPath(PathNBD)
	cl, err := dialNBD(ctx, infos)
	if err != nil {
		return dr, fmt.Errorf("NBD export of the snapshot's %s: %w", d.address(), err)
	}
	defer cl.Close()
	if cl.Size() != size {
		return dr, fmt.Errorf("NBD export of the snapshot's %s is %d bytes, the VDI %d", d.address(), cl.Size(), size)
	}
	if parent == nil {
		// A full reads only what the server says holds data.
		if p, ok, err := allocationPlan(ctx, cl, size, m.r.repo.ChunkSize()); err != nil {
			m.log.Warn("block status failed; reading the whole disk", "disk", d.address(), "err", err)
		} else if ok {
			plan = p
		}
	}
	dw, err := w.AddDisk(engine.DiskSpec{Index: d.n, Bus: "xvd", BusIndex: atoiOr(d.vbd.Userdevice, d.n), UUID: d.vdi.UUID, Size: size,
		Parent: parent, Reason: dr.Reason})
	if err != nil {
		return dr, err
	}
	progress := o.Progress.DiskStart(m.v.NameLabel, name, size, plan.SourceBytes())
	st, err := cbt.Ingest(ctx, clusterjob.LimitReads(cl, m.r.bw), plan, dw,
		cbt.Options{Workers: o.ReadWorkers, ReadSize: o.ReadSize, Progress: progress})
	o.Progress.DiskDone(m.v.NameLabel, name, err)
	dr.BytesRead, dr.Zero, dr.Unchanged = st.ReadBytes, st.ZeroBytes, st.UnchangedBytes
	return dr, err
}

// changedBlocks asks the pool which 64 KiB blocks changed between the
// reference's copy of the disk and the new snapshot's.
func (m *xenVMRun) changedBlocks(ctx context.Context, base XenRefDisk, sv xapi.VDI, size int64) ([]cbt.Region, error) {
	from, err := m.xc.VDIByUUID(ctx, base.SnapshotVDI)
	if err != nil {
		return nil, fmt.Errorf("reference VDI %s: %w", base.SnapshotVDI, err)
	}
	bm, err := m.xc.ListChangedBlocks(ctx, from.Ref, sv.Ref)
	if err != nil {
		return nil, err
	}
	if blocks := (size + xapi.CBTBlockSize - 1) / xapi.CBTBlockSize; int64(len(bm))*8 < blocks {
		// Bits missing past the end would read as unchanged.
		return nil, fmt.Errorf("the changed-block bitmap covers %d blocks of 64 KiB, the disk %d", len(bm)*8, blocks)
	}
	var regs []cbt.Region
	for _, e := range bm.Extents(size) {
		regs = append(regs, cbt.Region{Off: e.Off, Len: e.Len})
	}
	return regs, nil
}

// allocationPlan is the plan of a full read of an NBD export that skips
// what the server's block status (base:allocation) says reads as zeros.
// ok is false when the server cannot say.
func allocationPlan(ctx context.Context, cl *nbd.Client, size int64, chunkSize int) (cbt.Plan, bool, error) {
	if !cl.Info().BlockStatus {
		return nil, false, nil
	}
	var regs []cbt.Region
	for off := int64(0); off < size; {
		exts, err := cl.BlockStatus(ctx, off, size-off)
		if err != nil {
			return nil, false, err
		}
		for _, e := range exts {
			// A hole without the zero flag may read as anything: read it.
			if !e.Zero() {
				regs = append(regs, cbt.Region{Off: e.Offset, Len: e.Length})
			}
			off = e.Offset + e.Length
		}
	}
	p, err := cbt.Align(regs, size, chunkSize, cbt.Zero)
	return p, err == nil, err
}

// dialNBD connects to the first NBD server the pool names for a VDI,
// trusting the certificate it hands out for the host name it gives.
func dialNBD(ctx context.Context, infos []xapi.NBDInfo) (*nbd.Client, error) {
	var errs []error
	for _, in := range infos {
		// TLS always: the export name carries the session (a network of
		// purpose insecure_nbd is refused rather than read in clear).
		o := nbd.Options{Address: net.JoinHostPort(in.Address, strconv.FormatInt(in.Port, 10)), Export: in.ExportName,
			ServerName: in.Subject, QueueDepth: 16, TLS: true}
		if in.Cert != "" {
			o.CAPEM = []byte(in.Cert)
		}
		cl, err := nbd.Dial(ctx, o)
		if err == nil {
			return cl, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", o.Address, redactedErr{err, in.ExportName}))
	}
	return nil, errors.Join(errs...)
}

// redactedErr is err with the export name, which holds the session
// reference, left out of its message.
type redactedErr struct {
	err    error
	export string
}

func (r redactedErr) Error() string {
	msg := r.err.Error()
	if name, _, ok := strings.Cut(r.export, "?"); ok && r.export != "" {
		msg = strings.ReplaceAll(msg, r.export, name+"?…")
	}
	return msg
}

func (r redactedErr) Unwrap() error { return r.err }

// readRaw follows plan over the disk's whole raw HTTP export, read once
// from start to end.
func (m *xenVMRun) readRaw(ctx context.Context, d xenDisk, sv xapi.VDI, plan cbt.Plan, parent *engine.Disk, w *engine.RestorePointWriter, dr DiskReport) (DiskReport, error) {
	o := m.r.o
	if o.Estimate {
		dr.BytesRead = dr.Size
		return dr, nil
	}
	m.setPath(PathREST)
	dw, err := w.AddDisk(engine.DiskSpec{Index: d.n, Bus: "xvd", BusIndex: atoiOr(d.vbd.Userdevice, d.n), UUID: d.vdi.UUID, Size: dr.Size,
		Parent: parent, Reason: dr.Reason})
	if err != nil {
		return dr, err
	}
	body, err := m.xc.ExportRawVDI(ctx, sv.Ref)
	if err != nil {
		return dr, fmt.Errorf("export the snapshot's %s: %w", d.address(), err)
	}
	defer body.Close()
	progress := o.Progress.DiskStart(m.v.NameLabel, dr.Disk, dr.Size, dr.Size)
	st, err := ingestStream(ctx, limitStream(ctx, body, m.r.bw), plan, dw, progress)
	o.Progress.DiskDone(m.v.NameLabel, dr.Disk, err)
	dr.BytesRead, dr.Zero, dr.Unchanged = st.ReadBytes, st.ZeroBytes, st.UnchangedBytes
	return dr, err
}

// ingestStream follows a chunk-aligned plan (cbt.Align's: Read, Zero and
// Unchanged extents, no Patch) over a stream of the whole disk: Read
// extents are stored, the bytes of the others are read and dropped.
func ingestStream(ctx context.Context, r io.Reader, plan cbt.Plan, dw *engine.DiskWriter, progress func(int64)) (cbt.Stats, error) {
	var st cbt.Stats
	cs := int64(dw.ChunkSize())
	buf := make([]byte, cs)
	var pos int64
	for _, e := range plan {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if e.Off != pos {
			return st, fmt.Errorf("plan extent at %d, stream at %d", e.Off, pos)
		}
		switch e.Kind {
		case cbt.Read:
			for off := e.Off; off < e.Off+e.Len; off += cs {
				n := min(cs, e.Off+e.Len-off)
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					return st, fmt.Errorf("read the export at %d: %w", off, unexpected(err))
				}
				if err := dw.WriteAt(ctx, buf[:n], off); err != nil {
					return st, err
				}
				st.ReadBytes += n
				progress(off + n)
			}
		case cbt.Zero, cbt.Unchanged:
			// The export sends these bytes too: they count as read.
			n, err := io.CopyN(io.Discard, r, e.Len)
			st.ReadBytes += n
			if err != nil {
				return st, fmt.Errorf("read the export at %d: %w", e.Off+n, unexpected(err))
			}
			if err := skipExtent(ctx, dw, e, &st); err != nil {
				return st, err
			}
			progress(e.Off + e.Len)
		default:
			return st, fmt.Errorf("plan extent of kind %s in a streamed read", e.Kind)
		}
		pos = e.Off + e.Len
	}
	return st, nil
}

// skipExtent records a Zero or Unchanged extent.
func skipExtent(ctx context.Context, dw *engine.DiskWriter, e cbt.Extent, st *cbt.Stats) error {
	if e.Kind == cbt.Zero {
		st.ZeroBytes += e.Len
		return dw.Zero(e.Off, e.Len)
	}
	st.UnchangedBytes += e.Len
	return dw.Unchanged(ctx, e.Off, e.Len)
}

// limitStream caps a stream's reads at the run's bandwidth.
func limitStream(ctx context.Context, r io.Reader, bw *clusterjob.Bandwidth) io.Reader {
	return &limitedStream{ctx: ctx, r: r, bw: bw}
}

type limitedStream struct {
	ctx context.Context
	r   io.Reader
	bw  *clusterjob.Bandwidth
}

func (l *limitedStream) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.bw.Wait(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// unexpected makes a stream that ends early an error that says so.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
