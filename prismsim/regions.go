package prismsim

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// Region types, as in v3 region_list[].type and v4 regionType.
const (
	Regular = "REGULAR"
	Zeroed  = "ZEROED"
)

// Region is one changed (or, without a reference, allocated) byte range.
type Region struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Type   string `json:"type"`
}

// regionQuery is one changed-regions computation.
type regionQuery struct {
	file, ref  string // ref "" = allocation map of file
	start, end int64  // end <= 0: to the end of file
	block      int64
	max        int
}

// regionResult: next < 0 means there is nothing after this page.
type regionResult struct {
	regions  []Region
	next     int64
	fileSize int64
}

// ComputeRegions compares file against ref block by block (block bytes) over
// [start, end): blocks that differ are REGULAR when the new data is not all
// zero and ZEROED when it is. When the two files share storage (ref is a
// reflink of an earlier state of file), the answer comes from metadata
// alone, as on a cluster: shared blocks are unchanged, the others changed
// (REGULAR with data, ZEROED where file has a hole), nothing is read.
// Without ref it returns the allocation map from metadata, as the API documents ("the sparse and the non-sparse regions"):
// REGULAR for blocks with data, ZEROED for holes. Adjacent regions of one
// type are merged. It is exported for tests of other packages that want the
// same oracle.
func ComputeRegions(file, ref string, start, end, block int64) ([]Region, error) {
	res, err := computeRegions(regionQuery{file: file, ref: ref, start: start, end: end, block: block, max: 1 << 62})
	return res.regions, err
}

func computeRegions(q regionQuery) (regionResult, error) {
	f, err := os.Open(q.file)
	if err != nil {
		return regionResult{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return regionResult{}, err
	}
	size := st.Size()
	res := regionResult{next: -1, fileSize: size}
	end := q.end
	if end <= 0 || end > size {
		end = size
	}
	bs := q.block
	start := q.start / bs * bs
	if start >= end {
		return res, nil
	}
	var rf *os.File
	var refSize int64
	if q.ref != "" {
		rf, err = os.Open(q.ref)
		if err != nil {
			return regionResult{}, err
		}
		defer rf.Close()
		rst, err := rf.Stat()
		if err != nil {
			return regionResult{}, err
		}
		refSize = rst.Size()
	}

	// Interesting ranges: data in either file, aligned to blocks. When the
	// files share storage (ref is a reflink of an earlier state of file),
	// the storage maps answer as a cluster's metadata does: shared ranges
	// are unchanged, written ones changed.
	var fData, exts []extent
	related := false
	if rf != nil {
		m, ok, err := compareStorage(f, rf, start, end)
		if err != nil {
			return regionResult{}, err
		}
		if related = ok && len(m.shared) > 0; related {
			fData = m.a
			exts = subtract(append(append([]extent(nil), m.a...), m.b...), m.shared)
		}
	}
	if !related {
		if fData, err = dataExtents(f, start, end); err != nil {
			return regionResult{}, err
		}
		exts = fData
		if rf != nil {
			re, err := dataExtents(rf, start, min(end, refSize))
			if err != nil {
				return regionResult{}, err
			}
			// Beyond the reference's end it reads as zeros, so holes of
			// f there compare equal and need no extent.
			exts = append(append([]extent(nil), fData...), re...)
		}
	}
	exts = alignMerge(exts, bs, start, end)

	var out []Region
	stopped := int64(-1)
	add := func(off, n int64, typ string) bool {
		if k := len(out); k > 0 && out[k-1].Type == typ && out[k-1].Offset+out[k-1].Length == off {
			out[k-1].Length += n
			return true
		}
		if len(out) >= q.max {
			stopped = off
			return false
		}
		out = append(out, Region{off, n, typ})
		return true
	}

	buf := make([]byte, 1<<20)
	rbuf := make([]byte, 1<<20)
	fi := 0 // into fData
	pos := start
	for _, e := range append(exts, extent{end, end}) {
		// Hole in both files between pos and e.off.
		if e.off > pos && rf == nil {
			if !add(pos, e.off-pos, Zeroed) {
				break
			}
		}
		if rf == nil {
			// The allocation map is metadata: data extents are REGULAR
			// whatever bytes they hold, holes ZEROED.
			if e.end > e.off && !add(e.off, e.end-e.off, Regular) {
				break
			}
			pos = max(pos, e.end)
			continue
		}
		if related {
			// The snapshots share storage, so what is not shared was
			// written since: REGULAR where the file has data, ZEROED
			// where it has a hole now, read from the metadata alone as
			// a cluster does (a rewrite of identical bytes counts).
			for off := e.off; off < e.end && stopped < 0; off += bs {
				blkEnd := min(off+bs, e.end)
				for fi < len(fData) && fData[fi].end <= off {
					fi++
				}
				typ := Zeroed
				if fi < len(fData) && fData[fi].off < blkEnd {
					typ = Regular
				}
				add(off, blkEnd-off, typ)
			}
			if stopped >= 0 {
				break
			}
			pos = max(pos, e.end)
			continue
		}
		for off := e.off; off < e.end; {
			n := min(int64(len(buf)), e.end-off)
			b := buf[:n]
			if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
				return regionResult{}, fmt.Errorf("read %s: %w", q.file, err)
			}
			var rb []byte
			if rf != nil {
				rb = rbuf[:n]
				clear(rb)
				if off < refSize {
					if _, err := rf.ReadAt(rb[:min(n, refSize-off)], off); err != nil && err != io.EOF {
						return regionResult{}, fmt.Errorf("read %s: %w", q.ref, err)
					}
				}
			}
			for i := int64(0); i < n; i += bs {
				j := min(i+bs, n)
				blk := b[i:j]
				if rb != nil && string(blk) == string(rb[i:j]) {
					continue
				}
				typ := Regular
				if simkit.AllZero(blk) {
					typ = Zeroed
				}
				if !add(off+i, j-i, typ) {
					break
				}
			}
			if stopped >= 0 {
				break
			}
			off += n
		}
		if stopped >= 0 {
			break
		}
		pos = max(pos, e.end)
	}
	res.regions = out
	switch {
	case stopped >= 0:
		res.next = stopped
	case end < size:
		res.next = end
	}
	if res.regions == nil {
		res.regions = []Region{}
	}
	return res, nil
}

// alignMerge widens extents to block boundaries within [lo, hi), sorts and
// merges them.
func alignMerge(exts []extent, bs, lo, hi int64) []extent {
	for i := range exts {
		exts[i].off = max(lo, exts[i].off/bs*bs)
		exts[i].end = min(hi, (exts[i].end+bs-1)/bs*bs)
	}
	sort.Slice(exts, func(i, j int) bool { return exts[i].off < exts[j].off })
	var out []extent
	for _, e := range exts {
		if e.end <= e.off {
			continue
		}
		if k := len(out); k > 0 && e.off <= out[k-1].end {
			out[k-1].end = max(out[k-1].end, e.end)
			continue
		}
		out = append(out, e)
	}
	return out
}
