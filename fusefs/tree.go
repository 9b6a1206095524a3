package fusefs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/guestfs"
)

// Names inside a restore-point directory.
const (
	LatestName = "latest"  // VM directory: symlink to the newest restore point
	VMJSONName = "vm.json" // restore-point directory: configuration and facts
	rawSuffix  = ".raw"    // disk-N.raw
)

// kind is what a path of the tree names.
type kind int

const (
	kRoot   kind = iota // "."
	kVM                 // <vm>
	kRP                 // <vm>/<time>
	kLatest             // <vm>/latest
	kJSON               // <vm>/<time>/vm.json
	kRaw                // <vm>/<time>/disk-N.raw
	kGuest              // <vm>/<time>/disk-N[/...]
)

// immutable reports whether an entry of this kind lives inside a restore
// point (and so never changes).
func (k kind) immutable() bool { return k >= kJSON }

// entry is a resolved path.
type entry struct {
	kind  kind
	path  string // the tree path (cleaned, "." for the root)
	vm    string // VM name (kVM and below)
	rp    *engine.RestorePoint
	disk  int    // disk index (kRaw, kGuest)
	gpath string // kGuest: path inside the disk's guestfs tree ("." = disk-N)
	info  fs.FileInfo
}

// rpName names the restore point (and disk) an entry belongs to, for log
// lines; empty above restore points.
func (e *entry) rpName() string {
	if e.rp == nil {
		return ""
	}
	return e.rp.Name()
}

// Tree is the mount's file tree as a read-only io/fs.FS, independent of
// FUSE:
//
//	<vm>/                        one directory per VM with restore points
//	<vm>/latest                  symlink to the newest <time>
//	<vm>/<time>/                 one restore point (engine.FormatTime)
//	<vm>/<time>/vm.json          the VM configuration and restore-point facts
//	<vm>/<time>/disk-N.raw       the disk's bytes
//	<vm>/<time>/disk-N/part-M/…  the guest's files (package guestfs)
//
// Nothing is read until a directory is listed or a name looked up. Every
// FileInfo's Sys() is a *guestfs.Stat (owners, times, link target). Open
// and Stat follow symbolic links (latest, and guest links inside their
// filesystem); Lstat, ReadLink and ReadDir do not. Opened regular files
// are *File, an io.ReaderAt safe for concurrent callers. A Tree is safe for
// concurrent use.
type Tree struct {
	repo  *engine.Repository
	opts  Options
	disks *diskCache

	refreshMu   sync.Mutex
	lastRefresh time.Time

	mu     sync.Mutex
	vms    map[string]engine.VM // by directory name; nil: not loaded
	rpSets map[string]*rpSet    // by VM name
}

// rpSet is one VM's restore points by directory name.
type rpSet struct {
	byName map[string]*engine.RestorePoint
	names  []string // sorted
}

var (
	_ fs.ReadDirFS  = (*Tree)(nil)
	_ fs.StatFS     = (*Tree)(nil)
	_ fs.ReadLinkFS = (*Tree)(nil)
)

// NewTree returns the tree of repo's restore points. It reads nothing yet.
// repo must stay open until the Tree is closed; a repository opened
// read-only is refreshed as the tree is listed, so new restore points
// appear.
func NewTree(repo *engine.Repository, o Options) (*Tree, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("fusefs: options: %w", err)
	}
	o = o.withDefaults()
	t := &Tree{repo: repo, opts: o, rpSets: map[string]*rpSet{}}
	t.disks = newDiskCache(repo, o)
	t.lastRefresh = time.Now()
	return t, nil
}

// Close releases the disks the tree keeps open. Files opened from it keep
// working until they are closed.
func (t *Tree) Close() error {
	t.disks.purge()
	return nil
}

// maybeRefresh checks for new restore points, at most once per
// RefreshInterval, and drops the cached listings when there are some.
func (t *Tree) maybeRefresh(ctx context.Context) {
	if t.opts.RefreshInterval < 0 {
		return
	}
	t.refreshMu.Lock()
	defer t.refreshMu.Unlock()
	if time.Since(t.lastRefresh) < t.opts.RefreshInterval {
		return
	}
	t.lastRefresh = time.Now()
	changed, err := t.repo.Refresh(ctx)
	if err != nil {
		t.opts.Logger.Warn("refresh repository", "err", err)
		return
	}
	if changed {
		t.mu.Lock()
		t.vms = nil
		t.rpSets = map[string]*rpSet{}
		t.mu.Unlock()
	}
}

