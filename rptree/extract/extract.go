package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/rptree"
	"golang.org/x/sys/unix"
)

// ErrExists is wrapped by Copy's error when a file is in the way and
// Options.Overwrite is not set.
var ErrExists = errors.New("already exists")

// Options tunes Copy. The zero value is the safe default.
type Options struct {
	// Overwrite replaces files, links and other non-directories in the
	// way (default false: they are an error wrapping ErrExists).
	// Directories are merged, never replaced.
	Overwrite bool
	// PreserveSpecial keeps setuid, setgid and sticky bits (default false:
	// dropped, and reported).
	PreserveSpecial bool
	// Owners restores the guest's owners (needs root; default false).
	Owners bool
	// Symlinks is what happens to links that leave the destination
	// (default SymlinksRelative).
	Symlinks SymlinkPolicy
}

// ModeChange is a file whose special bits were dropped.
type ModeChange struct {
	Path     string `json:"path"`     // below the restore point
	Mode     string `json:"mode"`     // in the guest, octal
	Restored string `json:"restored"` // as written, octal
}

// Result is what one Copy restored.
type Result struct {
	// Dest is the host path the item was copied to.
	Dest     string `json:"dest"`
	Files    int    `json:"files"`
	Dirs     int    `json:"dirs"`
	Symlinks int    `json:"symlinks"`
	Bytes    int64  `json:"bytes"`
	// Skipped lists devices, FIFOs and sockets, not restored.
	Skipped []string `json:"skipped,omitempty"`
	// SpecialBitsDropped lists the files that lost setuid, setgid or
	// sticky bits.
	SpecialBitsDropped []ModeChange `json:"special_bits_dropped,omitempty"`
	// LinksRewritten lists absolute links written as relative ones.
	LinksRewritten []Link `json:"links_rewritten,omitempty"`
	// LinksOutside lists the links whose target leaves the destination:
	// written as they are (SymlinksKeep) or not written.
	LinksOutside []Link `json:"links_outside,omitempty"`
}

// Copy copies item, a tree path below the restore-point directory rpDir
// (rptree.RestorePointDir) such as disk-0/part-1/etc, into the existing
// directory to, as to/<last element of item>. Directories are copied
// recursively. It stops at the first error, returning what it restored so
// far.
func Copy(ctx context.Context, tree *rptree.Tree, rpDir, item, to string, o Options) (*Result, error) {
	if o.Symlinks == "" {
		o.Symlinks = SymlinksRelative
	}
	if _, err := ParseSymlinkPolicy(string(o.Symlinks)); err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(to)
	if err == nil {
		root, err = filepath.Abs(root)
	}
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", to, err)
	}
	dirfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open destination %s: %w", root, err)
	}
	defer unix.Close(dirfd)
	name := path.Base(item)
	c := &copier{ctx: ctx, tree: tree, o: o, rpDir: rpDir, item: item, to: root, buf: make([]byte, 1<<20),
		res: &Result{Dest: filepath.Join(root, name)}}
	return c.res, c.copy(dirfd, root, name, item)
}

// copier is one Copy.
type copier struct {
	ctx   context.Context
	tree  *rptree.Tree
	o     Options
	rpDir string
	item  string
	to    string // absolute, no links
	buf   []byte
	res   *Result
}

// copy copies the entry rel (below the restore point) to name in the
// directory dirfd, whose host path is hostDir.
func (c *copier) copy(dirfd int, hostDir, name, rel string) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("%s: invalid name %q", rel, name)
	}
	src := c.rpDir + "/" + rel
	info, err := c.tree.LstatContext(c.ctx, src)
	if err != nil {
		return err
	}
	st, _ := info.Sys().(*guestfs.Stat)
	if st == nil {
		st = &guestfs.Stat{Mtime: info.ModTime(), Atime: info.ModTime()}
	}
	host := filepath.Join(hostDir, name)
	mode := info.Mode()
	switch {
	case mode.IsDir():
		fd, err := c.dir(dirfd, host, name)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		list, err := c.tree.ReadDirContext(c.ctx, src)
		if err != nil {
			return err
		}
		for _, e := range list {
			if err := c.copy(fd, host, e.Name(), rel+"/"+e.Name()); err != nil {
				return err
			}
		}
		c.res.Dirs++
		return c.setMeta(dirfd, fd, host, name, rel, mode, st)
	case mode&fs.ModeSymlink != 0:
		return c.link(dirfd, hostDir, name, rel, st)
	case mode.IsRegular():
		fd, n, err := c.file(dirfd, host, name, src)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		c.res.Files++
		c.res.Bytes += n
		return c.setMeta(dirfd, fd, host, name, rel, mode, st)
	default:
		c.res.Skipped = append(c.res.Skipped, rel)
		return nil
	}
}

