package prismsim

import (
	"os"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// extent is a half-open byte range [off, end).
type extent struct{ off, end int64 }

// dataExtents lists the data (non-hole) ranges of f within [start, end)
// (simkit.DataExtents).
func dataExtents(f *os.File, start, end int64) ([]extent, error) {
	exts, err := simkit.DataExtents(f, start, end)
	if err != nil {
		return nil, err
	}
	var out []extent
	for _, e := range exts {
		out = append(out, extent{e.Off, e.End})
	}
	return out, nil
}

// copyDisk makes dst a point-in-time copy of src of the given size, or of
// src's size when that is larger (0: src's size): a FICLONE reflink when the
// filesystem supports it, else a sparse copy that skips holes and all-zero
// 64 KiB blocks. dst is replaced.
func copyDisk(dst, src string, size int64) error {
	if st, err := os.Stat(src); err == nil {
		size = max(size, st.Size())
	}
	return simkit.CopyDisk(dst, src, size)
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
