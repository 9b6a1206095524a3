package guestfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// A small LVM2 reader, written here (no Go LVM reader exists): the PV
// label and header, the newest text metadata in the first metadata area,
// and linear ("striped" with one stripe) segments. Each visible logical
// volume becomes a root entry "lv-<vg>-<lv>" next to the partitions; the
// physical volume's own part-M directory holds a README.txt saying so.
// Volume groups whose physical volumes are not all on this disk, and
// thin, snapshot, RAID, mirror or multi-stripe volumes, show a README.txt.

const (
	maxLVMMetadata = 4 << 20
	maxLVMDepth    = 16
)

// isLVMLabel reports whether one of the first four sectors holds an LVM2
// label.
func isLVMLabel(b []byte) bool {
	_, ok := lvmLabel(b)
	return ok
}

// lvmLabel returns the offset of the PV header inside b.
func lvmLabel(b []byte) (int, bool) {
	for s := 0; s < 4 && (s+1)*512 <= len(b); s++ {
		sec := b[s*512 : (s+1)*512]
		if string(sec[:8]) == "LABELONE" && string(sec[24:32]) == "LVM2 001" {
			off := int(binary.LittleEndian.Uint32(sec[20:]))
			if off >= 32 && off < 512-40 {
				return s*512 + off, true
			}
		}
	}
	return 0, false
}

type lvmPV struct {
	part    *Partition
	uuid    string // without dashes
	peStart int64  // bytes (from the data area list)
	meta    string // newest metadata text
}

// readPV reads a physical volume's label and metadata text.
func readPV(p *Partition) (*lvmPV, error) {
	head := make([]byte, 4096)
	if err := readFull(p.r, head, 0); err != nil {
		return nil, err
	}
	off, ok := lvmLabel(head)
	if !ok {
		return nil, fmt.Errorf("lvm: no label: %w", ErrCorrupt)
	}
	le := binary.LittleEndian
	h := head[off:]
	pv := &lvmPV{part: p, uuid: string(h[:32])}
	// Data area list, then metadata area list, each ended by a zero entry.
	pos := 40
	var das, mdas [][2]int64
	for list := 0; list < 2; list++ {
		for ; pos+16 <= len(h); pos += 16 {
			o, sz := int64(le.Uint64(h[pos:])), int64(le.Uint64(h[pos+8:]))
			if o == 0 {
				pos += 16
				break
			}
			if list == 0 {
				das = append(das, [2]int64{o, sz})
			} else {
				mdas = append(mdas, [2]int64{o, sz})
			}
		}
	}
	if len(das) == 0 || len(mdas) == 0 {
		return nil, fmt.Errorf("lvm: PV %s has no data or metadata area: %w", pv.uuid, ErrCorrupt)
	}
	pv.peStart = das[0][0]
	mda := mdas[0]
	if mda[0] < 0 || mda[1] < 512 || mda[0] > p.Size || mda[1] > p.Size-mda[0] {
		return nil, fmt.Errorf("lvm: metadata area out of range: %w", ErrCorrupt)
	}
	mh := make([]byte, 512)
	if err := readFull(p.r, mh, mda[0]); err != nil {
		return nil, err
	}
	if string(mh[4:20]) != " LVM2 x[5A%r0N*>" {
		return nil, fmt.Errorf("lvm: metadata area header magic: %w", ErrCorrupt)
	}
	mdaSize := int64(le.Uint64(mh[32:]))
	if mdaSize <= 512 || mdaSize > mda[1] {
		mdaSize = mda[1]
	}
	// First raw location: the current metadata (a circular buffer after
	// the 512-byte header).
	loff, lsize := int64(le.Uint64(mh[40:])), int64(le.Uint64(mh[48:]))
	if lsize <= 0 || lsize > maxLVMMetadata || loff < 512 || loff >= mdaSize {
		return nil, fmt.Errorf("lvm: metadata location: %w", ErrCorrupt)
	}
	text := make([]byte, lsize)
	first := min(lsize, mdaSize-loff)
	if err := readFull(p.r, text[:first], mda[0]+loff); err != nil {
		return nil, err
	}
	if first < lsize {
		if lsize-first > mdaSize-512 {
			return nil, fmt.Errorf("lvm: metadata larger than its area: %w", ErrCorrupt)
		}
		if err := readFull(p.r, text[first:], mda[0]+512); err != nil {
			return nil, err
		}
	}
	pv.meta = string(bytes.TrimRight(text, "\x00"))
	return pv, nil
}

