package console

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/console/auth"
)

// Entry is one name in a listed directory of a restore point.
type Entry struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"` // dir, file, symlink, other
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
}

func entryType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return "other"
}

// pointFS checks that the user sees the VM, opens its restore point's
// tree and stats the request's path there; the caller releases the tree.
// On failure it has answered.
func (c *Console) pointFS(w http.ResponseWriter, r *http.Request, action auth.Action) (fs.FS, string, fs.FileInfo, func(), bool) {
	vm, at := r.PathValue("vm"), r.PathValue("time")
	uuid, ok := c.sees(w, r, vm, action)
	if !ok {
		return nil, "", nil, nil, false
	}
	name := strings.Trim(r.PathValue("path"), "/")
	if name == "" {
		name = "."
	}
	if !fs.ValidPath(name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path %q: not a clean path", name))
		return nil, "", nil, nil, false
	}
	fsys, release, err := c.src.PointFS(r.Context(), vm, uuid, at)
	if err != nil {
		writeFSError(w, "restore point "+vm+"@"+at, err)
		return nil, "", nil, nil, false
	}
	st, err := fs.Stat(fsys, name)
	if err != nil {
		release()
		writeFSError(w, name, err)
		return nil, "", nil, nil, false
	}
	return fsys, name, st, release, true
}

// sees answers 404 (and audits it) unless the user sees vm, and returns
// the UUID its restore points must carry: the VM's when the user has
// scopes (another VM may have had, or have elsewhere, the same name),
// "" (any) when the user sees every VM.
func (c *Console) sees(w http.ResponseWriter, r *http.Request, vm string, action auth.Action) (uuid string, ok bool) {
	u, _ := auth.UserFrom(r.Context())
	vms, err := c.visible(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the protected VMs: "+err.Error())
		return "", false
	}
	for _, v := range vms {
		if v.Name != vm {
			continue
		}
		if len(u.Scopes) == 0 {
			return "", true
		}
		if v.UUID != "" {
			return v.UUID, true
		}
	}
	c.a.Record(r, auth.Event{Action: string(action), Target: "vm " + vm, Result: auth.ResultDenied,
		Detail: "not a VM the user sees (or none of that name)"})
	writeError(w, http.StatusNotFound, "no VM "+vm)
	return "", false
}

// files lists a directory of a restore point (its disks, partitions and
// guest files), or describes one file.
func (c *Console) files(w http.ResponseWriter, r *http.Request) {
	fsys, name, st, release, ok := c.pointFS(w, r, auth.ActionBrowse)
	if !ok {
		return
	}
	defer release()
	if !st.IsDir() {
		writeJSON(w, http.StatusOK, map[string]any{"path": name, "entry": Entry{Name: st.Name(), Type: entryType(st.Mode()), Size: st.Size(), Mtime: st.ModTime()}})
		return
	}
	offset, limit, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ents, err := fs.ReadDir(fsys, name)
	if err != nil {
		writeFSError(w, name, err)
		return
	}
	total := len(ents)
	start := min(offset, total)
	ents = ents[start : start+min(limit, total-start)]
	out := make([]Entry, 0, len(ents))
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // gone, or unreadable: its README says why
		}
		en := Entry{Name: e.Name(), Type: entryType(e.Type()), Size: info.Size(), Mtime: info.ModTime()}
		if e.Type()&fs.ModeSymlink != 0 {
			en.Target, _ = fs.ReadLink(fsys, path.Join(name, e.Name()))
		}
		out = append(out, en)
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": name, "entries": out, "total": total, "offset": offset})
}

// The page of a directory listing: at most maxPage names a request.
const (
	defaultPage = 1000
	maxPage     = 10000
)

// page reads ?offset=N&limit=M (names in order, from N; at most M).
func page(r *http.Request) (offset, limit int, err error) {
	q := r.URL.Query()
	limit = defaultPage
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: want a count of names from 0", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPage {
			return 0, 0, fmt.Errorf("limit %q: want 1 to %d names", v, maxPage)
		}
	}
	return offset, limit, nil
}