// dir opens the directory name in dirfd without following a link,
// creating it if missing, and returns its descriptor.
func (c *copier) dir(dirfd int, host, name string) (int, error) {
	open := func() (int, error) {
		return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	fd, err := open()
	switch {
	case err == nil: // an existing directory: merge into it
		return fd, nil
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR): // a link or a file
		if !c.o.Overwrite {
			return -1, fmt.Errorf("%s exists and is not a directory: %w", host, ErrExists)
		}
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return -1, fmt.Errorf("remove %s: %w", host, err)
		}
	case !errors.Is(err, unix.ENOENT):
		return -1, fmt.Errorf("open %s: %w", host, err)
	}
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
		return -1, fmt.Errorf("create %s: %w", host, err)
	}
	if fd, err = open(); err != nil {
		return -1, fmt.Errorf("open %s: %w", host, err)
	}
	return fd, nil
}

// create runs mk, which creates name in dirfd exclusively; when something
// is in the way it is an error, or, with Overwrite, it is removed (a
// directory never is) and mk runs again.
func (c *copier) create(dirfd int, host, name string, mk func() (int, error)) (int, error) {
	fd, err := mk()
	if !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return -1, fmt.Errorf("create %s: %w", host, err)
		}
		return fd, nil
	}
	if !c.o.Overwrite {
		return -1, fmt.Errorf("%s %w", host, ErrExists)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, fmt.Errorf("stat %s: %w", host, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return -1, fmt.Errorf("%s is a directory; not replacing it with a file", host)
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		return -1, fmt.Errorf("remove %s: %w", host, err)
	}
	if fd, err = mk(); err != nil {
		return -1, fmt.Errorf("create %s: %w", host, err)
	}
	return fd, nil
}

// file copies the regular file src to name in dirfd and returns the new
// file's descriptor and its size.
func (c *copier) file(dirfd int, host, name, src string) (int, int64, error) {
	in, err := c.tree.OpenFile(c.ctx, src)
	if err != nil {
		return -1, 0, err
	}
	defer in.Close()
	fd, err := c.create(dirfd, host, name, func() (int, error) {
		return unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return -1, 0, err
	}
	var off int64
	for {
		n, rerr := in.ReadAtContext(c.ctx, c.buf, off)
		if n > 0 {
			if _, err := writeAll(fd, c.buf[:n]); err != nil {
				rerr = fmt.Errorf("write %s: %w", host, err)
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			return fd, off, nil
		}
		if rerr != nil {
			unix.Close(fd)
			unix.Unlinkat(dirfd, name, 0)
			return -1, off, rerr
		}
	}
}

func writeAll(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(fd, b[done:])
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// link writes the symbolic link rel as Options.Symlinks says.
func (c *copier) link(dirfd int, hostDir, name, rel string, st *guestfs.Stat) error {
	d := decideLink(c.o.Symlinks, st.LinkTarget, rel, c.item, hostDir, c.to)
	report := Link{Path: rel, Target: st.LinkTarget, Written: d.write}
	if d.outside {
		c.res.LinksOutside = append(c.res.LinksOutside, report)
	}
	if d.write == "" {
		return nil
	}
	host := filepath.Join(hostDir, name)
	if _, err := c.create(dirfd, host, name, func() (int, error) { return -1, unix.Symlinkat(d.write, dirfd, name) }); err != nil {
		return err
	}
	if d.rewritten {
		c.res.LinksRewritten = append(c.res.LinksRewritten, report)
	}
	c.res.Symlinks++
	return c.setMeta(dirfd, -1, host, name, rel, fs.ModeSymlink, st)
}

// setMeta restores the owner (Options.Owners), mode and times of name in
// dirfd (fd is its descriptor; -1 for a link), in that order, since chown
// clears setuid bits.
func (c *copier) setMeta(dirfd, fd int, host, name, rel string, mode fs.FileMode, st *guestfs.Stat) error {
	if c.o.Owners {
		var err error
		if fd >= 0 {
			err = unix.Fchown(fd, int(st.UID), int(st.GID))
		} else {
			err = unix.Fchownat(dirfd, name, int(st.UID), int(st.GID), unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return fmt.Errorf("chown %s: %w", host, err)
		}
	}
	if fd >= 0 {
		if err := unix.Fchmod(fd, c.mode(rel, mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", host, err)
		}
	}
	atime, mtime := st.Atime, st.Mtime
	if atime.IsZero() {
		atime = mtime
	}
	if mtime.IsZero() {
		return nil
	}
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", host, err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec { return unix.NsecToTimespec(t.UnixNano()) }

// mode returns the permission bits to write for rel, dropping (and
// reporting) special bits unless Options.PreserveSpecial.
func (c *copier) mode(rel string, m fs.FileMode) uint32 {
	perm := uint32(m.Perm())
	special := rptree.UnixMode(m) & (unix.S_ISUID | unix.S_ISGID | unix.S_ISVTX)
	if special == 0 || c.o.PreserveSpecial {
		return perm | special
	}
	out := perm
	if special&unix.S_ISVTX != 0 && m.IsDir() {
		out &^= 0o022 // without the sticky bit, others could delete each other's files
	}
	c.res.SpecialBitsDropped = append(c.res.SpecialBitsDropped,
		ModeChange{Path: rel, Mode: fmt.Sprintf("%04o", perm|special), Restored: fmt.Sprintf("%04o", out)})
	return out
}
