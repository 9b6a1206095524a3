package mkimage

import (
	"fmt"
	"io"
	"io/fs"
)

// cpioEntry is one member of an initramfs archive.
type cpioEntry struct {
	Name string      // path without a leading slash
	Mode fs.FileMode // fs.ModeDir, fs.ModeSymlink, fs.ModeCharDevice or regular, plus permissions
	Data []byte      // a regular file's bytes, or a symlink's target
	// Major and Minor number a character device.
	Major, Minor int
}

// writeCPIO writes entries as a "newc" cpio archive, the format the Linux
// kernel unpacks as an initramfs (Documentation/driver-api/early-userspace).
// Writing it here rather than with cpio(1) lets the archive hold device
// nodes (/dev/console) without root.
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	for i, e := range entries {
		if err := writeCPIOEntry(w, uint32(i+1), e); err != nil {
			return fmt.Errorf("initramfs %s: %w", e.Name, err)
		}
	}
	return writeCPIOEntry(w, 0, cpioEntry{Name: "TRAILER!!!"})
}

func writeCPIOEntry(w io.Writer, ino uint32, e cpioEntry) error {
	mode := uint32(e.Mode.Perm())
	if e.Mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	nlink := uint32(1)
	switch {
	case e.Name == "TRAILER!!!":
	case e.Mode&fs.ModeDir != 0:
		mode |= 0o040000
		nlink = 2
	case e.Mode&fs.ModeSymlink != 0:
		mode |= 0o120000
	case e.Mode&fs.ModeCharDevice != 0:
		mode |= 0o020000
	default:
		mode |= 0o100000
	}
	name := e.Name + "\x00"
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.Major, e.Minor, len(name), 0)
	if _, err := io.WriteString(w, hdr+name+pad4(len(hdr)+len(name))); err != nil {
		return err
	}
	if _, err := w.Write(e.Data); err != nil {
		return err
	}
	_, err := io.WriteString(w, pad4(len(e.Data)))
	return err
}

// pad4 is the NULs that bring n bytes up to a multiple of four.
func pad4(n int) string { return "\x00\x00\x00"[:(4-n%4)%4] }
