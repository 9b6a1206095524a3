package rptree

import (
	"io/fs"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
	"golang.org/x/sys/unix"
)

// diskBlockSize is the preferred I/O size of disk-N.raw: the engine's
// chunk size in a default repository.
const diskBlockSize = 1 << 20

// guestBlockSize is the preferred I/O size of every other file.
const guestBlockSize = 64 << 10

// BlockSize is the preferred I/O size of a file of the tree (st_blksize):
// 1 MiB for disks, 64 KiB for the rest.
func BlockSize(info fs.FileInfo) int {
	if r, ok := info.(renamedInfo); ok {
		info = r.FileInfo
	}
	if fi, ok := info.(fileInfo); ok && fi.blksize > 0 {
		return fi.blksize
	}
	return guestBlockSize
}

// fileInfo is a synthesised FileInfo (and DirEntry) above the guest
// filesystems.
type fileInfo struct {
	name    string
	size    int64
	mode    fs.FileMode
	st      guestfs.Stat
	blksize int
}

func (i fileInfo) Name() string               { return i.name }
func (i fileInfo) Size() int64                { return i.size }
func (i fileInfo) Mode() fs.FileMode          { return i.mode }
func (i fileInfo) ModTime() time.Time         { return i.st.Mtime }
func (i fileInfo) IsDir() bool                { return i.mode.IsDir() }
func (i fileInfo) Sys() any                   { st := i.st; return &st }
func (i fileInfo) Type() fs.FileMode          { return i.mode.Type() }
func (i fileInfo) Info() (fs.FileInfo, error) { return i, nil }
func (i fileInfo) String() string             { return fs.FormatFileInfo(i) }

func timesStat(t time.Time) guestfs.Stat {
	t = t.UTC()
	return guestfs.Stat{Atime: t, Mtime: t, Ctime: t, Nlink: 1}
}

func dirInfo(name string, t time.Time) fileInfo {
	st := timesStat(t)
	st.Nlink = 2
	return fileInfo{name: name, mode: fs.ModeDir | 0o555, st: st}
}

func linkInfo(name, target string, t time.Time) fileInfo {
	st := timesStat(t)
	st.LinkTarget = target
	return fileInfo{name: name, size: int64(len(target)), mode: fs.ModeSymlink | 0o777, st: st}
}

// renamed returns info under another name (Stat through a symlink).
func renamed(info fs.FileInfo, name string) fs.FileInfo {
	if info.Name() == name {
		return info
	}
	return renamedInfo{info, name}
}

type renamedInfo struct {
	fs.FileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }

// UnixMode is the st_mode of a FileMode of the tree: the file type
// (S_IFDIR, S_IFLNK, ...), the permission bits and the setuid, setgid and
// sticky bits, as Linux encodes them for stat(2), FUSE and NFS.
func UnixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	switch {
	case m.IsDir():
		u |= unix.S_IFDIR
	case m&fs.ModeSymlink != 0:
		u |= unix.S_IFLNK
	case m&fs.ModeNamedPipe != 0:
		u |= unix.S_IFIFO
	case m&fs.ModeSocket != 0:
		u |= unix.S_IFSOCK
	case m&fs.ModeCharDevice != 0:
		u |= unix.S_IFCHR
	case m&fs.ModeDevice != 0:
		u |= unix.S_IFBLK
	default:
		u |= unix.S_IFREG
	}
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}
