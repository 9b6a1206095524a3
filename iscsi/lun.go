package iscsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// command runs one SCSI command, retrying the conditions a target reports
// while it settles: UNIT ATTENTION (e.g. after login or a target restart),
// BUSY, TASK SET FULL and NOT READY "becoming ready". It returns the
// number of bytes the target transferred for a read.
func (s *Session) command(ctx context.Context, lun [8]byte, cdb, buf []byte, read, exact bool) (int, error) {
	unitAttentions, waits := 0, 0
	for {
		t := &task{op: opString(cdb), lun: lun, cdb: cdb, read: read, exact: exact, buf: buf}
		err := s.do(ctx, t)
		if err == nil {
			return t.received, nil
		}
		var se *SenseError
		var st *StatusError
		switch {
		case errors.As(err, &se) && se.Key == SenseUnitAttention && unitAttentions < 10:
			unitAttentions++
			continue
		case waits < 50 && (errors.As(err, &se) && se.Key == SenseNotReady && se.ASC == 0x04 && se.ASCQ == 0x01 ||
			errors.As(err, &st) && st.Response == 0 && (st.Status == statusBusy || st.Status == statusTaskSetFull)):
			waits++
			d := min(time.Duration(waits)*10*time.Millisecond, 500*time.Millisecond)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			continue
		}
		return t.received, err
	}
}

// ReportLUNs lists the logical units of the target (REPORT LUNS), in the
// target's order.
func (s *Session) ReportLUNs(ctx context.Context) ([]uint64, error) {
	alloc := 16 + 8*64
	for {
		buf := make([]byte, alloc)
		n, err := s.command(ctx, [8]byte{}, cdbReportLUNs(uint32(alloc)), buf, true, false)
		if err != nil {
			return nil, fmt.Errorf("report luns of %s: %w", s.o.TargetIQN, err)
		}
		if n < 8 {
			return nil, fmt.Errorf("report luns of %s: %w: %d bytes of data", s.o.TargetIQN, ErrProtocol, n)
		}
		listLen := int(binary.BigEndian.Uint32(buf[0:4]))
		if 8+listLen > alloc && alloc < 1<<20 {
			alloc = 8 + listLen
			continue
		}
		list := buf[8:n]
		list = list[:min(len(list), listLen)]
		luns := make([]uint64, 0, len(list)/8)
		for len(list) >= 8 {
			luns = append(luns, decodeLUN(list[:8]))
			list = list[8:]
		}
		return luns, nil
	}
}

// Inquiry returns the standard INQUIRY data of a LUN.
func (s *Session) Inquiry(ctx context.Context, lun uint64) (*Inquiry, error) {
	field, err := encodeLUN(lun)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 96)
	n, err := s.command(ctx, field, cdbInquiry(false, 0, uint16(len(buf))), buf, true, false)
	if err != nil {
		return nil, fmt.Errorf("inquiry of %s LUN %d: %w", s.o.TargetIQN, lun, err)
	}
	inq, err := parseInquiry(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("inquiry of %s LUN %d: %w", s.o.TargetIQN, lun, err)
	}
	return inq, nil
}

// vpd reads a vital product data page.
func (s *Session) vpd(ctx context.Context, field [8]byte, page uint8) ([]byte, error) {
	alloc := 255
	for {
		buf := make([]byte, alloc)
		n, err := s.command(ctx, field, cdbInquiry(true, page, uint16(alloc)), buf, true, false)
		if err != nil {
			return nil, err
		}
		if n < 4 || buf[1] != page {
			return nil, fmt.Errorf("%w: VPD page 0x%02x: bad header", ErrProtocol, page)
		}
		full := 4 + int(binary.BigEndian.Uint16(buf[2:4]))
		if full > alloc && alloc < 0xffff {
			alloc = min(full, 0xffff)
			continue
		}
		return buf[:min(n, full)], nil
	}
}

