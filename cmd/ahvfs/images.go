package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// openImage opens a raw disk image for import: a regular file or a block
// device (its size is where a seek to the end lands). Anything else is
// refused with a usage error before it is read: a directory, and above all
// a FIFO, socket or character device, whose reads may block forever or
// never end. The file is opened non-blocking and checked again, so a path
// swapped for a FIFO after the check cannot hang the command either.
func openImage(path string) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("import: %w", err)
	}
	if err := checkImageMode(path, st.Mode()); err != nil {
		return nil, 0, err
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("import: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	// Check and make blocking before os.NewFile: a file it sees
	// non-blocking goes to the poller, and its Close then waits for a read
	// that may hang.
	var sys syscall.Stat_t
	if err = syscall.Fstat(fd, &sys); err == nil {
		err = checkImageMode(path, statMode(sys.Mode))
	}
	if err == nil {
		err = syscall.SetNonblock(fd, false)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, 0, err
	}
	f := os.NewFile(uintptr(fd), path)
	if st, err = f.Stat(); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("import: %w", err)
	}
	if st.Mode().IsRegular() {
		return f, st.Size(), nil
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("import %s: size of the block device: %w", path, err)
	}
	return f, size, nil
}

// statMode is the fs.FileMode type bits of a stat(2) mode.
func statMode(m uint32) fs.FileMode {
	switch m & syscall.S_IFMT {
	case syscall.S_IFREG:
		return 0
	case syscall.S_IFDIR:
		return fs.ModeDir
	case syscall.S_IFIFO:
		return fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		return fs.ModeSocket
	case syscall.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// checkImageMode accepts regular files and block devices.
func checkImageMode(path string, m fs.FileMode) error {
	var what string
	switch {
	case m.IsRegular():
		return nil
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return nil // a block device
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	default:
		what = "not a regular file (" + m.Type().String() + ")"
	}
	return usagef("import: %s is %s: images are regular files or block devices (write a stream to a file first)", path, what)
}
