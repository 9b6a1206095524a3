package guestfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/internal/rofile"
)

// Stat is what every fs.FileInfo of the tree returns from Sys(): the
// metadata FUSE shows and restore-file restores. Filesystems that lack a
// field leave it zero or synthesise it: FAT has no owners and no change
// time (Ctime = Mtime) and no inode numbers (Ino is the byte offset of a
// file's directory entry, or 1<<48 + the first cluster of a directory);
// NTFS has no Unix owners (0) and its Ino is the MFT record number.
type Stat struct {
	UID, GID uint32
	Atime    time.Time
	Mtime    time.Time
	Ctime    time.Time // inode change time (NTFS: MFT record change time)
	Btime    time.Time // creation time, when the filesystem records it
	Nlink    uint32
	Ino      uint64
	Rdev     uint64 // device number of a device node (Linux encoding)
	// LinkTarget is the target of a symbolic link, as stored.
	LinkTarget string
}

// volume is what each filesystem adapter implements. All methods must be
// safe for concurrent callers; they must not panic on corrupt input (a
// recover guards them anyway) and must bound every loop by sizes they
// have checked.
type volume interface {
	// root returns the root directory.
	root() (*node, error)
	// readDir returns dir's entries (without "." and ".."), each with its
	// full metadata (mode, size, Stat including LinkTarget).
	readDir(dir *node) ([]*node, error)
	// open returns the content of a regular file; ReadAt must be safe for
	// concurrent callers and may assume 0 <= off < n.size.
	open(n *node) (io.ReaderAt, error)
	// foldCase reports whether names are case-insensitive (FAT, NTFS).
	foldCase() bool
}

// node is one file as an adapter decoded it.
type node struct {
	name string
	mode fs.FileMode
	size int64
	st   Stat
	priv any       // adapter data (e.g. the decoded inode)
	mnt  *volMount // set on the disk root's partition directories
}

// mount is a volume plus its directory cache.
type mount struct {
	vol  volume
	opts Options

	rootOnce sync.Once
	rootNode *node
	rootErr  error

	mu   sync.Mutex
	dirs map[uint64]*dirList
}

type dirList struct {
	list   []*node // sorted by name
	byName map[string]*node
	folded map[string]*node // lower-case names, for foldCase volumes
}

func newMount(v volume, opts Options) *mount {
	return &mount{vol: v, opts: opts, dirs: map[uint64]*dirList{}}
}

func (m *mount) root() (*node, error) {
	m.rootOnce.Do(func() {
		func() {
			defer recoverTo(&m.rootErr, "read root directory")
			m.rootNode, m.rootErr = m.vol.root()
		}()
		if m.rootErr == nil && !m.rootNode.mode.IsDir() {
			m.rootErr = fmt.Errorf("root is not a directory: %w", ErrCorrupt)
		}
	})
	return m.rootNode, m.rootErr
}

func (m *mount) list(dir *node) (dl *dirList, err error) {
	m.mu.Lock()
	dl = m.dirs[dir.st.Ino]
	m.mu.Unlock()
	if dl != nil {
		return dl, nil
	}
	var nodes []*node
	func() {
		defer recoverTo(&err, "read directory")
		nodes, err = m.vol.readDir(dir)
	}()
	if err != nil {
		return nil, err
	}
	if len(nodes) > m.opts.MaxDirEntries {
		return nil, fmt.Errorf("directory has more than %d entries: %w", m.opts.MaxDirEntries, ErrCorrupt)
	}
	dl = &dirList{byName: make(map[string]*node, len(nodes))}
	for _, n := range nodes {
		if n.name == "" || n.name == "." || n.name == ".." || strings.ContainsAny(n.name, "/\x00") {
			continue // not representable in an fs.FS
		}
		if _, dup := dl.byName[n.name]; dup {
			continue
		}
		dl.byName[n.name] = n
		dl.list = append(dl.list, n)
	}
	sort.Slice(dl.list, func(i, j int) bool { return dl.list[i].name < dl.list[j].name })
	if m.vol.foldCase() {
		dl.folded = make(map[string]*node, len(dl.list))
		for _, n := range dl.list {
			k := strings.ToLower(n.name)
			if _, ok := dl.folded[k]; !ok {
				dl.folded[k] = n
			}
		}
	}
	m.mu.Lock()
	if len(m.dirs) >= m.opts.DirCacheSize {
		for k := range m.dirs { // drop an arbitrary entry
			delete(m.dirs, k)
			break
		}
	}
	m.dirs[dir.st.Ino] = dl
	m.mu.Unlock()
	return dl, nil
}

func (dl *dirList) lookup(name string) *node {
	if n := dl.byName[name]; n != nil {
		return n
	}
	if dl.folded != nil {
		return dl.folded[strings.ToLower(name)]
	}
	return nil
}

