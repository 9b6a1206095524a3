package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Local keeps objects as plain files under a directory: object a/b/c is the
// file DIR/a/b/c, with mode 0600, in directories of mode 0700 created as
// needed. That is the layout of docs/FORMAT.md, so a repository written
// before the backend existed opens as it is. The repository's local-only
// state (index/, snapshots/, lock, journal/) lives in the same directory
// beside the objects; List("") lists it too, so the engine lists only
// under its object prefixes.
//
// Put writes a temporary file in the target's directory, named
// ".<base>.tmp-<random>" (hidden, so no valid name is ever one), fsyncs it,
// renames it over the target and fsyncs the directory; a directory it
// creates is fsync'd into its parent first. A Put killed before its rename
// leaves its temporary file behind: List and Open never see it, and
// SweepTemp removes it. Delete removes the file and fsyncs its directory;
// empty directories are left in place (harmless, and removing them would
// race with a Put creating a file in them).
//
// A killed process leaves every object absent, old or complete; durability
// across a power cut rests on the fsyncs above and on the filesystem
// honouring them.
type Local struct {
	dir    string
	closed atomic.Bool
}

var _ Backend = (*Local)(nil)

// OpenLocal returns the backend of the existing directory dir.
func OpenLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open local backend %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open local backend %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open local backend %s: not a directory", dir)
	}
	return &Local{dir: abs}, nil
}

// Dir is the backend's directory (absolute).
func (l *Local) Dir() string { return l.dir }

// String implements Backend.
func (l *Local) String() string { return "local " + l.dir }

// Close implements Backend. A Local holds no resources.
func (l *Local) Close() error {
	l.closed.Store(true)
	return nil
}

func (l *Local) path(name string) string {
	return filepath.Join(l.dir, filepath.FromSlash(name))
}

// begin checks the name, ctx and that the backend is open.
func (l *Local) begin(ctx context.Context, op, name string) error {
	if err := checkCall(ctx.Err(), op, name); err != nil {
		return err
	}
	if l.closed.Load() {
		return errClosed(op, name)
	}
	return nil
}

// missing reports whether an error from the filesystem means "no such
// object": no such file, or a path element that is a file.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// fsErr wraps a filesystem error of op on name, turning "missing" into
// ErrNotExist.
func fsErr(op, name string, err error) error {
	if missing(err) {
		return fmt.Errorf("%s %s: %w", op, name, ErrNotExist)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// Put implements Backend.
func (l *Local) Put(ctx context.Context, name string, data io.ReaderAt, size int64) error {
	if err := l.begin(ctx, "put", name); err != nil {
		return err
	}
	if err := checkSize("put", name, size); err != nil {
		return err
	}
	if err := l.put(ctx, name, data, size); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return nil
}

func (l *Local) put(ctx context.Context, name string, data io.ReaderAt, size int64) error {
	target := l.path(name)
	dir := filepath.Dir(target)
	if err := l.mkdirs(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tempPattern(filepath.Base(target)))
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = writeAll(ctx, f, data, size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err() // the last moment to give up without effect
	}
	if err == nil {
		err = os.Rename(tmp, target)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// mkdirs creates dir and its missing parents below l.dir, fsyncing each
// parent a directory was created in.
func (l *Local) mkdirs(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(l.dir, dir)
	if err != nil {
		return err
	}
	cur := l.dir
	for el := range strings.SplitSeq(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, el)
		switch err := os.Mkdir(next, 0o700); {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		cur = next
	}
	return nil
}

const (
	// putPiece is how much of a Put's data is copied at a time.
	putPiece = 1 << 20
	// writebackEvery is how much a Put writes before it asks the kernel to
	// start writing it out, so the final fsync has little left to do.
	writebackEvery = 8 << 20
	// tempBaseMax bounds the part of a temporary file's name taken from
	// its target, so the name stays within NAME_MAX.
	tempBaseMax = 200
)

var piecePool = sync.Pool{New: func() any { b := make([]byte, putPiece); return &b }}

// writeAll copies size bytes of data to f, checking ctx between pieces.
func writeAll(ctx context.Context, f *os.File, data io.ReaderAt, size int64) error {
	bp := piecePool.Get().(*[]byte)
	defer piecePool.Put(bp)
	buf := *bp
	var pending int64 // start of what was written but not handed to writeback
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(buf)), size-off))
		got, err := data.ReadAt(buf[:n], off)
		if got < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = shortData(off+int64(got), size)
			}
			return fmt.Errorf("read data: %w", err)
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
		if off-pending >= writebackEvery {
			startWriteback(f, pending, off-pending)
			pending = off
		}
	}
	return nil
}

