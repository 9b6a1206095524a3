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
	if !c.sees(w, r, vm, action) {
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
	fsys, release, err := c.src.PointFS(r.Context(), vm, at)
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

// sees answers 404 (and audits it) unless the user sees vm.
func (c *Console) sees(w http.ResponseWriter, r *http.Request, vm string, action auth.Action) bool {
	u, ok := auth.UserFrom(r.Context())
	if ok {
		vms, err := c.src.VMs(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, "list the protected VMs: "+err.Error())
			return false
		}
		for _, v := range vms {
			if v.Name == vm && u.Sees(auth.VMRef{Name: v.Name, UUID: v.UUID, Categories: v.Categories}) {
				return true
			}
		}
	}
	c.a.Record(r, auth.Event{Action: string(action), Target: "vm " + vm, Result: auth.ResultDenied,
		Detail: "not a VM the user sees (or none of that name)"})
	writeError(w, http.StatusNotFound, "no VM "+vm)
	return false
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
	ents, err := fs.ReadDir(fsys, name)
	if err != nil {
		writeFSError(w, name, err)
		return
	}
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
	writeJSON(w, http.StatusOK, map[string]any{"path": name, "entries": out})
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
	base := path.Base(name)
	if name == "." {
		base = r.PathValue("vm")
	}
	if !st.IsDir() {
		f, err := fsys.Open(name)
		if err != nil {
			writeFSError(w, name, err)
			return
		}
		defer f.Close()
		c.a.Record(r, ev)
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
	ev.Detail = format
	c.a.Record(r, ev)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": base + "." + format}))
	var err2 error
	if format == "zip" {
		w.Header().Set("Content-Type", "application/zip")
		err2 = writeZip(w, fsys, name, base)
	} else {
		w.Header().Set("Content-Type", "application/gzip")
		err2 = writeTarGz(w, fsys, name, base)
	}
	if err2 != nil {
		// The status is sent: the archive stops short, and the client's
		// reader sees a truncated archive.
		c.a.Record(r, auth.Event{Action: string(auth.ActionDownload), Target: ev.Target, Result: auth.ResultFailed, Detail: err2.Error()})
	}
}

// walk calls fn for every name under root (root first) with its tree
// path and its name in an archive: prefix joined with its path below
// root. Symlinks are not followed.
func walk(fsys fs.FS, root, prefix string, fn func(p, rel string, d fs.DirEntry, info fs.FileInfo) error) error {
	return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
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
		return fn(p, path.Join(prefix, below), d, info)
	})
}

func writeTarGz(w io.Writer, fsys fs.FS, root, prefix string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := walk(fsys, root, prefix, func(p, rel string, d fs.DirEntry, info fs.FileInfo) error {
		link := ""
		if d.Type()&fs.ModeSymlink != 0 {
			link, _ = fs.ReadLink(fsys, p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname = rel, "", ""
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
	return errors.Join(err, tw.Close(), gz.Close())
}

func writeZip(w io.Writer, fsys fs.FS, root, prefix string) error {
	zw := zip.NewWriter(w)
	err := walk(fsys, root, prefix, func(p, rel string, d fs.DirEntry, info fs.FileInfo) error {
		h, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		h.Name, h.Method = rel, zip.Deflate
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
	return errors.Join(err, zw.Close())
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