// vmDirs returns the VMs by directory name.
func (t *Tree) vmDirs(ctx context.Context) (map[string]engine.VM, error) {
	t.mu.Lock()
	vms := t.vms
	t.mu.Unlock()
	if vms != nil {
		return vms, nil
	}
	list, err := t.repo.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	vms = make(map[string]engine.VM, len(list))
	for _, v := range list {
		if v.RestorePoints > 0 {
			vms[escapeName(v.Name)] = v
		}
	}
	t.mu.Lock()
	t.vms = vms
	t.mu.Unlock()
	return vms, nil
}

// maxRPSets bounds how many VMs' restore-point lists stay decoded.
const maxRPSets = 256

// restorePoints returns vm's restore points by directory name.
func (t *Tree) restorePoints(ctx context.Context, vm string) (*rpSet, error) {
	t.mu.Lock()
	set := t.rpSets[vm]
	t.mu.Unlock()
	if set != nil {
		return set, nil
	}
	list, err := t.repo.ListRestorePoints(ctx, vm)
	if err != nil {
		return nil, fmt.Errorf("list restore points of %s: %w", vm, err)
	}
	set = &rpSet{byName: make(map[string]*engine.RestorePoint, len(list))}
	for _, rp := range list {
		n := engine.FormatTime(rp.Time)
		if _, dup := set.byName[n]; !dup {
			set.names = append(set.names, n)
		}
		set.byName[n] = rp // two in one second: the later one wins
	}
	sort.Strings(set.names)
	t.mu.Lock()
	if len(t.rpSets) >= maxRPSets {
		clear(t.rpSets)
	}
	t.rpSets[vm] = set
	t.mu.Unlock()
	return set, nil
}

