package nutanix

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"sort"
	"strings"
)

// RegionPage is one decoded page of a changed-regions answer.
type RegionPage struct {
	Regions    []Region
	NextOffset int64 // -1: the server sent none (no more pages)
	FileSize   int64 // 0: not sent
}

// DecodeV3ChangedRegions decodes a v3 data/changed_regions response
// ({region_list[]{offset,length,type}, next_offset, file_size}).
func DecodeV3ChangedRegions(body []byte) (RegionPage, error) {
	var r V3ChangedRegions
	if err := json.Unmarshal(body, &r); err != nil {
		return RegionPage{}, fmt.Errorf("decode changed regions: %w", err)
	}
	p := RegionPage{NextOffset: -1, FileSize: r.FileSize}
	if r.NextOffset != nil {
		p.NextOffset = *r.NextOffset
	}
	for _, x := range r.RegionList {
		p.Regions = append(p.Regions, Region{Offset: x.Offset, Length: x.Length, Kind: RegionKind(strings.ToUpper(x.Type))})
	}
	return p, nil
}

// DecodeV4ChangedRegions decodes a v4 compute-changed-regions response
// (data[]{offset,length,regionType}; nextOffset and fileSize in
// metadata.extraInfo, field-observed).
func DecodeV4ChangedRegions(body []byte) (RegionPage, error) {
	var r V4ChangedRegions
	if err := json.Unmarshal(body, &r); err != nil {
		return RegionPage{}, fmt.Errorf("decode changed regions: %w", err)
	}
	p := RegionPage{NextOffset: -1}
	if n, ok := r.Metadata.extra("nextOffset"); ok {
		p.NextOffset = n
	}
	if n, ok := r.Metadata.extra("fileSize"); ok {
		p.FileSize = n
	}
	for _, x := range r.Data {
		p.Regions = append(p.Regions, Region{Offset: x.Offset, Length: x.Length, Kind: RegionKind(strings.ToUpper(x.RegionType))})
	}
	return p, nil
}

// Regions adapts Cluster.ChangedRegions to a range-over-func iterator. The
// walk stops when the loop breaks; an error is yielded once, last.
func Regions(ctx context.Context, c Snapshots, q RegionQuery) iter.Seq2[Region, error] {
	return func(yield func(Region, error) bool) {
		stopped := false
		errStop := fmt.Errorf("stop")
		err := c.ChangedRegions(ctx, q, func(r Region) error {
			if !yield(r, nil) {
				stopped = true
				return errStop
			}
			return nil
		})
		if err != nil && !stopped {
			yield(Region{}, err)
		}
	}
}

// regionWalker turns server pages of regions into the contract of
// ChangedRegions: ascending, non-overlapping, clipped to [start, end),
// with a guard against a server whose next offset does not advance.
type regionWalker struct {
	start, end int64 // end 0: not known yet (to end of disk)
	fn         func(Region) error

	init   bool
	pos    int64 // end of the last region delivered
	cursor int64 // offset of the last page requested
}

// take delivers one decoded server page: the walk ends at the file size
// the server reports when the caller gave no end.
func (w *regionWalker) take(p RegionPage) (done bool, err error) {
	if w.end == 0 && p.FileSize > 0 {
		w.end = p.FileSize
	}
	return w.page(p.Regions, p.NextOffset)
}

// page delivers one page; next < 0 means the server sent no next offset.
func (w *regionWalker) page(regs []Region, next int64) (done bool, err error) {
	if !w.init {
		w.init, w.pos, w.cursor = true, w.start, w.start
	}
	sort.SliceStable(regs, func(i, j int) bool { return regs[i].Offset < regs[j].Offset })
	for _, r := range regs {
		if r.Offset < 0 || r.Length < 0 {
			return true, fmt.Errorf("changed regions: invalid region offset %d length %d", r.Offset, r.Length)
		}
		switch r.Kind {
		case RegionRegular, RegionZeroed:
		case "":
			r.Kind = RegionRegular
		default:
			return true, fmt.Errorf("changed regions: unknown region type %q", r.Kind)
		}
		s, e := max(r.Offset, w.pos), r.End()
		if w.end > 0 {
			e = min(e, w.end)
		}
		if e <= s {
			continue
		}
		if err := w.fn(Region{Offset: s, Length: e - s, Kind: r.Kind}); err != nil {
			return true, err
		}
		w.pos = e
	}
	if next <= 0 || (w.end > 0 && next >= w.end) {
		return true, nil
	}
	if next <= w.cursor {
		return true, fmt.Errorf("changed regions: server's next offset %d does not advance past %d", next, w.cursor)
	}
	w.cursor = next
	return false, nil
}
