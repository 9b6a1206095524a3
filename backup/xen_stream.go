package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ahvfs/ahvfs/cbt"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/vhd"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/ahvfs/ahvfs/xva"
)

// blockSink assembles a sparse stream of blocks — each at its offset in
// the disk, offsets increasing — into the whole chunks the repository
// stores. Inside a chunk some block touches, the bytes no block gives are
// zeros (gap Zero: a full) or the parent's (gap Unchanged: a delta); a
// chunk no block touches is recorded as gap.
type blockSink struct {
	ctx      context.Context
	dw       *engine.DiskWriter
	cs, size int64
	gap      cbt.Kind
	parent   io.ReaderAt // gap Unchanged only
	progress func(int64)

	buf  []byte
	cur  int64 // offset of the chunk in buf; -1: none
	next int64 // blocks must start at or after next
	done int64 // everything before done is recorded
	st   cbt.Stats
}

func newBlockSink(ctx context.Context, dw *engine.DiskWriter, gap cbt.Kind, parent io.ReaderAt, progress func(int64)) *blockSink {
	return &blockSink{ctx: ctx, dw: dw, cs: int64(dw.ChunkSize()), size: dw.Size(), gap: gap, parent: parent, progress: progress,
		buf: make([]byte, dw.ChunkSize()), cur: -1}
}

// put takes data at off.
func (b *blockSink) put(off int64, data []byte) error {
	if off < b.next {
		return fmt.Errorf("block at %d after one ending at %d: the stream is out of order", off, b.next)
	}
	if end := off + int64(len(data)); end > b.size {
		if off >= b.size {
			return fmt.Errorf("block at %d beyond the disk's %d bytes", off, b.size)
		}
		data = data[:b.size-off]
	}
	b.next = off + int64(len(data))
	b.st.ReadBytes += int64(len(data))
	for len(data) > 0 {
		c := off / b.cs * b.cs
		if c != b.cur {
			if err := b.flush(); err != nil {
				return err
			}
			if err := b.skipTo(c); err != nil {
				return err
			}
			if err := b.start(c); err != nil {
				return err
			}
		}
		n := copy(b.buf[off-c:min(b.cs, b.size-c)], data)
		data, off = data[n:], off+int64(n)
	}
	return nil
}

// start loads the chunk at c with what its gaps hold.
func (b *blockSink) start(c int64) error {
	n := min(b.cs, b.size-c)
	if b.gap == cbt.Unchanged {
		if _, err := b.parent.ReadAt(b.buf[:n], c); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the parent restore point at %d: %w", c, err)
		}
	} else {
		clear(b.buf[:n])
	}
	b.cur = c
	return nil
}

func (b *blockSink) flush() error {
	if b.cur < 0 {
		return nil
	}
	n := min(b.cs, b.size-b.cur)
	if err := b.dw.WriteAt(b.ctx, b.buf[:n], b.cur); err != nil {
		return err
	}
	b.done, b.cur = b.cur+n, -1
	b.progress(b.done)
	return nil
}

// skipTo records [done, c) as the gap.
func (b *blockSink) skipTo(c int64) error {
	if c <= b.done {
		return nil
	}
	if err := skipExtent(b.ctx, b.dw, cbt.Extent{Kind: b.gap, Off: b.done, Len: c - b.done}, &b.st); err != nil {
		return err
	}
	b.done = c
	b.progress(c)
	return nil
}

// finish stores the last chunk and records the rest of the disk as gap.
func (b *blockSink) finish() error {
	if err := b.flush(); err != nil {
		return err
	}
	return b.skipTo(b.size)
}

