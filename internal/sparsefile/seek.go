package sparsefile

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Data returns the first offset at or after off that holds data
// (SEEK_DATA). Past the last data it returns unix.ENXIO; on a file system
// without hole support, unix.EINVAL or unix.EOPNOTSUPP.
func Data(fd int, off int64) (int64, error) {
	return seek(fd, off, unix.SEEK_DATA)
}

// Hole returns the first offset at or after off in a hole (SEEK_HOLE);
// the file's end counts as a hole.
func Hole(fd int, off int64) (int64, error) {
	return seek(fd, off, unix.SEEK_HOLE)
}

func seek(fd int, off int64, whence int) (int64, error) {
	for {
		pos, err := unix.Seek(fd, off, whence)
		if !errors.Is(err, unix.EINTR) {
			return pos, err
		}
	}
}
