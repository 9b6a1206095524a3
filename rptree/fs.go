package rptree

import (
	"bytes"
	"context"
	"io/fs"
	"path"
	"sort"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/internal/rofile"
)

// Stat returns the FileInfo of name, following symbolic links.
func (t *Tree) Stat(name string) (fs.FileInfo, error) {
	return t.StatContext(context.Background(), name)
}

// StatContext is Stat with a context.
func (t *Tree) StatContext(ctx context.Context, name string) (fs.FileInfo, error) {
	e, err := t.resolve(ctx, "stat", name, true)
	if err != nil {
		return nil, err
	}
	return renamed(e.info, path.Base(name)), nil
}

// Lstat returns the FileInfo of name without following a final symbolic
// link.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) {
	return t.LstatContext(context.Background(), name)
}

// LstatContext is Lstat with a context.
func (t *Tree) LstatContext(ctx context.Context, name string) (fs.FileInfo, error) {
	e, err := t.resolve(ctx, "lstat", name, false)
	if err != nil {
		return nil, err
	}
	return e.info, nil
}

// ReadLink returns the target of the symbolic link name.
func (t *Tree) ReadLink(name string) (string, error) {
	return t.ReadLinkContext(context.Background(), name)
}

// ReadLinkContext is ReadLink with a context.
func (t *Tree) ReadLinkContext(ctx context.Context, name string) (string, error) {
	e, err := t.resolve(ctx, "readlink", name, false)
	if err != nil {
		return "", err
	}
	if e.info.Mode()&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return e.info.Sys().(*guestfs.Stat).LinkTarget, nil
}

// ReadDir lists the directory name, sorted by name, following symbolic
// links to it.
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	return t.ReadDirContext(context.Background(), name)
}

// ReadDirContext is ReadDir with a context.
func (t *Tree) ReadDirContext(ctx context.Context, name string) ([]fs.DirEntry, error) {
	e, err := t.resolve(ctx, "readdir", name, true)
	if err != nil {
		return nil, err
	}
	return t.readDir(ctx, e)
}

func (t *Tree) readDir(ctx context.Context, e *entry) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	switch e.kind {
	case kRoot:
		t.maybeRefresh(ctx)
		vms, err := t.vmDirs(ctx)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: e.path, Err: err}
		}
		for n, v := range vms {
			out = append(out, dirInfo(n, v.Latest))
		}
	case kVM:
		t.maybeRefresh(ctx)
		set, err := t.restorePoints(ctx, e.vm)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: e.path, Err: err}
		}
		for _, n := range set.names {
			out = append(out, dirInfo(n, set.byName[n].Time))
		}
		if len(set.names) > 0 {
			last := set.names[len(set.names)-1]
			out = append(out, linkInfo(LatestName, last, set.byName[last].Time))
		}
	case kRP:
		rp := e.rp
		out = append(out, fileInfo{name: VMJSONName, size: int64(len(vmJSON(rp))), mode: 0o444, st: timesStat(rp.Time)})
		for _, d := range rp.Disks {
			out = append(out,
				fileInfo{name: d.Name() + rawSuffix, size: d.Size, mode: 0o444, st: timesStat(rp.Time), blksize: diskBlockSize},
				dirInfo(d.Name(), rp.Time))
		}
	case kGuest:
		od, release, err := t.disks.acquire(ctx, e.rp, e.disk)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: e.path, Err: err}
		}
		defer release()
		g, err := od.guest(ctx)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: e.path, Err: err}
		}
		list, err := g.FS().ReadDir(e.gpath)
		if err != nil {
			return nil, rebase(err, "readdir", e.path)
		}
		return list, nil
	default:
		return nil, &fs.PathError{Op: "readdir", Path: e.path, Err: ErrNotDir}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Open opens the named file or directory, following symbolic links. The
// result is a *File.
func (t *Tree) Open(name string) (fs.File, error) {
	f, err := t.OpenFile(context.Background(), name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// OpenFile is Open with a context and the concrete type. Opening a disk
// or a guest file keeps its disk open until the File is closed.
func (t *Tree) OpenFile(ctx context.Context, name string) (*File, error) {
	e, err := t.resolve(ctx, "open", name, true)
	if err != nil {
		return nil, err
	}
	f := &File{t: t, e: e, info: renamed(e.info, path.Base(name))}
	switch {
	case e.kind == kJSON:
		f.src = rofile.WithoutContext(bytes.NewReader(vmJSON(e.rp)))
	case e.kind == kRaw:
		od, release, err := t.disks.acquire(ctx, e.rp, e.disk)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		f.src, f.release = od.dr, release
	case e.kind == kGuest && e.info.Mode().IsRegular():
		od, release, err := t.disks.acquire(ctx, e.rp, e.disk)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		g, err := od.guest(ctx)
		if err != nil {
			release()
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		gf, err := g.FS().OpenFile(e.gpath)
		if err != nil {
			release()
			return nil, rebase(err, "open", name)
		}
		f.src, f.release = rofile.WithoutContext(gf), release
	}
	f.content = rofile.NewContent(e.path, e.info.Size(), f.src)
	return f, nil
}