// escapeName makes a VM name a valid path element: '%' and '/' are
// percent-encoded, and "." and ".." get their dots encoded.
func escapeName(s string) string {
	if s == "" || s == "." || s == ".." {
		return strings.ReplaceAll(s, ".", "%2E") + strings.Repeat("%00", boolInt(s == ""))
	}
	if !strings.ContainsAny(s, "%/\x00") {
		return s
	}
	r := strings.NewReplacer("%", "%25", "/", "%2F", "\x00", "%00")
	return r.Replace(s)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseDiskName parses "disk-N" + suffix.
func parseDiskName(name, suffix string) (int, bool) {
	s, ok := strings.CutPrefix(name, "disk-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, suffix)
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

// resolve finds name. follow makes a final "latest" link resolve to its
// restore point (and a final guest symlink to its target).
func (t *Tree) resolve(ctx context.Context, op, name string, follow bool) (*entry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return &entry{kind: kRoot, path: ".", info: t.rootInfo(ctx)}, nil
	}
	comps := strings.Split(name, "/")
	// VM.
	vms, err := t.vmDirs(ctx)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	v, ok := vms[comps[0]]
	if !ok {
		t.maybeRefresh(ctx)
		if vms, err = t.vmDirs(ctx); err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if v, ok = vms[comps[0]]; !ok {
			return nil, notExist(op, name)
		}
	}
	e := &entry{kind: kVM, path: comps[0], vm: v.Name}
	if len(comps) == 1 {
		e.info = dirInfo(comps[0], v.Latest)
		return e, nil
	}
	// Restore point, or the latest link.
	set, err := t.restorePoints(ctx, v.Name)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	rpName := comps[1]
	if rpName == LatestName {
		if len(set.names) == 0 {
			return nil, notExist(op, name)
		}
		target := set.names[len(set.names)-1]
		if len(comps) == 2 && !follow {
			rp := set.byName[target]
			return &entry{kind: kLatest, path: name, vm: v.Name, rp: rp,
				info: linkInfo(LatestName, target, rp.Time)}, nil
		}
		rpName = target
	}
	rp, ok := set.byName[rpName]
	if !ok {
		t.maybeRefresh(ctx)
		if set, err = t.restorePoints(ctx, v.Name); err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if rp, ok = set.byName[rpName]; !ok {
			return nil, notExist(op, name)
		}
	}
	e = &entry{kind: kRP, path: name, vm: v.Name, rp: rp}
	if len(comps) == 2 {
		e.info = dirInfo(comps[1], rp.Time)
		return e, nil
	}
	// Inside a restore point.
	e.path = name
	leaf := comps[2]
	if leaf == VMJSONName && len(comps) == 3 {
		e.kind = kJSON
		e.info = fileInfo{name: leaf, size: int64(len(vmJSON(rp))), mode: 0o444, st: timesStat(rp.Time)}
		return e, nil
	}
	if n, ok := parseDiskName(leaf, rawSuffix); ok && len(comps) == 3 {
		d, err := rp.Disk(n)
		if err != nil {
			return nil, notExist(op, name)
		}
		e.kind, e.disk = kRaw, n
		e.info = fileInfo{name: leaf, size: d.Size, mode: 0o444, st: timesStat(rp.Time), blksize: 1 << 20}
		return e, nil
	}
	n, ok := parseDiskName(leaf, "")
	if !ok {
		return nil, notExist(op, name)
	}
	if _, err := rp.Disk(n); err != nil {
		return nil, notExist(op, name)
	}
	e.kind, e.disk, e.gpath = kGuest, n, "."
	if len(comps) == 3 {
		e.info = dirInfo(leaf, rp.Time)
		return e, nil
	}
	e.gpath = strings.Join(comps[3:], "/")
	od, release, err := t.disks.acquire(ctx, rp, n)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	defer release()
	g, err := od.guest(ctx)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if follow {
		e.info, err = g.FS().Stat(e.gpath)
	} else {
		e.info, err = g.FS().Lstat(e.gpath)
	}
	if err != nil {
		return nil, rebase(err, op, name)
	}
	return e, nil
}

// rebase replaces the path of a guestfs PathError by the tree path.
func rebase(err error, op, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: op, Path: name, Err: pe.Err}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (t *Tree) rootInfo(ctx context.Context) fs.FileInfo {
	return dirInfo(".", time.Time{})
}

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

// ReadDir lists the directory name, sorted by name.
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
				fileInfo{name: d.Name() + rawSuffix, size: d.Size, mode: 0o444, st: timesStat(rp.Time), blksize: 1 << 20},
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
		return nil, &fs.PathError{Op: "readdir", Path: e.path, Err: errors.New("not a directory")}
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

// OpenFile is Open with a context and the concrete type.
func (t *Tree) OpenFile(ctx context.Context, name string) (*File, error) {
	e, err := t.resolve(ctx, "open", name, true)
	if err != nil {
		return nil, err
	}
	return t.open(ctx, e, name)
}

// open opens a resolved entry.
func (t *Tree) open(ctx context.Context, e *entry, name string) (*File, error) {
	f := &File{t: t, e: e, info: renamed(e.info, path.Base(name)), size: e.info.Size()}
	switch {
	case e.kind == kJSON:
		f.ra = ctxless{bytes.NewReader(vmJSON(e.rp))}
	case e.kind == kRaw:
		od, release, err := t.disks.acquire(ctx, e.rp, e.disk)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		f.ra, f.release = od.dr, release
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
		f.ra, f.release = ctxless{gf}, release
	}
	return f, nil
}

// readerAtContext is what a File reads from.
type readerAtContext interface {
	ReadAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// ctxless adapts an io.ReaderAt that takes no context.
type ctxless struct{ r io.ReaderAt }

func (c ctxless) ReadAtContext(_ context.Context, p []byte, off int64) (int, error) {
	return c.r.ReadAt(p, off)
}

// File is an open file or directory of a Tree. ReadAt and ReadAtContext
// are safe for concurrent callers; Read and Seek share one position.
type File struct {
	t       *Tree
	e       *entry
	info    fs.FileInfo
	size    int64
	ra      readerAtContext // nil for directories and symlinks
	release func()

	mu      sync.Mutex
	off     int64
	closed  bool
	dir     []fs.DirEntry
	dirOff  int
	dirRead bool
}

var (
	_ fs.ReadDirFile = (*File)(nil)
	_ io.ReaderAt    = (*File)(nil)
	_ io.Seeker      = (*File)(nil)
)

// Stat returns the file's FileInfo.
func (f *File) Stat() (fs.FileInfo, error) { return f.info, nil }

// Close releases the file's disk. It is idempotent.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed && f.release != nil {
		f.release()
	}
	f.closed = true
	return nil
}

// RestorePoint is the restore point the file belongs to (nil above
// restore points).
func (f *File) RestorePoint() *engine.RestorePoint { return f.e.rp }

// dataHoleSeeker is what a disk reader offers for SEEK_DATA/SEEK_HOLE.
type dataHoleSeeker interface {
	SeekData(ctx context.Context, off int64) (int64, error)
	SeekHole(ctx context.Context, off int64) (int64, error)
}

// seekDataHole is lseek(SEEK_DATA or SEEK_HOLE) on the file: io.EOF means
// no data at or after off.
func (f *File) seekDataHole(ctx context.Context, off int64, hole bool) (int64, error) {
	if off < 0 || off >= f.size {
		return 0, io.EOF
	}
	if s, ok := f.ra.(dataHoleSeeker); ok {
		if hole {
			return s.SeekHole(ctx, off)
		}
		return s.SeekData(ctx, off)
	}
	if hole {
		return f.size, nil
	}
	return off, nil
}

// spanReader is what a disk reader offers to read without copying.
type spanReader interface {
	ReadSpan(ctx context.Context, s *engine.Span, off int64, n int) error
}

// readSpan sets s to the file's bytes in [off, off+n), shared with the
// engine's cache, when the file is a disk (ok false otherwise: use
// ReadAtContext). The caller releases s. Errors are those of ReadAtContext.
func (f *File) readSpan(ctx context.Context, s *engine.Span, off int64, n int) (ok bool, err error) {
	sr, ok := f.ra.(spanReader)
	if !ok {
		return false, nil
	}
	if err := sr.ReadSpan(ctx, s, off, n); err != nil && err != io.EOF {
		return true, &fs.PathError{Op: "read", Path: f.e.path, Err: err}
	}
	return true, nil
}

// ReadAt implements io.ReaderAt.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	return f.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off; it returns io.EOF when fewer
// remain. Errors wrap engine.ErrCorrupt for damaged data.
func (f *File) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if f.ra == nil {
		return 0, &fs.PathError{Op: "read", Path: f.e.path, Err: errors.New("not a regular file")}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.e.path, Err: fs.ErrInvalid}
	}
	if off >= f.size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > f.size-off {
		want = p[:f.size-off]
	}
	n, err := f.ra.ReadAtContext(ctx, want, off)
	if err != nil && !(err == io.EOF && n == len(want)) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, &fs.PathError{Op: "read", Path: f.e.path, Err: err}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read reads from the current position.