// findLVs turns the LVM physical volumes among parts into logical
// volume entries.
func findLVs(ctx context.Context, parts []*Partition) []*Partition {
	var pvs []*lvmPV
	for _, p := range parts {
		if p.Kind != KindLVM || ctx.Err() != nil {
			continue
		}
		pv, err := readPV(p)
		if err != nil {
			p.Note = fmt.Sprintf("This partition is an LVM physical volume, but it cannot be read: %v", err)
			continue
		}
		pvs = append(pvs, pv)
	}
	type vgMeta struct {
		name  string
		seqno int64
		sec   *lvmSection
	}
	vgs := map[string]*vgMeta{} // by VG id
	pvByUUID := map[string]*lvmPV{}
	for _, pv := range pvs {
		pvByUUID[pv.uuid] = pv
		root, err := parseLVMText(pv.meta)
		if err != nil {
			pv.part.Note = fmt.Sprintf("This partition is an LVM physical volume, but its metadata cannot be parsed: %v", err)
			continue
		}
		for _, k := range root.keys {
			sec, ok := root.vals[k].(*lvmSection)
			if !ok {
				continue
			}
			id, _ := sec.str("id")
			seq, _ := sec.num("seqno")
			if old := vgs[id]; old == nil || old.seqno < seq {
				vgs[id] = &vgMeta{k, seq, sec}
			}
		}
	}
	var out []*Partition
	ids := make([]string, 0, len(vgs))
	for id := range vgs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		vg := vgs[id]
		out = append(out, vgLVs(vg.name, vg.sec, pvByUUID)...)
	}
	return out
}

func vgLVs(vgName string, vg *lvmSection, pvByUUID map[string]*lvmPV) []*Partition {
	extSize, _ := vg.num("extent_size") // sectors
	if extSize <= 0 || extSize > 1<<32 {
		return nil
	}
	extBytes := extSize * 512
	// Map the metadata's PV names ("pv0") to the volumes found here.
	pvNames := map[string]*lvmPV{}
	if pvsec, ok := vg.vals["physical_volumes"].(*lvmSection); ok {
		for _, k := range pvsec.keys {
			s, ok := pvsec.vals[k].(*lvmSection)
			if !ok {
				continue
			}
			id, _ := s.str("id")
			if pv := pvByUUID[strings.ReplaceAll(id, "-", "")]; pv != nil {
				if pe, ok := s.num("pe_start"); ok {
					pv.peStart = pe * 512
				}
				pvNames[k] = pv
				pv.part.Note = fmt.Sprintf("This partition is LVM physical volume %s of volume group %q.\nIts logical volumes are shown next to this directory as lv-%s-<name>.", id, vgName, vgName)
			}
		}
	}
	lvs, ok := vg.vals["logical_volumes"].(*lvmSection)
	if !ok {
		return nil
	}
	var out []*Partition
	for _, lvName := range lvs.keys {
		lv, ok := lvs.vals[lvName].(*lvmSection)
		if !ok {
			continue
		}
		if st, _ := lv.vals["status"].([]any); !containsStr(st, "VISIBLE") {
			continue // internal volumes (thin pool data, mirror logs, ...)
		}
		p := &Partition{Name: "lv-" + vgName + "-" + lvName, Index: -1, Table: TableLVM, Start: -1, Label: vgName + "/" + lvName}
		p.GUID, _ = lv.str("id")
		exts, typ, err := lvExtents(lv, extBytes, pvNames)
		p.Type = typ
		if err != nil {
			p.Kind = KindOther
			p.Note = fmt.Sprintf("Logical volume %s/%s cannot be read: %v", vgName, lvName, err)
			p.r = bytes.NewReader(nil)
			out = append(out, p)
			continue
		}
		for _, e := range exts {
			p.Size = max(p.Size, e.log+e.n)
		}
		if sr, ok := exts[0].dev.(*sectionReader); ok && len(exts) == 1 {
			p.Start = exts[0].phys + sr.off
		}
		r, err := newExtentReader(nil, 1<<62, exts, p.Size)
		if err != nil {
			p.Kind, p.Note, p.r = KindOther, err.Error(), bytes.NewReader(nil)
		} else {
			p.r = r
			p.Kind, p.Note = probeKind(r, p.Size)
		}
		out = append(out, p)
	}
	return out
}