// readXVA streams the snapshot's XVA export into the restore point: one
// pass over the tar, each disk's 1 MiB blocks assembled into chunks, the
// blocks the XVA leaves out (all zeros) recorded as zeros. Disks not to
// be stored are read past.
func (m *xenVMRun) readXVA(ctx context.Context, w *engine.RestorePointWriter) error {
	o := m.r.o
	if o.Estimate {
		for i, d := range m.disks {
			m.vr.Disks[i] = DiskReport{Disk: fmt.Sprintf("disk-%d", d.n), Address: d.address(), Size: d.vdi.VirtualSize,
				BytesRead: d.vdi.VirtualSize, Reason: m.reason}
		}
		return nil
	}
	m.setPath("xva")
	body, err := m.xc.ExportVM(ctx, m.snap.Ref)
	if err != nil {
		return fmt.Errorf("export snapshot %s: %w", m.snap.NameLabel, err)
	}
	defer body.Close()
	xr := xva.NewReader(limitStream(ctx, body, m.r.bw))
	h, err := xr.Header()
	if err != nil {
		return fmt.Errorf("XVA of snapshot %s: %w", m.snap.NameLabel, err)
	}
	xdisks, err := h.Disks()
	if err != nil {
		return fmt.Errorf("XVA of snapshot %s: %w", m.snap.NameLabel, err)
	}
	// The XVA's Ref:N → our disk, by the snapshot VDI's UUID.
	index := map[string]int{}
	mapped := make([]bool, len(m.disks))
	for _, xd := range xdisks {
		uuid, _ := xd.VDI.Fields["uuid"].(string)
		for i, d := range m.disks {
			if m.snapVDIs[d.vdi.UUID].UUID == uuid {
				index[xd.ID], mapped[i] = i, true
				if xd.VirtualSize != m.snapVDIs[d.vdi.UUID].VirtualSize {
					return fmt.Errorf("XVA of snapshot %s: %s is %d bytes, the VDI %d", m.snap.NameLabel, d.address(),
						xd.VirtualSize, m.snapVDIs[d.vdi.UUID].VirtualSize)
				}
			}
		}
	}
	for i, ok := range mapped {
		if !ok {
			return fmt.Errorf("XVA of snapshot %s has no disk %s", m.snap.NameLabel, m.disks[i].address())
		}
	}
	err = streamXVA(xr, len(m.disks), func(id string) (int, bool) { i, ok := index[id]; return i, ok },
		func(i int) (*blockSink, error) {
			d := m.disks[i]
			size := m.snapVDIs[d.vdi.UUID].VirtualSize
			m.vr.Disks[i] = DiskReport{Disk: fmt.Sprintf("disk-%d", d.n), Address: d.address(), Size: size, Reason: m.reason}
			dw, err := w.AddDisk(engine.DiskSpec{Index: d.n, Bus: "xvd", BusIndex: atoiOr(d.vbd.Userdevice, d.n), UUID: d.vdi.UUID,
				Size: size, Reason: m.reason})
			if err != nil {
				return nil, err
			}
			progress := o.Progress.DiskStart(m.v.NameLabel, m.vr.Disks[i].Disk, size, size)
			return newBlockSink(ctx, dw, cbt.Zero, nil, progress), nil
		},
		func(i int, st cbt.Stats, err error) {
			m.vr.Disks[i].BytesRead, m.vr.Disks[i].Zero = st.ReadBytes, st.ZeroBytes
			o.Progress.DiskDone(m.v.NameLabel, m.vr.Disks[i].Disk, err)
		}, func(i int) string { return m.disks[i].address() })
	if err != nil {
		return fmt.Errorf("XVA of snapshot %s: %w", m.snap.NameLabel, err)
	}
	return nil
}

