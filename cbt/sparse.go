package cbt

import (
	"errors"
	"os"
	"syscall"

	"github.com/ahvfs/ahvfs/internal/sparsefile"
)

// FilePlan is the plan for a full read of a local file or block device: on a
// sparse file, chunks that lie wholly in holes (SEEK_HOLE) are Zero and not
// read; everything else is Read. This is the local-file analogue of a
// cluster's allocation map.
func FilePlan(f *os.File, size int64, chunkSize int) (Plan, error) {
	var regions []Region
	fd := int(f.Fd())
	var pos int64
	for pos < size {
		data, err := sparsefile.Data(fd, pos)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) { // no data after pos: a hole to the end
				regions = append(regions, Region{Off: pos, Len: size - pos, Zeroed: true})
				break
			}
			// The filesystem does not support SEEK_DATA: read everything.
			return Full(size), nil
		}
		if data > size {
			data = size
		}
		if data > pos {
			regions = append(regions, Region{Off: pos, Len: data - pos, Zeroed: true})
		}
		if data >= size {
			break
		}
		hole, err := sparsefile.Hole(fd, data)
		if err != nil || hole > size {
			hole = size
		}
		regions = append(regions, Region{Off: data, Len: hole - data})
		pos = hole
	}
	return Align(regions, size, chunkSize, Zero)
}