// FS is the read-only file tree of a Disk. It implements fs.FS,
// fs.ReadDirFS, fs.StatFS, fs.ReadFileFS and fs.ReadLinkFS.
//
// Open and Stat follow symbolic links the way the guest would: relative
// targets from the link's directory, absolute targets from the root of the
// link's filesystem, never escaping that filesystem ("/.." is "/"). Lstat,
// ReadLink and ReadDir do not follow. On FAT and NTFS a name that does not
// match exactly is looked up case-insensitively.
type FS struct{ d *Disk }

var (
	_ fs.ReadDirFS  = (*FS)(nil)
	_ fs.StatFS     = (*FS)(nil)
	_ fs.ReadFileFS = (*FS)(nil)
	_ fs.ReadLinkFS = (*FS)(nil)
)

// loc is a resolved name: a node and the mount it lives in.
type loc struct {
	m *mount
	n *node
}

const maxSymlinks = 40

func splitPath(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func (f *FS) resolve(op, name string, follow bool) (loc, error) {
	if !fs.ValidPath(name) {
		return loc{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	fail := func(err error) (loc, error) { return loc{}, &fs.PathError{Op: op, Path: name, Err: err} }
	rm := f.d.root
	rn, _ := rm.root()
	stack := []loc{{rm, rn}} // directories from the disk root down
	base := 0                // index in stack of the current filesystem's root
	comps := splitPath(name)
	links := 0
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		cur := stack[len(stack)-1]
		if c == ".." {
			if len(stack)-1 > base {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if !cur.n.mode.IsDir() {
			return fail(fmt.Errorf("not a directory: %w", fs.ErrNotExist))
		}
		dl, err := cur.m.list(cur.n)
		if err != nil {
			return fail(err)
		}
		child := dl.lookup(c)
		if child == nil {
			return fail(fs.ErrNotExist)
		}
		if child.mnt != nil {
			m := child.mnt.get()
			r, err := m.root()
			if err != nil {
				return fail(err)
			}
			// The partition directory is the filesystem's root directory
			// (its owner, mode and times) under the partition's name.
			dir := *r
			dir.name = child.name
			stack = append(stack, loc{m, &dir})
			base = len(stack) - 1
			continue
		}
		if child.mode&fs.ModeSymlink != 0 && (follow || i < len(comps)-1) {
			links++
			if links > maxSymlinks {
				return fail(fmt.Errorf("too many levels of symbolic links: %w", fs.ErrInvalid))
			}
			t := child.st.LinkTarget
			if strings.HasPrefix(t, "/") {
				stack = stack[:base+1]
			}
			rest := append(splitPath(t), comps[i+1:]...)
			comps, i = rest, -1
			continue
		}
		if child.mode.IsDir() {
			// A corrupt filesystem can link a directory below itself:
			// refuse to enter it rather than show an endless tree.
			for _, a := range stack[base:] {
				if a.n.st.Ino == child.st.Ino {
					return fail(fmt.Errorf("directory loop at %q: %w", c, ErrCorrupt))
				}
			}
		}
		stack = append(stack, loc{cur.m, child})
	}
	return stack[len(stack)-1], nil
}

func infoName(name string) string {
	if name == "." {
		return "."
	}
	return path.Base(name)
}

// Open opens the named file (following symbolic links). The returned
// fs.File is a *File.
func (f *FS) Open(name string) (fs.File, error) {
	file, err := f.OpenFile(name)
	if err != nil {
		return nil, err
	}
	return file, nil
}

// OpenFile is Open with the concrete type, which implements io.ReaderAt,
// io.Seeker and fs.ReadDirFile.
func (f *FS) OpenFile(name string) (*File, error) {
	l, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	var src rofile.ReaderAtContext
	if l.n.mode.IsRegular() {
		var ra io.ReaderAt
		func() {
			defer recoverTo(&err, "open")
			ra, err = l.m.vol.open(l.n)
		}()
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		src = rofile.WithoutContext(ra)
	}
	return &File{name: infoName(name), path: name, fsys: f, l: l, content: rofile.NewContent(name, l.n.size, src)}, nil
}

// Stat returns the FileInfo of name, following symbolic links.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	l, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return fileInfo{infoName(name), l.n}, nil
}

// Lstat returns the FileInfo of name without following a final symbolic link.
func (f *FS) Lstat(name string) (fs.FileInfo, error) {
	l, err := f.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return fileInfo{infoName(name), l.n}, nil
}

// ReadLink returns the target of the symbolic link name.
func (f *FS) ReadLink(name string) (string, error) {
	l, err := f.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if l.n.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return l.n.st.LinkTarget, nil
}

// ReadDir lists the named directory, sorted by name.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	l, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	return f.readDir(name, l)
}

func (f *FS) readDir(name string, l loc) ([]fs.DirEntry, error) {
	if !l.n.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	dl, err := l.m.list(l.n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, len(dl.list))
	for i, n := range dl.list {
		if n.mnt != nil {
			// A partition directory: show its filesystem's root.
			if r, err := n.mnt.get().root(); err == nil {
				n = r
			}
		}
		out[i] = fileInfo{dl.list[i].name, n}
	}
	return out, nil
}

// ReadFile reads the whole named file.
func (f *FS) ReadFile(name string) ([]byte, error) {
	file, err := f.OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if !file.l.n.mode.IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
	}
	buf := make([]byte, file.l.n.size)
	n, err := file.ReadAt(buf, 0)
	if err != nil && !(err == io.EOF && n == len(buf)) {
		return nil, err
	}
	return buf, nil
}

// fileInfo implements fs.FileInfo and fs.DirEntry.
type fileInfo struct {
	name string
	n    *node
}

func (i fileInfo) Name() string               { return i.name }
func (i fileInfo) Size() int64                { return i.n.size }
func (i fileInfo) Mode() fs.FileMode          { return i.n.mode }
func (i fileInfo) ModTime() time.Time         { return i.n.st.Mtime }
func (i fileInfo) IsDir() bool                { return i.n.mode.IsDir() }
func (i fileInfo) Sys() any                   { st := i.n.st; return &st }
func (i fileInfo) Type() fs.FileMode          { return i.n.mode.Type() }
func (i fileInfo) Info() (fs.FileInfo, error) { return i, nil }
func (i fileInfo) String() string             { return fs.FormatFileInfo(i) }

// File is an open file or directory of an FS. ReadAt is safe for
// concurrent callers and takes no lock; Read and Seek share a position.
type File struct {
	name    string
	path    string
	fsys    *FS
	l       loc
	content *rofile.Content // no source for directories and links
	dir     rofile.Dir
}

var (
	_ fs.ReadDirFile = (*File)(nil)
	_ io.ReaderAt    = (*File)(nil)
	_ io.Seeker      = (*File)(nil)
)

// Stat returns the file's FileInfo.
func (f *File) Stat() (fs.FileInfo, error) { return fileInfo{f.name, f.l.n}, nil }

// Close releases nothing; it exists for fs.File.
func (f *File) Close() error { return nil }

// ReadAt reads len(p) bytes at off. It returns io.EOF when fewer bytes
// remain.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.content.ReadAt(p, off) }

// Read reads from the current position.
func (f *File) Read(p []byte) (int, error) { return f.content.Read(p) }

// Seek sets the position for Read.
func (f *File) Seek(offset int64, whence int) (int64, error) { return f.content.Seek(offset, whence) }

// ReadDir reads the directory's entries in name order (see fs.ReadDirFile).
func (f *File) ReadDir(n int) ([]fs.DirEntry, error) {
	if !f.l.n.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: f.path, Err: errors.New("not a directory")}
	}
	return f.dir.ReadDir(n, func() ([]fs.DirEntry, error) { return f.fsys.readDir(f.path, f.l) })
}

