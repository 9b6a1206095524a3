package nfs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/go-git/go-billy/v5"
	nfsfile "github.com/willscott/go-nfs/file"
)

// treeFS is the tree as the read-only go-billy filesystem go-nfs serves.
// go-nfs calls it without a context: ctx is the server's.
type treeFS struct {
	ctx  context.Context
	tree *rptree.Tree
}

var _ billy.Filesystem = (*treeFS)(nil)

// errReadOnly answers every change: go-nfs reports it as a permission
// error (the tree is read-only; fs.ErrPermission wrapped in EROFS).
var errReadOnly = &fs.PathError{Op: "write", Err: errors.Join(fs.ErrPermission, syscall.EROFS)}

// treePath turns a go-billy path ("", "/", "a/b", "/a/b") into a tree
// path ("." for the root).
func treePath(name string) string {
	name = strings.Trim(path.Clean("/"+name), "/")
	if name == "" {
		return "."
	}
	return name
}

func (t *treeFS) Open(name string) (billy.File, error) {
	p := treePath(name)
	f, err := t.tree.OpenFile(t.ctx, p)
	if err != nil {
		return nil, err
	}
	return &treeFile{ctx: t.ctx, f: f, name: name}, nil
}

func (t *treeFS) OpenFile(name string, flag int, _ os.FileMode) (billy.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		return nil, errReadOnly
	}
	return t.Open(name)
}

func (t *treeFS) Stat(name string) (os.FileInfo, error) {
	p := treePath(name)
	fi, err := t.tree.StatContext(t.ctx, p)
	if err != nil {
		return nil, err
	}
	return info{fi, p}, nil
}

func (t *treeFS) Lstat(name string) (os.FileInfo, error) {
	p := treePath(name)
	fi, err := t.tree.LstatContext(t.ctx, p)
	if err != nil {
		return nil, err
	}
	return info{fi, p}, nil
}

func (t *treeFS) ReadDir(name string) ([]os.FileInfo, error) {
	p := treePath(name)
	ents, err := t.tree.ReadDirContext(t.ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]os.FileInfo, 0, len(ents))
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, info{fi, rptree.ChildPath(p, e.Name())})
	}
	return out, nil
}

func (t *treeFS) Readlink(name string) (string, error) {
	return t.tree.ReadLinkContext(t.ctx, treePath(name))
}

func (t *treeFS) Join(elem ...string) string { return path.Join(elem...) }
func (t *treeFS) Root() string               { return "/" }

// Capabilities implements billy.Capable: read and seek, no writes (go-nfs
// then refuses changes itself and reports a read-only filesystem).
func (t *treeFS) Capabilities() billy.Capability {
	return billy.ReadCapability | billy.SeekCapability
}

func (t *treeFS) Create(string) (billy.File, error)           { return nil, errReadOnly }
func (t *treeFS) Rename(string, string) error                 { return errReadOnly }
func (t *treeFS) Remove(string) error                         { return errReadOnly }
func (t *treeFS) TempFile(string, string) (billy.File, error) { return nil, errReadOnly }
func (t *treeFS) MkdirAll(string, os.FileMode) error          { return errReadOnly }
func (t *treeFS) Symlink(string, string) error                { return errReadOnly }
func (t *treeFS) Chroot(string) (billy.Filesystem, error)     { return nil, errReadOnly }

// treeFile is an open file of the tree.
type treeFile struct {
	ctx  context.Context
	f    *rptree.File
	name string
}

func (f *treeFile) Name() string { return f.name }
func (f *treeFile) ReadAt(p []byte, off int64) (int, error) {
	return f.f.ReadAtContext(f.ctx, p, off)
}
func (f *treeFile) Read(p []byte) (int, error)                { return f.f.Read(p) }
func (f *treeFile) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }
func (f *treeFile) Close() error                              { return f.f.Close() }
func (f *treeFile) Write([]byte) (int, error)                 { return 0, errReadOnly }
func (f *treeFile) Truncate(int64) error                      { return errReadOnly }
func (f *treeFile) Lock() error                               { return nil }
func (f *treeFile) Unlock() error                             { return nil }

// info is a tree FileInfo as go-nfs turns it into NFS attributes: the
// mode without Go's type bits (go-nfs copies the mode word as it is; the
// type comes from IsDir and ModeSymlink), and in Sys the file ID
// (rptree.Inode, the same as through FUSE), link count and owner.
type info struct {
	fs.FileInfo
	path string
}

func (i info) Mode() fs.FileMode {
	m := i.FileInfo.Mode()
	return m.Perm() | m&fs.ModeSymlink
}

func (i info) Sys() any {
	a := nfsfile.FileInfo{Nlink: 1, Fileid: rptree.Inode(i.path)}
	if i.IsDir() {
		a.Nlink = 2
	}
	if st, ok := i.FileInfo.Sys().(*guestfs.Stat); ok {
		a.UID, a.GID = st.UID, st.GID
		if st.Nlink > 0 {
			a.Nlink = st.Nlink
		}
	}
	return a
}