// LUN opens logical unit n: it waits for the unit to be ready and reads its
// capacity. The LUN must be a block device (disk).
func (s *Session) LUN(ctx context.Context, n uint64) (*LUN, error) {
	field, err := encodeLUN(n)
	if err != nil {
		return nil, err
	}
	l := &LUN{s: s, n: n, field: field}
	wrap := func(err error) error {
		return fmt.Errorf("open %s LUN %d: %w", s.o.TargetIQN, n, err)
	}
	if _, err := s.command(ctx, field, []byte{scsiTestUnitReady, 0, 0, 0, 0, 0}, nil, false, false); err != nil {
		return nil, wrap(err)
	}
	buf := make([]byte, 32)
	got, err := s.command(ctx, field, cdbReadCap16(uint32(len(buf))), buf, true, false)
	var se *SenseError
	switch {
	case err == nil && got >= 12:
		l.blocks = binary.BigEndian.Uint64(buf[0:8]) + 1
		l.blockSize = int(binary.BigEndian.Uint32(buf[8:12]))
	case err == nil:
		return nil, wrap(fmt.Errorf("%w: READ CAPACITY(16) returned %d bytes", ErrProtocol, got))
	case errors.As(err, &se) && se.Key == SenseIllegalRequest:
		// No READ CAPACITY(16): try the 10-byte form.
		cdb := make([]byte, 10)
		cdb[0] = scsiReadCap10
		if got, err = s.command(ctx, field, cdb, buf[:8], true, false); err != nil {
			return nil, wrap(err)
		}
		if got < 8 {
			return nil, wrap(fmt.Errorf("%w: READ CAPACITY(10) returned %d bytes", ErrProtocol, got))
		}
		l.blocks = uint64(binary.BigEndian.Uint32(buf[0:4])) + 1
		l.blockSize = int(binary.BigEndian.Uint32(buf[4:8]))
	default:
		return nil, wrap(err)
	}
	if l.blockSize < 512 || l.blockSize > 1<<20 || l.blockSize&(l.blockSize-1) != 0 {
		return nil, wrap(fmt.Errorf("unsupported block size %d", l.blockSize))
	}
	l.maxXfer = s.o.MaxTransferLength / l.blockSize * l.blockSize
	// Block Limits (VPD 0xB0) may lower the transfer size; many targets
	// (tgtd among them) do not have the page, which is fine.
	if p, err := s.vpd(ctx, field, 0xb0); err == nil && len(p) >= 12 {
		if mx := int(binary.BigEndian.Uint32(p[8:12])); mx > 0 && mx*l.blockSize < l.maxXfer {
			l.maxXfer = mx * l.blockSize
		}
	}
	l.maxXfer = max(l.maxXfer, l.blockSize)
	return l, nil
}

// LUN is a logical unit used as a block device. ReadAt and WriteAt (and
// their Context forms) are safe for concurrent use and may overlap other
// calls; offsets and lengths need not be block-aligned, but an unaligned
// write reads and rewrites the partial blocks at its ends, which races
// with a concurrent write to the same blocks.
type LUN struct {
	s         *Session
	n         uint64
	field     [8]byte
	blocks    uint64
	blockSize int
	maxXfer   int // bytes per command
}

var (
	_ io.ReaderAt = (*LUN)(nil)
	_ io.WriterAt = (*LUN)(nil)
)

// Number is the LUN's number.
func (l *LUN) Number() uint64 { return l.n }

// Size is the LUN's capacity in bytes.
func (l *LUN) Size() int64 { return int64(l.blocks) * int64(l.blockSize) }

// BlockSize is the LUN's logical block size in bytes.
func (l *LUN) BlockSize() int { return l.blockSize }

// Inquiry returns the LUN's standard INQUIRY data.
func (l *LUN) Inquiry(ctx context.Context) (*Inquiry, error) { return l.s.Inquiry(ctx, l.n) }

// Serial returns the unit serial number (VPD page 0x80), spaces trimmed.
func (l *LUN) Serial(ctx context.Context) (string, error) {
	p, err := l.s.vpd(ctx, l.field, 0x80)
	if err != nil {
		return "", fmt.Errorf("serial number of %s LUN %d: %w", l.s.o.TargetIQN, l.n, err)
	}
	return strings.Trim(string(p[4:]), " \x00"), nil
}

// DeviceID returns the designators of the Device Identification VPD page
// (0x83): the WWN (NAA), T10 vendor ID, and so on.
func (l *LUN) DeviceID(ctx context.Context) ([]Designator, error) {
	p, err := l.s.vpd(ctx, l.field, 0x83)
	if err == nil {
		var d []Designator
		if d, err = parseDeviceID(p); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("device identification of %s LUN %d: %w", l.s.o.TargetIQN, l.n, err)
}

// Sync flushes the LUN's write cache (SYNCHRONIZE CACHE).
func (l *LUN) Sync(ctx context.Context) error {
	cdb := make([]byte, 10)
	cdb[0] = scsiSyncCache10
	if _, err := l.s.command(ctx, l.field, cdb, nil, false, false); err != nil {
		return fmt.Errorf("sync %s LUN %d: %w", l.s.o.TargetIQN, l.n, err)
	}
	return nil
}

// ReadAt implements io.ReaderAt.
func (l *LUN) ReadAt(p []byte, off int64) (int, error) {
	return l.ReadAtContext(context.Background(), p, off)
}

// WriteAt implements io.WriterAt.
func (l *LUN) WriteAt(p []byte, off int64) (int, error) {
	return l.WriteAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off. As io.ReaderAt, it returns
// io.EOF with fewer bytes when the LUN ends before p is full; on any other
// error it returns 0 bytes and the contents of p are undefined.
func (l *LUN) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s LUN %d: negative offset %d", l.s.o.TargetIQN, l.n, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	size := l.Size()
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p = p[:size-off]
		eof = io.EOF
	}
	if err := l.transfer(ctx, p, off, false); err != nil {
		return 0, fmt.Errorf("read %d bytes at %d from %s LUN %d: %w", len(p), off, l.s.o.TargetIQN, l.n, err)
	}
	return len(p), eof
}

