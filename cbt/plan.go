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
)

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Zero:
		return "zero"
	case Unchanged:
		return "unchanged"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Extent is a byte range of a disk and what to do with it.
type Extent struct {
	Off, Len int64
	Kind     Kind
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

// Validate checks that p covers [0, size) in order with chunk-aligned
// extents (the last may end at size).
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
	var p Plan
	for c := int64(0); c < n; c++ {
		off := c * cs
		l := min(cs, size-off)
		if len(p) > 0 && p[len(p)-1].Kind == kinds[c] {
			p[len(p)-1].Len += l
			continue
		}
		p = append(p, Extent{Off: off, Len: l, Kind: kinds[c]})
	}
	return p, nil
}

// Full is the plan that reads a whole disk.
func Full(size int64) Plan {
	if size == 0 {
		return nil
	}
	return Plan{{Off: 0, Len: size, Kind: Read}}
}