// streamXVA reads the blocks of an XVA whose header xr has read into n
// disks: index maps an XVA disk (Ref:N) to one of them (a disk it does
// not map is read past), open makes a disk's sink on its first block (or
// at the end, for a disk of zeros only), done reports each finished disk,
// name names disk i in errors.
func streamXVA(xr *xva.Reader, n int, index func(id string) (int, bool), open func(i int) (*blockSink, error),
	done func(i int, st cbt.Stats, err error), name func(i int) string) error {
	sinks := make([]*blockSink, n)
	get := func(i int) (*blockSink, error) {
		if sinks[i] == nil {
			s, err := open(i)
			if err != nil {
				return nil, err
			}
			sinks[i] = s
		}
		return sinks[i], nil
	}
	end := func(i int, err error) error {
		if sinks[i] == nil {
			return err
		}
		if err == nil {
			err = sinks[i].finish()
		}
		done(i, sinks[i].st, err)
		return err
	}
	last := -1
	for {
		blk, err := xr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if last >= 0 {
				end(last, err)
			}
			return err
		}
		i, ok := index(blk.Disk)
		if !ok {
			continue // a disk left out
		}
		if last >= 0 && last != i {
			if err := end(last, nil); err != nil {
				return err
			}
		}
		s, err := get(i)
		if err != nil {
			return err
		}
		last = i
		if err := s.put(blk.Index*xva.BlockSize, blk.Data); err != nil {
			end(i, err)
			return fmt.Errorf("%s: %w", name(i), err)
		}
	}
	if last >= 0 {
		if err := end(last, nil); err != nil {
			return err
		}
	}
	for i := range n {
		if sinks[i] == nil { // a disk of zeros only
			if _, err := get(i); err != nil {
				return err
			}
			if err := end(i, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// readVHDDelta streams the disk's delta VHD against the reference
// snapshot: the 2 MiB blocks that differ are stored (completed from the
// parent restore point where a chunk is not covered), the rest is the
// parent's.
func (m *xenVMRun) readVHDDelta(ctx context.Context, d xenDisk, sv xapi.VDI, base XenRefDisk, parent *engine.Disk,
	w *engine.RestorePointWriter, dr DiskReport) (DiskReport, error) {
	o := m.r.o
	from, err := m.xc.VDIByUUID(ctx, base.SnapshotVDI)
	if err != nil {
		if ctx.Err() != nil {
			return dr, ctx.Err()
		}
		// A full read is always right.
		dr.Reason = fmt.Sprintf("the reference's VDI %s is unavailable: %v", base.SnapshotVDI, err)
		return m.readRaw(ctx, d, sv, cbt.Full(dr.Size), nil, w, dr)
	}
	if o.Estimate {
		return dr, nil // the pool says the delta's size only by sending it
	}
	m.setPath("vhd")
	body, err := m.xc.ExportVHD(ctx, sv.Ref, from.Ref)
	if err != nil {
		return dr, fmt.Errorf("delta VHD of %s: %w", d.address(), err)
	}
	defer body.Close()
	vr, err := vhd.NewReader(limitStream(ctx, body, m.r.bw))
	if err != nil {
		return dr, fmt.Errorf("delta VHD of %s: %w", d.address(), err)
	}
	if vr.Size() != dr.Size {
		return dr, fmt.Errorf("delta VHD of %s is %d bytes, the VDI %d", d.address(), vr.Size(), dr.Size)
	}
	dw, err := w.AddDisk(engine.DiskSpec{Index: d.n, Bus: "xvd", BusIndex: atoiOr(d.vbd.Userdevice, d.n), UUID: d.vdi.UUID, Size: dr.Size,
		Parent: parent})
	if err != nil {
		return dr, err
	}
	pr, err := m.r.repo.OpenDisk(ctx, m.parent, parent.Index)
	if err != nil {
		return dr, fmt.Errorf("open the parent restore point: %w", err)
	}
	defer pr.Close()
	progress := o.Progress.DiskStart(m.v.NameLabel, dr.Disk, dr.Size, int64(len(vr.Present()))*vr.BlockSize())
	sink := newBlockSink(ctx, dw, cbt.Unchanged, pr, progress)
	err = func() error {
		for {
			b, err := vr.Next()
			if errors.Is(err, io.EOF) {
				return sink.finish()
			}
			if err != nil {
				return fmt.Errorf("delta VHD of %s: %w", d.address(), err)
			}
			if err := putSectors(sink, b); err != nil {
				return fmt.Errorf("delta VHD of %s: %w", d.address(), err)
			}
		}
	}()
	o.Progress.DiskDone(m.v.NameLabel, dr.Disk, err)
	dr.BytesRead, dr.Unchanged = sink.st.ReadBytes, sink.st.UnchangedBytes
	return dr, err
}

// putSectors puts the runs of a VHD block's sectors its bitmap marks
// present (bit set, most significant bit first).
func putSectors(s *blockSink, b vhd.Block) error {
	const sector = 512
	n := len(b.Data) / sector
	present := func(i int) bool {
		return i/8 < len(b.Bitmap) && b.Bitmap[i/8]&(0x80>>(i%8)) != 0
	}
	for i := 0; i < n; {
		if !present(i) {
			i++
			continue
		}
		j := i
		for j < n && present(j) {
			j++
		}
		if b.Off+int64(i*sector) >= s.size {
			return nil
		}
		if err := s.put(b.Off+int64(i*sector), b.Data[i*sector:j*sector]); err != nil {
			return err
		}
		i = j
	}
	return nil
}