func containsStr(l []any, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

func lvExtents(lv *lvmSection, extBytes int64, pvs map[string]*lvmPV) ([]extent, string, error) {
	var out []extent
	typ := ""
	for _, k := range lv.keys {
		seg, ok := lv.vals[k].(*lvmSection)
		if !ok || !strings.HasPrefix(k, "segment") {
			continue
		}
		t, _ := seg.str("type")
		typ = t
		start, _ := seg.num("start_extent")
		count, _ := seg.num("extent_count")
		stripes, _ := seg.num("stripe_count")
		if t != "striped" || stripes != 1 {
			return nil, t, fmt.Errorf("segment type %q with %d stripes: %w", t, stripes, ErrUnsupported)
		}
		list, _ := seg.vals["stripes"].([]any)
		if len(list) != 2 {
			return nil, t, fmt.Errorf("segment %s: bad stripes list: %w", k, ErrCorrupt)
		}
		pvName, _ := list[0].(string)
		pe, _ := list[1].(int64)
		pv := pvs[pvName]
		if pv == nil {
			return nil, t, fmt.Errorf("physical volume %s is not on this disk: %w", pvName, ErrUnsupported)
		}
		if start < 0 || count <= 0 || pe < 0 || count > 1<<40/extBytes || start > 1<<40/extBytes || pe > 1<<40/extBytes {
			return nil, t, fmt.Errorf("segment %s out of range: %w", k, ErrCorrupt)
		}
		phys := pv.peStart + pe*extBytes
		n := count * extBytes
		if phys < 0 || phys+n > pv.part.Size {
			return nil, t, fmt.Errorf("segment %s lies outside its physical volume: %w", k, ErrCorrupt)
		}
		out = append(out, extent{log: start * extBytes, phys: phys, n: n, dev: pv.part.r})
	}
	if len(out) == 0 {
		return nil, typ, fmt.Errorf("no segments: %w", ErrCorrupt)
	}
	return out, "linear", nil
}

// lvmSection is a { ... } block of LVM text metadata: keys in order, and
// values that are strings, int64s, []any lists or nested sections.
type lvmSection struct {
	keys []string
	vals map[string]any
}

func (s *lvmSection) str(k string) (string, bool) { v, ok := s.vals[k].(string); return v, ok }
func (s *lvmSection) num(k string) (int64, bool)  { v, ok := s.vals[k].(int64); return v, ok }

// parseLVMText parses LVM2 text metadata (the "vg { ... }" format).
func parseLVMText(text string) (*lvmSection, error) {
	p := &lvmParser{s: text}
	root, err := p.section(0, true)
	if err != nil {
		return nil, fmt.Errorf("lvm metadata at byte %d: %w", p.i, err)
	}
	return root, nil
}

type lvmParser struct {
	s string
	i int
}

func (p *lvmParser) skip() {
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '#':
			for p.i < len(p.s) && p.s[p.i] != '\n' {
				p.i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *lvmParser) ident() string {
	st := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '=' || c == '{' || c == '}' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '#' || c == '[' || c == '"' {
			break
		}
		p.i++
	}
	return p.s[st:p.i]
}

func (p *lvmParser) section(depth int, top bool) (*lvmSection, error) {
	if depth > maxLVMDepth {
		return nil, fmt.Errorf("nested too deep: %w", ErrCorrupt)
	}
	sec := &lvmSection{vals: map[string]any{}}
	for {
		p.skip()
		if p.i >= len(p.s) {
			if top {
				return sec, nil
			}
			return nil, fmt.Errorf("unexpected end: %w", ErrCorrupt)
		}
		if p.s[p.i] == '}' {
			if top {
				return nil, fmt.Errorf("unbalanced '}': %w", ErrCorrupt)
			}
			p.i++
			return sec, nil
		}
		key := p.ident()
		if key == "" {
			return nil, fmt.Errorf("expected a name: %w", ErrCorrupt)
		}
		p.skip()
		if p.i >= len(p.s) {
			return nil, fmt.Errorf("unexpected end: %w", ErrCorrupt)
		}
		var v any
		switch p.s[p.i] {
		case '{':
			p.i++
			s, err := p.section(depth+1, false)
			if err != nil {
				return nil, err
			}
			v = s
		case '=':
			p.i++
			p.skip()
			var err error
			if v, err = p.value(); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("expected '=' or '{' after %q: %w", key, ErrCorrupt)
		}
		if _, dup := sec.vals[key]; !dup {
			sec.keys = append(sec.keys, key)
		}
		sec.vals[key] = v
	}
}

func (p *lvmParser) value() (any, error) {
	if p.i >= len(p.s) {
		return nil, fmt.Errorf("missing value: %w", ErrCorrupt)
	}
	switch c := p.s[p.i]; {
	case c == '"':
		var b strings.Builder
		for p.i++; p.i < len(p.s); p.i++ {
			c := p.s[p.i]
			if c == '\\' && p.i+1 < len(p.s) {
				p.i++
				b.WriteByte(p.s[p.i])
				continue
			}
			if c == '"' {
				p.i++
				return b.String(), nil
			}
			b.WriteByte(c)
		}
		return nil, fmt.Errorf("unterminated string: %w", ErrCorrupt)
	case c == '[':
		var list []any
		p.i++
		for {
			p.skip()
			if p.i >= len(p.s) {
				return nil, fmt.Errorf("unterminated list: %w", ErrCorrupt)
			}
			if p.s[p.i] == ']' {
				p.i++
				return list, nil
			}
			if p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.s[p.i] == '[' {
				return nil, fmt.Errorf("nested list: %w", ErrCorrupt)
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	default:
		st := p.i
		for p.i < len(p.s) && strings.IndexByte(" \t\r\n,]#}", p.s[p.i]) < 0 {
			p.i++
		}
		tok := p.s[st:p.i]
		if n, err := strconv.ParseInt(tok, 10, 64); err == nil {
			return n, nil
		}
		if tok == "" {
			return nil, fmt.Errorf("empty value: %w", ErrCorrupt)
		}
		return tok, nil
	}
}

var _ io.ReaderAt = (*extentReader)(nil)
