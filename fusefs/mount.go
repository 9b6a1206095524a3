package fusefs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/guestfs"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Server is a mounted Tree.
type Server struct {
	tree       *Tree
	srv        *fuse.Server
	mountpoint string
}

// ErrBusy is wrapped by Unmount's error when files under the mountpoint
// are still in use.
var ErrBusy = errors.New("mountpoint is busy")

// Mount serves repo's restore points (see Tree) at mountpoint, which must
// be an existing, empty directory that is not a mountpoint already (the
// error then wraps ErrMountpoint). It returns once the kernel has the
// mount; requests are served in the background until Unmount. repo must
// stay open until Wait returns.
func Mount(ctx context.Context, repo *engine.Repository, mountpoint string, o Options) (*Server, error) {
	tree, err := NewTree(repo, o)
	if err != nil {
		return nil, err
	}
	o = tree.opts
	mp, err := checkMountpoint(mountpoint)
	if err != nil {
		return nil, err
	}
	short := time.Second
	root := &node{tree: tree, path: "."}
	fopts := &gofs.Options{
		// Per-entry timeouts are set in Lookup and Getattr; these are the
		// fallbacks.
		EntryTimeout: &short,
		AttrTimeout:  &short,
		MountOptions: fuse.MountOptions{
			AllowOther:    o.AllowOther,
			FsName:        "ahvfs:" + repo.Dir(),
			Name:          "ahvfs",
			MaxWrite:      1 << 20, // also the largest read the kernel sends
			MaxReadAhead:  1 << 20,
			MaxBackground: o.MaxBackground,
			DisableSplice: true, // at 1 MiB every spliced reply fails and falls back to a copy
			DisableXAttrs: true,
			DirectMount:   os.Geteuid() == 0,
			Options:       []string{"ro", "default_permissions"},
			Debug:         o.Debug,
			Logger:        log.New(&slogWriter{o.Logger}, "", 0),
		},
		Logger: log.New(&slogWriter{o.Logger}, "", 0),
	}
	srv, err := gofs.Mount(mp, root, fopts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mp, err)
	}
	if o.ReadAhead > 0 {
		if err := setReadAhead(mp, o.ReadAhead); err != nil {
			o.Logger.Debug("set the mount's read-ahead window", "err", err)
		}
	}
	return &Server{tree: tree, srv: srv, mountpoint: mp}, nil
}

// setReadAhead sets the kernel read-ahead window of the FUSE connection
// mounted on mp (needs root).
func setReadAhead(mp string, bytes int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(mp, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(strconv.Itoa(bytes>>10)), 0)
}

// Mountpoint is the absolute path the tree is mounted on.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Tree is the tree the server serves.
func (s *Server) Tree() *Tree { return s.tree }

// Unmount unmounts the tree. When files are still open under it, the
// error wraps ErrBusy and the mount stays; UnmountLazy then detaches it.
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err != nil {
		if errors.Is(err, syscall.EBUSY) || isBusyText(err) {
			return fmt.Errorf("unmount %s: %w: %v", s.mountpoint, ErrBusy, err)
		}
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	s.tree.Close()
	return nil
}

func isBusyText(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "busy")
}

// UnmountLazy detaches the mount (umount -l): it disappears from the
// namespace now, and the server stops when the last open file is closed.
func (s *Server) UnmountLazy() error {
	if err := syscall.Unmount(s.mountpoint, syscall.MNT_DETACH); err != nil {
		if err2 := s.srv.Unmount(); err2 != nil { // not root: fusermount -u
			return fmt.Errorf("lazy unmount %s: %w", s.mountpoint, err)
		}
	}
	return nil
}

// Wait blocks until the tree is unmounted (by Unmount, UnmountLazy or
// umount) and every request is answered.
func (s *Server) Wait() {
	s.srv.Wait()
	s.tree.Close()
}

// slogWriter passes go-fuse's log lines to a slog.Logger.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w.l.Debug(msg, "component", "fuse")
	return len(p), nil
}

// node is one inode of the mount: a path of the Tree. Nodes are created
// lazily by Lookup; the kernel forgets them when it likes.
type node struct {
	gofs.Inode
	tree *Tree
	path string
}

