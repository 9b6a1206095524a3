package fusefs

import (
	"context"
	"io/fs"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/rptree"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fsys is what every node of one mount shares.
type fsys struct {
	tree *rptree.Tree
	opts Options
}

// node is one inode of the mount: a path of the tree. Nodes are created
// lazily by Lookup; the kernel forgets them when it likes.
type node struct {
	gofs.Inode
	fs   *fsys
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

// timeout is how long the kernel may cache the entry and attributes of
// tree path p.
func (f *fsys) timeout(p string) time.Duration {
	if rptree.Immutable(p) {
		return f.opts.AttrTimeout
	}
	return time.Second
}

func (n *node) errno(err error, op, name string) syscall.Errno {
	return toErrno(n.fs.opts.Logger, err, op, "", name)
}

// Lookup finds a child and creates its node.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := rptree.ChildPath(n.path, name)
	info, err := n.fs.tree.LstatContext(ctx, p)
	if err != nil {
		return nil, n.errno(err, "lookup", p)
	}
	ino := rptree.Inode(p)
	fillAttr(info, ino, &out.Attr)
	out.SetEntryTimeout(n.fs.timeout(p))
	out.SetAttrTimeout(n.fs.timeout(p))
	child := &node{fs: n.fs, path: p}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT, Ino: ino, Gen: 1}), 0
}

// Getattr returns the node's attributes.
func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var info fs.FileInfo
	if h, ok := fh.(*handle); ok {
		info, _ = h.f.Stat()
	} else {
		var err error
		if info, err = n.fs.tree.LstatContext(ctx, n.path); err != nil {
			return n.errno(err, "getattr", n.path)
		}
	}
	fillAttr(info, rptree.Inode(n.path), &out.Attr)
	out.SetTimeout(n.fs.timeout(n.path))
	return 0
}

// Readdir lists the directory.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	list, err := n.fs.tree.ReadDirContext(ctx, n.path)
	if err != nil {
		return nil, n.errno(err, "readdir", n.path)
	}
	out := make([]fuse.DirEntry, 0, len(list))
	for _, d := range list {
		out = append(out, fuse.DirEntry{Name: d.Name(), Mode: rptree.UnixMode(d.Type()), Ino: rptree.Inode(rptree.ChildPath(n.path, d.Name()))})
	}
	return gofs.NewListDirStream(out), 0
}

// Readlink returns a symlink's target.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, err := n.fs.tree.ReadLinkContext(ctx, n.path)
	if err != nil {
		return nil, n.errno(err, "readlink", n.path)
	}
	return []byte(target), 0
}

// Open opens a regular file for reading; the kernel keeps its pages
// cached across opens, since restore points never change.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	f, err := n.fs.tree.OpenFile(ctx, n.path)
	if err != nil {
		return nil, 0, n.errno(err, "open", n.path)
	}
	if info, _ := f.Stat(); !info.Mode().IsRegular() {
		f.Close()
		return nil, 0, syscall.EINVAL
	}
	return &handle{f: f, log: n.fs.opts.Logger}, fuse.FOPEN_KEEP_CACHE, 0
}

// Statfs reports a read-only filesystem with no free space.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = rptree.MaxNameLen
	return 0
}

// fillAttr converts a FileInfo of the tree (Sys: *guestfs.Stat).
func fillAttr(info fs.FileInfo, ino uint64, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = rptree.UnixMode(info.Mode())
	a.Size = uint64(max(info.Size(), 0))
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = uint32(rptree.BlockSize(info))
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
