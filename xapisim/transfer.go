package xapisim

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// transfer is one HTTP transfer (export_raw_vdi, import_raw_vdi, export,
// import) being served: its session is checked and its task_id, if any,
// is completed with the outcome.
type transfer struct {
	s    *Sim
	w    http.ResponseWriter
	r    *http.Request
	task string
}

// beginTransfer authenticates a transfer (session_id in the query or
// cookie, or basic auth as root), checks task_id, then applies faults and
// gates. It answers the request itself when it returns false.
func (s *Sim) beginTransfer(w http.ResponseWriter, r *http.Request, name string) (*transfer, bool) {
	q := r.URL.Query()
	sid := q.Get("session_id")
	if sid == "" {
		if c, err := r.Cookie("session_id"); err == nil {
			sid = c.Value
		}
	}
	ok := sid != "" && s.session(sid) != nil
	if !ok && sid == "" {
		ok = s.basicAuthOK(r)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="xapi"`)
		http.Error(w, "SESSION_INVALID: "+sid, http.StatusUnauthorized)
		return nil, false
	}
	t := &transfer{s: s, w: w, r: r, task: q.Get("task_id")}
	if t.task != "" && !s.taskPending(t.task) {
		http.Error(w, "HANDLE_INVALID: task, "+t.task, http.StatusNotFound)
		return nil, false
	}
	if xe := s.faults.take(name); xe != nil {
		t.fail(http.StatusInternalServerError, xe)
		return nil, false
	}
	if err := s.gates.pass(s.ctx, name); err != nil {
		t.fail(http.StatusServiceUnavailable, asXenError(err))
		return nil, false
	}
	return t, true
}

// fail answers an error status with the XenAPI error as text and fails
// the task.
func (t *transfer) fail(code int, xe *xenError) {
	http.Error(t.w, xe.Error(), code)
	t.end(nil, xe)
}

// end completes the task (if any) with a result or an error.
func (t *transfer) end(result any, err error) {
	if t.task != "" {
		t.s.finishTask(t.task, result, err)
	}
}

// abort ends a response whose body is already under way: the task fails
// and the connection is cut, so the client sees a truncated transfer.
func (t *transfer) abort(err error) {
	t.s.logf("%s %s: %v", t.r.Method, t.r.URL.Path, err)
	t.end(nil, xerr("INTERNAL_ERROR", err.Error()))
	panic(http.ErrAbortHandler)
}

// httpStatus maps a XenAPI error of a transfer to an HTTP status.
func httpStatus(xe *xenError) int {
	switch xe.Code {
	case "HANDLE_INVALID", "UUID_INVALID":
		return http.StatusNotFound
	case "VDI_IN_USE":
		return http.StatusConflict
	case "INTERNAL_ERROR":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// vdiForTransfer finds a VDI by ref or uuid, with data. Caller holds s.mu.
func (s *Sim) vdiForTransfer(id string) (*vdiRec, *xenError) {
	d := s.m.VDIs[id]
	if d == nil {
		d = s.m.vdiByUUID(id)
	}
	if d == nil {
		return nil, handleInvalid("VDI", id)
	}
	if d.File == "" {
		return nil, xerr("VDI_INCOMPATIBLE_TYPE", d.Ref, d.Type)
	}
	return d, nil
}

// serveExportRawVDI answers GET /export_raw_vdi?vdi=REF|UUID&format=raw|vhd[&base=REF].
func (s *Sim) serveExportRawVDI(w http.ResponseWriter, r *http.Request) {
	t, ok := s.beginTransfer(w, r, "export_raw_vdi")
	if !ok {
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "raw"
	}
	if format != "raw" && format != "vhd" {
		t.fail(http.StatusBadRequest, xerr("FORMAT_NOT_SUPPORTED", format))
		return
	}
	s.mu.Lock()
	d, xe := s.vdiForTransfer(q.Get("vdi"))
	var path, basePath string
	var size, baseSize int64
	if xe == nil {
		path, size = s.abs(d.File), d.VirtualSize
		if b := q.Get("base"); b != "" {
			var bd *vdiRec
			if bd, xe = s.vdiForTransfer(b); xe == nil {
				basePath, baseSize = s.abs(bd.File), bd.VirtualSize
			}
		}
	}
	s.mu.Unlock()
	if xe != nil {
		t.fail(httpStatus(xe), xe)
		return
	}
	if basePath != "" && format != "vhd" {
		t.fail(http.StatusBadRequest, xerr("FORMAT_NOT_SUPPORTED", "base with format "+format))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		t.fail(http.StatusInternalServerError, xerr("INTERNAL_ERROR", err.Error()))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	if format == "raw" {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; {
			n := min(int64(len(buf)), size-off)
			if err := simkit.ReadFull(f, buf[:n], off); err != nil {
				t.abort(err)
			}
			if _, err := w.Write(buf[:n]); err != nil {
				t.end(nil, xerr("INTERNAL_ERROR", "client went away: "+err.Error()))
				return
			}
			off += n
		}
		t.end(nil, nil)
		return
	}
	var base *os.File
	if basePath != "" {
		if base, err = os.Open(basePath); err != nil {
			t.fail(http.StatusInternalServerError, xerr("INTERNAL_ERROR", err.Error()))
			return
		}
		defer base.Close()
	}
	present, err := vhdPresent(f, size, base, baseSize)
	if err != nil {
		t.fail(http.StatusInternalServerError, xerr("INTERNAL_ERROR", err.Error()))
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(vhdLength(size, len(present)), 10))
	err = writeVHD(w, size, present, func(idx int64, p []byte) error { return simkit.ReadFull(f, p, idx*vhdBlockSize) })
	if err != nil {
		t.end(nil, xerr("INTERNAL_ERROR", "export: "+err.Error()))
		return
	}
	t.end(nil, nil)
}

// vhdPresent lists the 2 MiB blocks a VHD export carries: without base,
// those not all zero; with base, those whose bytes differ from base's
// (past base's end, base reads as zeros).
func vhdPresent(f *os.File, size int64, base *os.File, baseSize int64) ([]int64, error) {
	exts, err := simkit.DataExtents(f, 0, size)
	if err != nil {
		return nil, err
	}
	var bexts []simkit.Extent
	if base != nil {
		if bexts, err = simkit.DataExtents(base, 0, baseSize); err != nil {
			return nil, err
		}
	}
	present := []int64{}
	buf := make([]byte, vhdBlockSize)
	bbuf := make([]byte, vhdBlockSize)
	for idx := range vhdBlocks(size) {
		off := idx * vhdBlockSize
		n := min(vhdBlockSize, size-off)
		mine := overlaps(exts, off, n)
		theirs := base != nil && off < baseSize && overlaps(bexts, off, min(n, baseSize-off))
		if !mine && !theirs {
			continue
		}
		b := buf[:n]
		if err := simkit.ReadFull(f, b, off); err != nil {
			return nil, err
		}
		if base == nil {
			if !simkit.AllZero(b) {
				present = append(present, idx)
			}
			continue
		}
		bb := bbuf[:n]
		clear(bb)
		if off < baseSize {
			if err := simkit.ReadFull(base, bb[:min(n, baseSize-off)], off); err != nil {
				return nil, err
			}
		}
		if string(b) != string(bb) {
			present = append(present, idx)
		}
	}
	return present, nil
}

// serveImportRawVDI answers PUT /import_raw_vdi?vdi=REF|UUID&format=raw:
// the body, exactly the VDI's virtual size, replaces its content.
func (s *Sim) serveImportRawVDI(w http.ResponseWriter, r *http.Request) {
	t, ok := s.beginTransfer(w, r, "import_raw_vdi")
	if !ok {
		return
	}
	q := r.URL.Query()
	if f := q.Get("format"); f != "" && f != "raw" {
		t.fail(http.StatusBadRequest, xerr("FORMAT_NOT_SUPPORTED", f))
		return
	}
	s.mu.Lock()
	d, xe := s.vdiForTransfer(q.Get("vdi"))
	var path string
	var size int64
	if xe == nil {
		path, size = s.abs(d.File), d.VirtualSize
		if s.m.attached(d.Ref) {
			xe = xerr("VDI_IN_USE", d.Ref, "import_raw_vdi")
		}
	}
	s.mu.Unlock()
	if xe != nil {
		t.fail(httpStatus(xe), xe)
		return
	}
	if r.ContentLength >= 0 && r.ContentLength != size {
		t.fail(http.StatusBadRequest, xerr("IMPORT_ERROR", fmt.Sprintf("the body is %d bytes, the VDI %d", r.ContentLength, size)))
		return
	}
	tmp := path + ".import"
	err := receiveDisk(tmp, r.Body, size)
	if err != nil {
		os.Remove(tmp)
		var short *sizeError
		if errors.As(err, &short) {
			t.fail(http.StatusBadRequest, xerr("IMPORT_ERROR", err.Error()))
		} else {
			t.fail(http.StatusInternalServerError, xerr("INTERNAL_ERROR", err.Error()))
		}
		return
	}
	s.diskMu.Lock()
	err = os.Rename(tmp, path)
	s.diskMu.Unlock()
	s.files.drop(path)
	if err != nil {
		os.Remove(tmp)
		t.fail(http.StatusInternalServerError, xerr("INTERNAL_ERROR", err.Error()))
		return
	}
	w.WriteHeader(http.StatusOK)
	t.end(nil, nil)
}

// sizeError: a body longer or shorter than the disk.
type sizeError struct{ got, want int64 }

func (e *sizeError) Error() string {
	if e.got > e.want {
		return fmt.Sprintf("the body is longer than the VDI (%d bytes)", e.want)
	}
	return fmt.Sprintf("the body is %d bytes, the VDI %d", e.got, e.want)
}

// receiveDisk writes exactly size bytes of r into a new sparse file.
func receiveDisk(path string, r io.Reader, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if int64(n) > size-off {
			return &sizeError{off + int64(n), size}
		}
		if _, werr := simkit.WriteSparse(f, buf[:n], off); werr != nil {
			return werr
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != size {
		return &sizeError{off, size}
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Close()
}
