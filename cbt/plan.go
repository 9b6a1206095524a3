package cbt

import (
	"fmt"
	"sort"
)

// Kind says what to do with an extent of a disk.
type Kind int

const (
	// Read: read the bytes from the source and store them.
	Read Kind = iota
	// Zero: the extent is all zeros; nothing is read.
	Zero
	// Unchanged: the extent equals the parent restore point's.
	Unchanged
	// Patch: one chunk that changed only in part. The extent's Parts are
	// read from the source (or are zeros); the rest of the chunk is taken
	// from the parent restore point (Options.Base).
	Patch
)

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Zero:
		return "zero"
	case Unchanged:
		return "unchanged"
	case Patch:
		return "patch"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Extent is a byte range of a disk and what to do with it.
type Extent struct {
	Off, Len int64
	Kind     Kind
	// Parts of a Patch extent: the changed ranges within it, in order.
	Parts []Part
}

// Part is a changed range within a Patch extent: read from the source, or
// zeros.
type Part struct {
	Off, Len int64
	Zeroed   bool
}

// Plan is a read plan: chunk-aligned extents, in order, covering a disk
// exactly once.
type Plan []Extent

// Bytes sums the lengths of the plan's extents of kind k.
func (p Plan) Bytes(k Kind) int64 {
	var n int64
	for _, e := range p {
		if e.Kind == k {
			n += e.Len
		}
	}
	return n
}

// SourceBytes is what executing p reads from the source: the Read extents
// and the non-zeroed parts of the Patch extents.
func (p Plan) SourceBytes() int64 {
	n := p.Bytes(Read)
	for _, e := range p {
		for _, pt := range e.Parts {
			if !pt.Zeroed {
				n += pt.Len
			}
		}
	}
	return n
}

// Validate checks that p covers [0, size) in order with chunk-aligned
// extents (the last may end at size), and that every Patch extent is one
// chunk whose parts lie inside it, in order, without overlap.
func (p Plan) Validate(size int64, chunkSize int) error {
	var pos int64
	cs := int64(chunkSize)
	for i, e := range p {
		if e.Off != pos || e.Len <= 0 {
			return fmt.Errorf("plan extent %d [%d, +%d): want a non-empty extent at %d", i, e.Off, e.Len, pos)
		}
		if e.Off%cs != 0 || ((e.Off+e.Len)%cs != 0 && e.Off+e.Len != size) {
			return fmt.Errorf("plan extent %d [%d, +%d) is not aligned to %d-byte chunks", i, e.Off, e.Len, cs)
		}
		if e.Kind == Patch {
			if e.Len > cs || len(e.Parts) == 0 {
				return fmt.Errorf("plan extent %d [%d, +%d): a patch is one chunk with parts", i, e.Off, e.Len)
			}
			at := e.Off
			for _, pt := range e.Parts {
				if pt.Off < at || pt.Len <= 0 || pt.Off+pt.Len > e.Off+e.Len {
					return fmt.Errorf("plan extent %d [%d, +%d): part [%d, +%d) out of order or outside", i, e.Off, e.Len, pt.Off, pt.Len)
				}
				at = pt.Off + pt.Len
			}
		} else if len(e.Parts) > 0 {
			return fmt.Errorf("plan extent %d [%d, +%d): parts on a %s extent", i, e.Off, e.Len, e.Kind)
		}
		pos += e.Len
	}
	if pos != size {
		return fmt.Errorf("plan covers %d bytes of a %d-byte disk", pos, size)
	}
	return nil
}

// Region is a range the cluster reports: changed data or zeroed data.
type Region struct {
	Off, Len int64
	Zeroed   bool
}

// Align turns changed regions into a plan for a disk of size bytes with
// the given chunk size. A chunk is read when any changed region touches it
// with data; it is zero when zeroed regions cover it entirely and no data
// region touches it (a zeroed region that covers a chunk only partly forces
// a read, since the rest of the chunk may hold data); every other chunk is
// `rest` — Unchanged for an incremental, Zero for a full built from an
// allocation map. Adjacent chunks of one kind are merged.
func Align(regions []Region, size int64, chunkSize int, rest Kind) (Plan, error) {
	return align(regions, size, chunkSize, rest, 0)
}