// download streams one file, or a directory as a .tar.gz (default) or
// .zip built as it is sent: nothing is staged on disk. Symlinks go into
// the archive as links, never followed.
func (c *Console) download(w http.ResponseWriter, r *http.Request) {
	fsys, name, st, release, ok := c.pointFS(w, r, auth.ActionDownload)
	if !ok {
		return
	}
	defer release()
	format := r.URL.Query().Get("format")
	ev := auth.Event{Action: string(auth.ActionDownload), Target: r.PathValue("vm") + "@" + r.PathValue("time") + "/" + name, Result: auth.ResultOK}
	// Whole disks (deleted data included) are for users who may restore
	// the VM, not for those who may only take files back.
	u, _ := auth.UserFrom(r.Context())
	disks := auth.Allowed(u.Role, auth.ActionRestore)
	base := path.Base(name)
	if name == "." {
		base = safeName(r.PathValue("vm"))
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Cache-Control", "private, no-store")
	if !st.IsDir() {
		if rawDisk(name) && !disks {
			c.a.Record(r, auth.Event{Action: string(auth.ActionDownload), Target: ev.Target, Result: auth.ResultDenied, Detail: "a whole disk needs the restore action"})
			writeError(w, http.StatusForbidden, "forbidden: a whole disk is for users who may restore the VM; download its files")
			return
		}
		f, err := fsys.Open(name)
		if err != nil {
			writeFSError(w, name, err)
			return
		}
		defer f.Close()
		if r.Method != http.MethodHead {
			c.a.Record(r, ev)
		}
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": base}))
		if rs, ok := f.(io.ReadSeeker); ok {
			http.ServeContent(w, r, base, st.ModTime(), rs) // ranges, for resumed downloads
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, f)
		return
	}
	switch format {
	case "", "tar.gz", "zip":
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("format %q: want tar.gz or zip", format))
		return
	}
	if format == "" {
		format = "tar.gz"
	}
	if r.Method == http.MethodHead {
		return
	}
	ev.Detail = format
	c.a.Record(r, ev)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": base + "." + format}))
	keep := func(p string) bool { return disks || !rawDisk(p) }
	var err error
	if format == "zip" {
		w.Header().Set("Content-Type", "application/zip")
		err = writeZip(w, fsys, name, base, keep)
	} else {
		w.Header().Set("Content-Type", "application/gzip")
		err = writeTarGz(w, fsys, name, base, keep)
	}
	if err != nil {
		// The status is sent: end the response abnormally, so that the
		// client sees a broken download, never a complete-looking archive.
		c.a.Record(r, auth.Event{Action: string(auth.ActionDownload), Target: ev.Target, Result: auth.ResultFailed, Detail: err.Error()})
		panic(http.ErrAbortHandler)
	}
}

// rawDisk reports whether a restore point's path is a whole disk
// (disk-N.raw at its top).
func rawDisk(p string) bool {
	return !strings.Contains(p, "/") && strings.HasPrefix(p, "disk-") && strings.HasSuffix(p, ".raw")
}

// safeName is s as one safe path element of an archive: a VM name may
// hold '/', '\\', ':' or be "..".
func safeName(s string) string {
	out := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ':' || r < ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
	if out == "" || out == "." || out == ".." {
		return "_"
	}
	return out
}

// archived reports whether an archive holds an entry of this type: dirs,
// regular files and symlinks; never devices, sockets or pipes.
func archived(m fs.FileMode) bool {
	return m.IsDir() || m.IsRegular() || m&fs.ModeSymlink != 0
}

// plainMode is m without setuid, setgid and sticky: archives give no
// privilege to whoever extracts them as root.
func plainMode(m fs.FileMode) fs.FileMode {
	return m &^ (fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// walk calls fn for every name under root (root first) with its tree
// path and its name in an archive: prefix joined with its path below
// root. Symlinks are not followed.
func walk(fsys fs.FS, root, prefix string, keep func(p string) bool, fn func(p, rel string, d fs.DirEntry, info fs.FileInfo) error) error {
	return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !keep(p) || !archived(d.Type()) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		below := "."
		switch {
		case p == root:
		case root == ".":
			below = p
		default:
			below = strings.TrimPrefix(p, root+"/")
		}
		rel := path.Join(prefix, below)
		if !fs.ValidPath(rel) {
			return fmt.Errorf("%s: not a safe name in an archive", rel)
		}
		return fn(p, rel, d, info)
	})
}

func writeTarGz(w io.Writer, fsys fs.FS, root, prefix string, keep func(string) bool) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := walk(fsys, root, prefix, keep, func(p, rel string, d fs.DirEntry, info fs.FileInfo) error {
		link := ""
		if d.Type()&fs.ModeSymlink != 0 {
			link, _ = fs.ReadLink(fsys, p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname = rel, "", ""
		h.Mode &^= 0o7000 // setuid, setgid, sticky
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		return copyFile(tw, fsys, p)
	})
	if err != nil {
		return err // no trailer: the archive must not look complete
	}
	return errors.Join(tw.Close(), gz.Close())
}

func writeZip(w io.Writer, fsys fs.FS, root, prefix string, keep func(string) bool) error {
	zw := zip.NewWriter(w)
	err := walk(fsys, root, prefix, keep, func(p, rel string, d fs.DirEntry, info fs.FileInfo) error {
		h, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		h.Name, h.Method = rel, zip.Deflate
		h.SetMode(plainMode(info.Mode()))
		if d.IsDir() {
			h.Name += "/"
		}
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := fs.ReadLink(fsys, p)
			_, err = io.WriteString(fw, target) // a zip symlink's data is its target
			return err
		case d.Type().IsRegular():
			return copyFile(fw, fsys, p)
		}
		return nil
	})
	if err != nil {
		return err // no central directory: the archive must not look complete
	}
	return zw.Close()
}

func copyFile(w io.Writer, fsys fs.FS, name string) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// writeFSError answers a tree error: 404 for a name that is not there,
// 500 for the rest.
func writeFSError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, what+": not found")
		return
	}
	writeError(w, http.StatusInternalServerError, what+": "+err.Error())
}