func (f *File) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ra == nil {
		return 0, &fs.PathError{Op: "read", Path: f.e.path, Err: errors.New("is a directory")}
	}
	if f.off >= f.size {
		return 0, io.EOF
	}
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek sets the position for Read.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.e.path, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.e.path, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

// ReadDir reads the directory's entries in name order (fs.ReadDirFile).
func (f *File) ReadDir(n int) ([]fs.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: f.e.path, Err: errors.New("not a directory")}
	}
	if !f.dirRead {
		list, err := f.t.readDir(context.Background(), f.e)
		if err != nil {
			return nil, err
		}
		f.dir, f.dirRead = list, true
	}
	rest := f.dir[f.dirOff:]
	if n <= 0 {
		f.dirOff = len(f.dir)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	f.dirOff += n
	return rest[:n], nil
}

// vmJSON is the content of vm.json: the restore point's facts and the VM
// configuration, without the manifests.
func vmJSON(rp *engine.RestorePoint) []byte {
	type disk struct {
		Name     string            `json:"name"`
		Index    int               `json:"index"`
		Bus      string            `json:"bus,omitempty"`
		BusIndex int               `json:"bus_index"`
		Size     int64             `json:"size"`
		UUID     string            `json:"uuid,omitempty"`
		Reason   string            `json:"reason,omitempty"`
		Stats    engine.WriteStats `json:"stats"`
	}
	doc := struct {
		RestorePoint string            `json:"restore_point"`
		ID           string            `json:"id"`
		VM           string            `json:"vm"`
		VMUUID       string            `json:"vm_uuid,omitempty"`
		Time         time.Time         `json:"time"`
		Level        string            `json:"level"`
		Consistency  string            `json:"consistency,omitempty"`
		Parent       string            `json:"parent,omitempty"`
		Committed    time.Time         `json:"committed"`
		LogicalBytes int64             `json:"logical_bytes"`
		Disks        []disk            `json:"disks"`
		Meta         map[string]string `json:"meta,omitempty"`
		Stats        engine.WriteStats `json:"stats"`
		Config       json.RawMessage   `json:"config,omitempty"`
	}{
		RestorePoint: rp.Name(), ID: rp.ID, VM: rp.VM, VMUUID: rp.VMUUID, Time: rp.Time.UTC(),
		Level: rp.Level, Consistency: rp.Consistency, Parent: rp.Parent, Committed: rp.Committed.UTC(),
		LogicalBytes: rp.LogicalBytes(), Meta: rp.Meta, Stats: rp.Stats, Disks: []disk{},
	}
	if len(rp.Config) > 0 && json.Valid(rp.Config) {
		doc.Config = rp.Config
	}
	for _, d := range rp.Disks {
		doc.Disks = append(doc.Disks, disk{Name: d.Name(), Index: d.Index, Bus: d.Bus, BusIndex: d.BusIndex,
			Size: d.Size, UUID: d.UUID, Reason: d.Reason, Stats: d.Stats})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return []byte(fmt.Sprintf("{\"error\": %q}\n", err.Error()))
	}
	return append(b, '\n')
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

// blockSize is the preferred I/O size FUSE reports for info.
func blockSize(info fs.FileInfo) uint32 {
	if fi, ok := info.(fileInfo); ok && fi.blksize > 0 {
		return uint32(fi.blksize)
	}
	return 64 << 10
}

// RestorePointDir is the tree path of rp's directory, <vm>/<time>.
func RestorePointDir(rp *engine.RestorePoint) string {
	return escapeName(rp.VM) + "/" + engine.FormatTime(rp.Time)
}