// AlignPatched is Align for an incremental (the rest is Unchanged) that
// reads less: a chunk whose changed ranges add up to at most patchMax bytes
// becomes a Patch, so only those ranges are read from the source and the
// rest of the chunk comes from the parent restore point. Regions are
// usually much finer than chunks (Nutanix reports 64 KiB blocks, ahvfs
// stores 1 MiB chunks), so a small guest write no longer costs whole
// chunks of reading.
func AlignPatched(regions []Region, size int64, chunkSize int, patchMax int64) (Plan, error) {
	return align(regions, size, chunkSize, Unchanged, patchMax)
}

func align(regions []Region, size int64, chunkSize int, rest Kind, patchMax int64) (Plan, error) {
	cs := int64(chunkSize)
	n := (size + cs - 1) / cs
	kinds := make([]Kind, n)
	for i := range kinds {
		kinds[i] = rest
	}
	rs := append([]Region(nil), regions...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Off < rs[j].Off })
	// First zeroed regions (whole chunks only), then data regions win.
	for _, r := range rs {
		if r.Len < 0 || r.Off < 0 || r.Off+r.Len > size {
			return nil, fmt.Errorf("region [%d, +%d) outside the %d-byte disk", r.Off, r.Len, size)
		}
		if !r.Zeroed || r.Len == 0 {
			continue
		}
		first := (r.Off + cs - 1) / cs
		last := (r.Off + r.Len) / cs // exclusive
		if r.Off+r.Len == size {
			last = n
		}
		for c := first; c < last; c++ {
			kinds[c] = Zero
		}
		// Partly covered edge chunks must be read.
		if r.Off%cs != 0 {
			kinds[r.Off/cs] = Read
		}
		if end := r.Off + r.Len; end%cs != 0 && end != size {
			kinds[end/cs] = Read
		}
	}
	for _, r := range rs {
		if r.Zeroed || r.Len == 0 {
			continue
		}
		for c := r.Off / cs; c <= (r.Off+r.Len-1)/cs; c++ {
			kinds[c] = Read
		}
	}
	var parts map[int64][]Part
	if patchMax > 0 {
		parts = patchParts(rs, kinds, cs, size, patchMax)
	}
	var p Plan
	for c := int64(0); c < n; c++ {
		off := c * cs
		l := min(cs, size-off)
		if pp, ok := parts[c]; ok {
			p = append(p, Extent{Off: off, Len: l, Kind: Patch, Parts: pp})
			continue
		}
		if len(p) > 0 && p[len(p)-1].Kind == kinds[c] {
			p[len(p)-1].Len += l
			continue
		}
		p = append(p, Extent{Off: off, Len: l, Kind: kinds[c]})
	}
	return p, nil
}

// patchParts returns, for each chunk to be read whose regions add up to at
// most patchMax bytes, those regions clipped to the chunk, merged and in
// order. A chunk where a zeroed region overlaps a data region is read
// whole.
func patchParts(rs []Region, kinds []Kind, cs, size, patchMax int64) map[int64][]Part {
	byChunk := map[int64][]Part{}
	for _, r := range rs {
		if r.Len == 0 {
			continue
		}
		for c := r.Off / cs; c <= (r.Off+r.Len-1)/cs; c++ {
			if kinds[c] != Read {
				continue
			}
			lo, hi := max(r.Off, c*cs), min(r.Off+r.Len, (c+1)*cs, size)
			byChunk[c] = append(byChunk[c], Part{Off: lo, Len: hi - lo, Zeroed: r.Zeroed})
		}
	}
	out := map[int64][]Part{}
chunks:
	for c, ps := range byChunk {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Off < ps[j].Off })
		var merged []Part
		var read int64
		for _, pt := range ps {
			if k := len(merged); k > 0 {
				last := &merged[k-1]
				if pt.Off < last.Off+last.Len {
					if pt.Zeroed != last.Zeroed {
						continue chunks // data and zeros overlap: read it all
					}
					if end := pt.Off + pt.Len; end > last.Off+last.Len {
						last.Len = end - last.Off
					}
					continue
				}
				if pt.Off == last.Off+last.Len && pt.Zeroed == last.Zeroed {
					last.Len += pt.Len
					continue
				}
			}
			merged = append(merged, pt)
		}
		for _, pt := range merged {
			if !pt.Zeroed {
				read += pt.Len
			}
		}
		if read <= patchMax {
			out[c] = merged
		}
	}
	return out
}

// Full is the plan that reads a whole disk.
func Full(size int64) Plan {
	if size == 0 {
		return nil
	}
	return Plan{{Off: 0, Len: size, Kind: Read}}
}
