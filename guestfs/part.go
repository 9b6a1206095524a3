package guestfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// Limits that keep corrupt tables from costing time or memory.
const (
	maxGPTEntries    = 1024
	maxLogicalParts  = 128
	gptEntryMaxBytes = 4096
)

// readPartitionTable finds the disk's layout: a GPT (at 512- or 4096-byte
// sectors), a bare filesystem, or an MBR with its extended partitions. A
// disk with none of them is a single part-0 whose README explains.
func readPartitionTable(ctx context.Context, r io.ReaderAt, size int64) (string, []*Partition) {
	for _, ss := range []int64{512, 4096} {
		if parts, ok := readGPT(r, size, ss); ok {
			return TableGPT, parts
		}
	}
	bare := &Partition{Name: "part-0", Index: 0, Table: TableNone, Start: 0, Size: size, r: &sectionReader{r, 0, size}}
	if k, _ := probeKind(bare.r, size); k != KindUnknown && k != KindEmpty {
		return TableNone, []*Partition{bare}
	}
	if parts, ok := readMBR(ctx, r, size); ok {
		return TableMBR, parts
	}
	return TableNone, []*Partition{bare}
}

func newPart(r io.ReaderAt, disk int64, idx int, table string, start, length int64) *Partition {
	p := &Partition{Name: fmt.Sprintf("part-%d", idx), Index: idx, Table: table, Start: start, Size: length}
	// Clamp to the disk: a partition running past the end is browsed as
	// far as it goes (and the README says what happened if that fails).
	if start > disk {
		p.Note = fmt.Sprintf("The partition table says this partition starts at byte %d, past the end of the disk (%d bytes).", start, disk)
		start, length = disk, 0
		p.Size = 0
	}
	if length > disk-start {
		length = disk - start
		p.Note = fmt.Sprintf("The partition table says this partition is %d bytes long, but the disk ends after %d.", p.Size, length)
		p.Size = length
	}
	p.r = &sectionReader{r, start, length}
	return p
}

func readGPT(r io.ReaderAt, size, ss int64) ([]*Partition, bool) {
	if size < 3*ss {
		return nil, false
	}
	hdr := make([]byte, ss)
	if readFull(r, hdr, ss) != nil {
		return nil, false
	}
	parts, ok := parseGPT(r, size, ss, hdr)
	if !ok {
		// The primary header is damaged: try the backup at the last LBA.
		if readFull(r, hdr, (size/ss-1)*ss) == nil {
			parts, ok = parseGPT(r, size, ss, hdr)
		}
	}
	return parts, ok
}

func parseGPT(r io.ReaderAt, size, ss int64, hdr []byte) ([]*Partition, bool) {
	le := binary.LittleEndian
	if string(hdr[:8]) != "EFI PART" {
		return nil, false
	}
	hsize := le.Uint32(hdr[12:])
	if hsize < 92 || int64(hsize) > ss {
		return nil, false
	}
	h := make([]byte, hsize)
	copy(h, hdr)
	want := le.Uint32(h[16:])
	clear(h[16:20])
	if crc32.ChecksumIEEE(h) != want {
		return nil, false
	}
	entLBA := int64(le.Uint64(hdr[72:]))
	count := le.Uint32(hdr[80:])
	esize := le.Uint32(hdr[84:])
	if count == 0 || count > maxGPTEntries || esize < 128 || esize > gptEntryMaxBytes || esize%8 != 0 {
		return nil, false
	}
	if entLBA < 1 || entLBA > size/ss {
		return nil, false
	}
	tbl := make([]byte, int(count)*int(esize))
	if readFull(r, tbl, entLBA*ss) != nil {
		return nil, false
	}
	if crc32.ChecksumIEEE(tbl) != le.Uint32(hdr[88:]) {
		return nil, false
	}
	var parts []*Partition
	for i := 0; i < int(count); i++ {
		e := tbl[i*int(esize):][:esize]
		typ := guidString(e[0:16])
		if typ == "00000000-0000-0000-0000-000000000000" {
			continue
		}
		first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
		if first < 0 || last < first || last-first > 1<<50/ss {
			continue
		}
		p := newPart(r, size, i+1, TableGPT, first*ss, (last-first+1)*ss)
		p.Type = typ
		p.GUID = guidString(e[16:32])
		p.Label = utf16Name(e[56:128])
		parts = append(parts, p)
	}
	return parts, true
}

// guidString formats a GPT mixed-endian GUID.
func guidString(b []byte) string {
	le := binary.LittleEndian
	return strings.ToUpper(fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(b), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16]))
}

func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

type mbrEntry struct {
	status byte
	typ    byte
	start  int64 // sectors
	count  int64 // sectors
}

func parseMBREntries(sec []byte) ([4]mbrEntry, bool) {
	var es [4]mbrEntry
	if len(sec) < 512 || sec[510] != 0x55 || sec[511] != 0xAA {
		return es, false
	}
	for i := range es {
		b := sec[446+16*i:]
		es[i] = mbrEntry{status: b[0], typ: b[4], start: int64(binary.LittleEndian.Uint32(b[8:])), count: int64(binary.LittleEndian.Uint32(b[12:]))}
		if es[i].status != 0 && es[i].status != 0x80 {
			return es, false
		}
	}
	return es, true
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0f || t == 0x85 }

func readMBR(ctx context.Context, r io.ReaderAt, size int64) ([]*Partition, bool) {
	sec := make([]byte, 512)
	if readFull(r, sec, 0) != nil {
		return nil, false
	}
	es, ok := parseMBREntries(sec)
	if !ok {
		return nil, false
	}
	var parts []*Partition
	any := false
	for i, e := range es {
		if e.typ == 0 || e.count == 0 {
			continue
		}
		any = true
		if isExtended(e.typ) {
			parts = append(parts, readLogical(ctx, r, size, e.start)...)
			continue
		}
		p := newPart(r, size, i+1, TableMBR, e.start*512, e.count*512)
		p.Type = fmt.Sprintf("0x%02x", e.typ)
		parts = append(parts, p)
	}
	if !any {
		return nil, false
	}
	return parts, true
}

// readLogical follows the chain of extended boot records (EBRs) starting
// at sector ext. Each EBR's first entry is a logical partition (relative
// to the EBR) and its second links to the next EBR (relative to ext).
// Logical partitions are numbered from 5, as Linux does; the chain is
// bounded and cycles are refused.
func readLogical(ctx context.Context, r io.ReaderAt, size int64, ext int64) []*Partition {
	var parts []*Partition
	seen := map[int64]bool{}
	sec := make([]byte, 512)
	ebr := ext
	for idx := 5; idx < 5+maxLogicalParts; idx++ {
		if ctx.Err() != nil || seen[ebr] || ebr*512 >= size {
			break
		}
		seen[ebr] = true
		if readFull(r, sec, ebr*512) != nil {
			break
		}
		es, ok := parseMBREntries(sec)
		if !ok {
			break
		}
		if l := es[0]; l.typ != 0 && l.count != 0 {
			p := newPart(r, size, idx, TableMBR, (ebr+l.start)*512, l.count*512)
			p.Type = fmt.Sprintf("0x%02x", l.typ)
			parts = append(parts, p)
		}
		next := es[1]
		if !isExtended(next.typ) || next.start == 0 {
			break
		}
		ebr = ext + next.start
	}
	return parts
}