// WriteAtContext writes p at off. A write that would pass the end of the
// LUN writes nothing and fails. On error the range written is undefined.
func (l *LUN) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > l.Size() {
		return 0, fmt.Errorf("write %d bytes at %d to %s LUN %d: beyond the end (%d bytes)",
			len(p), off, l.s.o.TargetIQN, l.n, l.Size())
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := l.transfer(ctx, p, off, true); err != nil {
		return 0, fmt.Errorf("write %d bytes at %d to %s LUN %d: %w", len(p), off, l.s.o.TargetIQN, l.n, err)
	}
	return len(p), nil
}

// segment is one READ(16) or WRITE(16).
type segment struct {
	lba uint64
	buf []byte
}

// partial is a block that p covers only in part.
type partial struct {
	block   []byte // the whole block
	lba     uint64
	inBlock int // where p's bytes start in the block
	pStart  int // and in p
	n       int
}

// transfer moves p to or from the LUN at off, which lies inside the LUN.
func (l *LUN) transfer(ctx context.Context, p []byte, off int64, write bool) error {
	bs := int64(l.blockSize)
	end := off + int64(len(p))
	firstFull := (off + bs - 1) / bs * bs
	lastFull := end / bs * bs
	var parts []partial
	var segs []segment
	addPartial := func(blockOff, from, to int64) {
		parts = append(parts, partial{
			block: make([]byte, bs), lba: uint64(blockOff / bs),
			inBlock: int(from - blockOff), pStart: int(from - off), n: int(to - from),
		})
	}
	if firstFull > lastFull {
		// Inside one block.
		addPartial(off/bs*bs, off, end)
	} else {
		if off < firstFull {
			addPartial(firstFull-bs, off, firstFull)
		}
		for pos := firstFull; pos < lastFull; {
			n := min(int64(l.maxXfer), lastFull-pos)
			segs = append(segs, segment{lba: uint64(pos / bs), buf: p[pos-off : pos-off+n]})
			pos += n
		}
		if lastFull < end {
			addPartial(lastFull, lastFull, end)
		}
	}
	partSegs := make([]segment, len(parts))
	for i, pt := range parts {
		partSegs[i] = segment{lba: pt.lba, buf: pt.block}
	}
	if !write {
		if err := l.run(ctx, append(segs, partSegs...), false); err != nil {
			return err
		}
		for _, pt := range parts {
			copy(p[pt.pStart:pt.pStart+pt.n], pt.block[pt.inBlock:])
		}
		return nil
	}
	if len(parts) > 0 {
		// Read-modify-write of the partial blocks.
		if err := l.run(ctx, partSegs, false); err != nil {
			return err
		}
		for _, pt := range parts {
			copy(pt.block[pt.inBlock:pt.inBlock+pt.n], p[pt.pStart:])
		}
	}
	return l.run(ctx, append(segs, partSegs...), true)
}

// run executes the segments concurrently: it starts them all (at most
// QueueDepth in flight per session), then waits for each. A segment that
// fails with a SCSI condition worth retrying (unit attention, busy) is run
// again through command, which retries.
func (l *LUN) run(ctx context.Context, segs []segment, write bool) error {
	op := uint8(scsiRead16)
	if write {
		op = scsiWrite16
	}
	newTask := func(sg segment) *task {
		cdb := cdbRW16(op, sg.lba, uint32(len(sg.buf)/l.blockSize))
		return &task{op: opString(cdb), lun: l.field, cdb: cdb, read: !write, exact: true, buf: sg.buf}
	}
	tasks := make([]*task, 0, len(segs))
	var first error
	for _, sg := range segs {
		t := newTask(sg)
		if err := l.s.start(ctx, t); err != nil {
			first = err
			break
		}
		tasks = append(tasks, t)
	}
	for i, t := range tasks {
		err := l.s.wait(ctx, t)
		var se *SenseError
		var st *StatusError
		if err != nil && first == nil && (errors.As(err, &se) || errors.As(err, &st)) {
			_, err = l.s.command(ctx, l.field, t.cdb, segs[i].buf, !write, true)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
