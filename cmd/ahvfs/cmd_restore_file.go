package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "restore-file",
			Usage:     "copy files out of a guest filesystem of a restore point (no mount needed)",
			ArgsUsage: "VM@TIME disk-N/part-M/PATH...",
			Description: "Copies files, directories (recursively) and symlinks with their mode, times and, when run\n" +
				"as root, owners into --to DIR, each under its own name. Existing files are not overwritten\n" +
				"unless --overwrite is given.",
			Flags: []cli.Flag{
				repoPasswordFlag(),
				&cli.StringFlag{Name: "to", Usage: "directory to restore into (created if missing)", Required: true},
				&cli.BoolFlag{Name: "overwrite", Usage: "replace existing files"},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() < 2 {
					return usagef("restore-file: want VM@TIME disk-N/part-M/PATH...")
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runRestoreFile(c.Context, env, r, c.Args().First(), c.Args().Tail(),
					restoreFileOptions{To: c.String("to"), Overwrite: c.Bool("overwrite")})
			},
		}
	})
}

type restoreFileOptions struct {
	To        string
	Overwrite bool
}

// restoredItem is what one PATH argument restored.
type restoredItem struct {
	Path     string `json:"path"`
	Dest     string `json:"dest"`
	Files    int    `json:"files"`
	Dirs     int    `json:"dirs"`
	Symlinks int    `json:"symlinks"`
	Bytes    int64  `json:"bytes"`
	// Skipped lists special files (devices, FIFOs, sockets) not restored.
	Skipped []string `json:"skipped,omitempty"`
}

type restoreFileResult struct {
	RestorePoint string         `json:"restore_point"`
	To           string         `json:"to"`
	Items        []restoredItem `json:"items"`
}

func runRestoreFile(ctx context.Context, env *cliEnv, r *engine.Repository, name string, paths []string, o restoreFileOptions) error {
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	var rels []string
	for _, p := range paths {
		rel := path.Clean(strings.Trim(p, "/"))
		first, _, _ := strings.Cut(rel, "/")
		if !strings.HasPrefix(first, "disk-") || !fs.ValidPath(rel) {
			return usagef("restore-file: path %q: want disk-N/part-M/PATH", p)
		}
		rels = append(rels, rel)
	}
	tree, err := rptree.New(r, rptree.Options{Logger: env.Log, RefreshInterval: -1})
	if err != nil {
		return err
	}
	defer tree.Close()
	if err := os.MkdirAll(o.To, 0o755); err != nil {
		return fmt.Errorf("restore-file: %w", err)
	}
	res := restoreFileResult{RestorePoint: rp.Name(), To: o.To}
	rs := &restorer{ctx: ctx, tree: tree, overwrite: o.Overwrite, root: os.Geteuid() == 0, buf: make([]byte, 1<<20)}
	for _, rel := range rels {
		src := rptree.RestorePointDir(rp) + "/" + rel
		dst := filepath.Join(o.To, path.Base(rel))
		if rel == path.Base(rel) { // disk-N itself
			dst = filepath.Join(o.To, rel)
		}
		item := restoredItem{Path: rel, Dest: dst}
		rs.item = &item
		if err := rs.restore(src, dst); err != nil {
			return fmt.Errorf("restore-file %s %s: %w", rp.Name(), rel, err)
		}
		res.Items = append(res.Items, item)
		if !env.JSON {
			fmt.Fprintf(env.Stdout, "restored %s → %s (%d files, %d dirs, %d symlinks, %s)\n",
				rel, dst, item.Files, item.Dirs, item.Symlinks, ibytes(item.Bytes))
			for _, s := range item.Skipped {
				fmt.Fprintf(env.Stderr, "skipped special file %s\n", s)
			}
		}
	}
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	return nil
}

// restorer copies from a Tree to the local filesystem.
type restorer struct {
	ctx       context.Context
	tree      *rptree.Tree
	overwrite bool
	root      bool // restore owners
	buf       []byte
	item      *restoredItem
}

// restore copies src (a tree path) to dst, recursively for directories.
func (rs *restorer) restore(src, dst string) error {
	if err := rs.ctx.Err(); err != nil {
		return err
	}
	info, err := rs.tree.LstatContext(rs.ctx, src)
	if err != nil {
		return err
	}
	st, _ := info.Sys().(*guestfs.Stat)
	if st == nil {
		st = &guestfs.Stat{Mtime: info.ModTime(), Atime: info.ModTime()}
	}
	mode := info.Mode()
	switch {
	case mode.IsDir():
		if err := rs.restoreDir(src, dst); err != nil {
			return err
		}
		rs.item.Dirs++
	case mode&fs.ModeSymlink != 0:
		if err := rs.prepare(dst); err != nil {
			return err
		}
		if err := os.Symlink(st.LinkTarget, dst); err != nil {
			return err
		}
		rs.item.Symlinks++
	case mode.IsRegular():
		if err := rs.prepare(dst); err != nil {
			return err
		}
		n, err := rs.copyFile(src, dst)
		if err != nil {
			return err
		}
		rs.item.Files++
		rs.item.Bytes += n
	default:
		rs.item.Skipped = append(rs.item.Skipped, src)
		return nil
	}
	return rs.setMeta(dst, mode, st)
}

func (rs *restorer) restoreDir(src, dst string) error {
	if fi, err := os.Lstat(dst); err == nil && !fi.IsDir() {
		if !rs.overwrite {
			return fmt.Errorf("%s exists and is not a directory (use --overwrite)", dst)
		}
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	list, err := rs.tree.ReadDirContext(rs.ctx, src)
	if err != nil {
		return err
	}
	for _, e := range list {
		if err := rs.restore(src+"/"+e.Name(), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// prepare makes way for a new non-directory at dst.
func (rs *restorer) prepare(dst string) error {
	fi, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !rs.overwrite {
		return fmt.Errorf("%s already exists (use --overwrite to replace it)", dst)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory; not replacing it with a file", dst)
	}
	return os.Remove(dst)
}

// copyFile streams a regular file.
func (rs *restorer) copyFile(src, dst string) (int64, error) {
	in, err := rs.tree.OpenFile(rs.ctx, src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	var off int64
	for {
		n, rerr := in.ReadAtContext(rs.ctx, rs.buf, off)
		if n > 0 {
			if _, err := out.Write(rs.buf[:n]); err != nil {
				out.Close()
				return off, err
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			os.Remove(dst)
			return off, rerr
		}
	}
	return off, out.Close()
}

// setMeta restores owner (as root), mode and times; in that order, since
// chown clears setuid bits.
func (rs *restorer) setMeta(dst string, mode fs.FileMode, st *guestfs.Stat) error {
	link := mode&fs.ModeSymlink != 0
	if rs.root {
		if err := os.Lchown(dst, int(st.UID), int(st.GID)); err != nil {
			return err
		}
	}
	if !link {
		if err := os.Chmod(dst, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
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
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func timespec(t time.Time) unix.Timespec { return unix.NsecToTimespec(t.UnixNano()) }