var (
	_ gofs.NodeLookuper   = (*node)(nil)
	_ gofs.NodeGetattrer  = (*node)(nil)
	_ gofs.NodeReaddirer  = (*node)(nil)
	_ gofs.NodeReadlinker = (*node)(nil)
	_ gofs.NodeOpener     = (*node)(nil)
	_ gofs.NodeStatfser   = (*node)(nil)
)

// inode is the stable inode number of a tree path: the same path always
// gets the same number, across lookups and mounts.
func inode(p string) uint64 {
	if p == "." {
		return fuse.FUSE_ROOT_ID
	}
	h := fnv.New64a()
	h.Write([]byte(p))
	ino := h.Sum64()
	if ino <= fuse.FUSE_ROOT_ID || ino == ^uint64(0) {
		ino += 2
	}
	return ino
}

func childPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// fillAttr converts a FileInfo of the tree (Sys: *guestfs.Stat).
func fillAttr(info fs.FileInfo, ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = unixMode(info.Mode())
	a.Size = uint64(max(info.Size(), 0))
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = blockSize(info)
	a.Nlink = 1
	if info.IsDir() {
		a.Nlink = 2
	}
	if st, ok := info.Sys().(*guestfs.Stat); ok {
		a.Owner = fuse.Owner{Uid: st.UID, Gid: st.GID}
		if st.Nlink > 0 {
			a.Nlink = st.Nlink
		}
		a.Rdev = uint32(st.Rdev)
		setTime(&a.Atime, &a.Atimensec, st.Atime)
		setTime(&a.Mtime, &a.Mtimensec, st.Mtime)
		setTime(&a.Ctime, &a.Ctimensec, st.Ctime)
	} else {
		setTime(&a.Mtime, &a.Mtimensec, info.ModTime())
	}
}

func setTime(sec *uint64, nsec *uint32, t time.Time) {
	if t.IsZero() || t.Unix() < 0 {
		*sec, *nsec = 0, 0
		return
	}
	*sec, *nsec = uint64(t.Unix()), uint32(t.Nanosecond())
}

// unixMode converts an fs.FileMode to st_mode bits.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	switch {
	case m.IsDir():
		u |= syscall.S_IFDIR
	case m&fs.ModeSymlink != 0:
		u |= syscall.S_IFLNK
	case m&fs.ModeNamedPipe != 0:
		u |= syscall.S_IFIFO
	case m&fs.ModeSocket != 0:
		u |= syscall.S_IFSOCK
	case m&fs.ModeCharDevice != 0:
		u |= syscall.S_IFCHR
	case m&fs.ModeDevice != 0:
		u |= syscall.S_IFBLK
	default:
		u |= syscall.S_IFREG
	}
	if m&fs.ModeSetuid != 0 {
		u |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= syscall.S_ISVTX
	}
	return u
}

// timeout is how long the kernel may cache an entry of kind k.
func (n *node) timeout(k kind) time.Duration {
	if k.immutable() {
		return n.tree.opts.AttrTimeout
	}
	return time.Second
}

func (n *node) errno(err error, op string, e *entry, name string) syscall.Errno {
	return toErrno(n.tree.opts.Logger, err, op, e, name)
}

// Lookup finds a child and creates its node.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := childPath(n.path, name)
	e, err := n.tree.resolve(ctx, "lookup", p, false)
	if err != nil {
		return nil, n.errno(err, "lookup", nil, p)
	}
	ino := inode(p)
	fillAttr(e.info, ino, &out.Attr)
	out.SetEntryTimeout(n.timeout(e.kind))
	out.SetAttrTimeout(n.timeout(e.kind))
	child := &node{tree: n.tree, path: p}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT, Ino: ino, Gen: 1}), 0
}

// Getattr returns the node's attributes.
func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		fillAttr(h.f.info, inode(n.path), &out.Attr)
		out.SetTimeout(n.timeout(h.f.e.kind))
		return 0
	}
	e, err := n.tree.resolve(ctx, "getattr", n.path, false)
	if err != nil {
		return n.errno(err, "getattr", nil, n.path)
	}
	fillAttr(e.info, inode(n.path), &out.Attr)
	out.SetTimeout(n.timeout(e.kind))
	return 0
}