// memVol is a small in-memory volume: the disk root and README.txt dirs.
type memVol struct {
	rootN    *node
	children map[uint64][]*node
	data     map[uint64][]byte
	next     uint64
}

func newMemDir(_ string, t time.Time) *memVol {
	v := &memVol{children: map[uint64][]*node{}, data: map[uint64][]byte{}, next: 2}
	v.rootN = &node{name: ".", mode: fs.ModeDir | 0o555, st: Stat{Ino: 1, Nlink: 2, Mtime: t, Atime: t, Ctime: t}}
	return v
}

func (v *memVol) add(n *node) {
	n.st.Ino = v.next
	v.next++
	v.children[1] = append(v.children[1], n)
}

func (v *memVol) addMountPoint(name string, vm *volMount) {
	t := v.rootN.st.Mtime
	v.add(&node{name: name, mode: fs.ModeDir | 0o555, mnt: vm, st: Stat{Nlink: 2, Mtime: t, Atime: t, Ctime: t}})
}

func (v *memVol) addFile(name string, data []byte, t time.Time) {
	n := &node{name: name, mode: 0o444, size: int64(len(data)), st: Stat{Nlink: 1, Mtime: t, Atime: t, Ctime: t}}
	v.add(n)
	v.data[n.st.Ino] = data
}

func (v *memVol) root() (*node, error) { return v.rootN, nil }
func (v *memVol) readDir(dir *node) ([]*node, error) {
	return v.children[dir.st.Ino], nil
}
func (v *memVol) open(n *node) (io.ReaderAt, error) {
	return strings.NewReader(string(v.data[n.st.Ino])), nil
}
func (v *memVol) foldCase() bool { return false }

// readmeDir is the directory shown in place of a filesystem that cannot
// be browsed: it holds README.txt with msg.
func readmeDir(msg string) *memVol {
	t := time.Unix(0, 0).UTC()
	v := newMemDir("", t)
	v.addFile("README.txt", []byte(msg), t)
	return v
}