// tempPattern is the os.CreateTemp pattern of a temporary file for base.
func tempPattern(base string) string {
	if len(base) > tempBaseMax {
		base = base[:tempBaseMax]
	}
	return "." + base + ".tmp-*"
}

// tempTarget returns the target a temporary file's base name was made for
// (possibly truncated), and whether it is such a name at all. It knows
// internal/atomicfile's names too (".<base>.tmp-<digits>").
func tempTarget(base string) (string, bool) {
	if !strings.HasPrefix(base, ".") {
		return "", false
	}
	i := strings.LastIndex(base, ".tmp-")
	if i < 1 {
		return "", false
	}
	return base[1:i], true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Open implements Backend.
func (l *Local) Open(ctx context.Context, name string) (Object, error) {
	if err := l.begin(ctx, "open", name); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(name))
	if err != nil {
		return nil, fsErr("open", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fsErr("open", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", name, ErrNotExist)
	}
	return &localObject{f: f, size: fi.Size()}, nil
}

// localObject is an open file. os.File's ReadAt is pread: concurrent
// callers do not share a cursor.
type localObject struct {
	f    *os.File
	size int64
}

func (o *localObject) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }
func (o *localObject) Size() int64                             { return o.size }
func (o *localObject) Close() error                            { return o.f.Close() }
func (o *localObject) Prefetch(off, n int64)                   { adviseWillNeed(o.f, off, n) }

// Stat implements Backend.
func (l *Local) Stat(ctx context.Context, name string) (Info, error) {
	if err := l.begin(ctx, "stat", name); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(l.path(name))
	if err != nil {
		return Info{}, fsErr("stat", name, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat %s: %w", name, ErrNotExist)
	}
	return Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements Backend.
func (l *Local) Delete(ctx context.Context, name string) error {
	if err := l.begin(ctx, "delete", name); err != nil {
		return err
	}
	p := l.path(name)
	fi, err := os.Lstat(p)
	if missing(err) {
		return nil
	}
	if err != nil {
		return fsErr("delete", name, err)
	}
	if fi.IsDir() {
		return nil // a directory of other objects' names is no object
	}
	if err := os.Remove(p); err != nil && !missing(err) {
		return fsErr("delete", name, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// errStop ends a walk early without an error.
var errStop = errors.New("stop")

// List implements Backend. It walks only the directories that can hold
// names with the prefix ("packs/a" reads packs/ and packs/a*/), and skips
// hidden entries (temporary files), other non-regular files and files
// whose names are not valid object names. Symbolic links to files and
// directories are followed.
func (l *Local) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		if err := checkPrefix(prefix); err != nil {
			yield(Info{}, fmt.Errorf("list: %w", err))
			return
		}
		if l.closed.Load() {
			yield(Info{}, errClosed("list", prefix))
			return
		}
		err := l.walk(ctx, dirOf(prefix), prefix, func(name string, d fs.DirEntry) error {
			if !strings.HasPrefix(name, prefix) || CheckName(name) != nil {
				return nil
			}
			fi, err := l.fileInfo(name, d)
			if missing(err) || (err == nil && !fi.Mode().IsRegular()) {
				return nil // deleted meanwhile, or no object
			}
			if err != nil {
				return err
			}
			if !yield(Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && err != errStop {
			yield(Info{}, fmt.Errorf("list %s: %w", prefix, err))
		}
	}
}

// fileInfo describes a file the walk found, following a symbolic link.
func (l *Local) fileInfo(name string, d fs.DirEntry) (fs.FileInfo, error) {
	if d.Type()&fs.ModeSymlink != 0 {
		return os.Stat(l.path(name))
	}
	return d.Info()
}

// dirOf is the directory part of a prefix: "" or ending in a slash.
func dirOf(prefix string) string {
	return prefix[:strings.LastIndexByte(prefix, '/')+1]
}

// walk calls fn, in byte order of their names, for every entry that is not
// a directory under the directory base ("" or ending in a slash),
// descending into the directories whose names can start a name with
// prefix, or start with it. Hidden directories are skipped. Sorting each
// directory's entries with a slash after directory names makes the
// depth-first order the byte order of the full names ("a-c" < "a/b").
func (l *Local) walk(ctx context.Context, base, prefix string, fn func(name string, d fs.DirEntry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := l.path(base)
	entries, err := os.ReadDir(dir)
	if missing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	type entry struct {
		key string // the name, with a slash after a directory's
		d   fs.DirEntry
		dir bool
	}
	list := make([]entry, 0, len(entries))
	for _, d := range entries {
		isDir := d.IsDir()
		if d.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(filepath.Join(dir, d.Name())); err == nil && fi.IsDir() {
				isDir = true
			}
		}
		key := d.Name()
		if isDir {
			key += "/"
		}
		list = append(list, entry{key, d, isDir})
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := base + e.key
		if !e.dir {
			if err := fn(name, e.d); err != nil {
				return err
			}
			continue
		}
		// The length bound also ends loops of symbolic links.
		if e.key[0] == '.' || len(name) > MaxNameLen ||
			!(strings.HasPrefix(name, prefix) || strings.HasPrefix(prefix, name)) {
			continue
		}
		if err := l.walk(ctx, name, prefix, fn); err != nil {
			return err
		}
	}
	return nil
}

// SweepTemp removes the temporary files of Puts that were killed before
// their rename (".<base>.tmp-<random>", internal/atomicfile's names too)
// whose target name starts with prefix and that were last modified more
// than olderThan ago; olderThan 0 removes them all. It returns how many it
// removed.
//
// A temporary file of a running Put must not be removed: call SweepTemp
// when none runs (a writer holding the repository lock, before its first
// Put), or with an age no Put reaches. Sweep only where objects live
// ("packs/", "records/"): other processes write temporary files of the same
// pattern in journal/.
func (l *Local) SweepTemp(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	if err := checkPrefix(prefix); err != nil {
		return 0, fmt.Errorf("sweep temporary files: %w", err)
	}
	if l.closed.Load() {
		return 0, errClosed("sweep temporary files under", prefix)
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	dirs := map[string]bool{}
	err := l.walk(ctx, dirOf(prefix), prefix, func(name string, d fs.DirEntry) error {
		dir, base := path.Split(name)
		target, ok := tempTarget(base)
		if !ok || !d.Type().IsRegular() || !strings.HasPrefix(dir+target, prefix) {
			return nil
		}
		if olderThan > 0 {
			fi, err := d.Info()
			if missing(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if fi.ModTime().After(cutoff) {
				return nil
			}
		}
		p := l.path(name)
		if err := os.Remove(p); err != nil && !missing(err) {
			return err
		}
		removed++
		dirs[filepath.Dir(p)] = true
		return nil
	})
	for d := range dirs {
		if serr := syncDir(d); err == nil {
			err = serr
		}
	}
	if err != nil {
		return removed, fmt.Errorf("sweep temporary files under %q: %w", prefix, err)
	}
	return removed, nil
}