// Readdir lists the directory.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	e, err := n.tree.resolve(ctx, "readdir", n.path, false)
	if err != nil {
		return nil, n.errno(err, "readdir", nil, n.path)
	}
	list, err := n.tree.readDir(ctx, e)
	if err != nil {
		return nil, n.errno(err, "readdir", e, n.path)
	}
	out := make([]fuse.DirEntry, 0, len(list))
	for _, d := range list {
		out = append(out, fuse.DirEntry{Name: d.Name(), Mode: unixMode(d.Type()), Ino: inode(childPath(n.path, d.Name()))})
	}
	return gofs.NewListDirStream(out), 0
}

// Readlink returns a symlink's target.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := n.tree.ReadLinkContext(ctx, n.path)
	if err != nil {
		return nil, n.errno(err, "readlink", nil, n.path)
	}
	return []byte(target), 0
}

// Open opens a regular file for reading; the kernel keeps its pages
// cached across opens, since restore points never change.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	e, err := n.tree.resolve(ctx, "open", n.path, false)
	if err != nil {
		return nil, 0, n.errno(err, "open", nil, n.path)
	}
	if !e.info.Mode().IsRegular() {
		return nil, 0, syscall.EINVAL
	}
	f, err := n.tree.open(ctx, e, n.path)
	if err != nil {
		return nil, 0, n.errno(err, "open", e, n.path)
	}
	return &handle{f: f, log: n.tree.opts.Logger}, fuse.FOPEN_KEEP_CACHE, 0
}

// Statfs reports a read-only filesystem with no free space.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}

// handle is an open regular file.
type handle struct {
	f   *File
	log *slog.Logger
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
	_ gofs.FileLseeker  = (*handle)(nil)
)

// Lseek answers SEEK_DATA and SEEK_HOLE from the manifest, so qemu-img,
// cp --sparse and friends skip a disk's zero chunks without reading them.
// Guest files have no holes here: all data up to their size.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	pos, err := h.f.seekDataHole(ctx, int64(off), whence == seekHole)
	if err == io.EOF {
		return 0, syscall.ENXIO
	}
	if err != nil {
		return 0, toErrno(h.log, err, "lseek", h.f.e, h.f.e.path)
	}
	return uint64(pos), 0
}

// Read answers a read; it is called concurrently. A disk's bytes go to the
// kernel straight from the engine's chunk cache (one writev, no copy into
// dest); other files are read into dest.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	r := &spanResult{}
	ok, err := h.f.readSpan(ctx, &r.s, off, len(dest))
	if ok {
		if err != nil {
			r.s.Release()
			return nil, toErrno(h.log, err, "read", h.f.e, fmt.Sprintf("%s at %d+%d", h.f.e.path, off, len(dest)))
		}
		return r, 0
	}
	n, err := h.f.ReadAtContext(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.log, err, "read", h.f.e, fmt.Sprintf("%s at %d+%d", h.f.e.path, off, len(dest)))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// spanResult is a read's reply made of the engine's cached chunks, which
// go-fuse writes to the kernel with one writev (its Slices method) and then
// releases (Done).
type spanResult struct{ s engine.Span }

var _ fuse.ReadResult = (*spanResult)(nil)

// Slices returns the reply's data; go-fuse prefers it to Bytes.
func (r *spanResult) Slices() ([][]byte, fuse.Status) { return r.s.Bytes(), fuse.OK }

// Bytes flattens the reply, for a server that cannot write slices.
func (r *spanResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	out := buf[:0]
	for _, b := range r.s.Bytes() {
		out = append(out, b...)
	}
	return out, fuse.OK
}

// Size is the reply's length in bytes.
func (r *spanResult) Size() int { return r.s.Len() }

// Done is called once the reply is written: the chunks may be recycled.
func (r *spanResult) Done() { r.s.Release() }

// Release closes the file.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.f.Close()
	return 0
}
