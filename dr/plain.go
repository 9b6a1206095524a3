package dr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Plain data, for re-encoding (reencode.go) when a side is a server: the
// source's disks are read decoded, and the target writes a restore point
// from decoded data as a backup would. Both directions go through the
// server's API:
//
//	POST /v1/plain  {"point", "disk", "off", "len"}   the disk's bytes (a reader)
//	POST /v1/import importHeader, then frames         {"point", "stats"} once committed
//
// An import's body is a JSON line (importHeader) and then frames, each
//
//	disk u32 | offset u64 | length u32 | kind u8 (0 data, 1 zeros) | data (kind 0)
//
// whole chunks of the target's size, in any order, ended by a frame with
// disk 0xFFFFFFFF. The server commits the point only after the end frame:
// a body cut short (a cut connection, a killed client) leaves nothing.

// plainDisk reads one disk of a source point, decoded.
type plainDisk interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	Close() error
}

// plainSource opens a source point's disks for decoded reads.
type plainSource interface {
	OpenPlain(ctx context.Context, p Point, disk int) (plainDisk, error)
}

// plainWriter receives a point's decoded data, whole chunks of the
// target's size; its methods may be called concurrently.
type plainWriter interface {
	WriteAt(ctx context.Context, disk int, data []byte, off int64) error
	Zero(ctx context.Context, disk int, off, n int64) error
}

// importer writes restore points anew from decoded data.
type importer interface {
	// ChunkSize is the target's chunk size: writes come in whole chunks.
	ChunkSize(ctx context.Context) (int, error)
	// Import writes the point h describes with what fill writes, and
	// commits it once fill returns nil (nothing is left when it fails).
	Import(ctx context.Context, h importHeader, fill func(ctx context.Context, w plainWriter) error) (engine.WriteStats, error)
}

// importHeader describes the point an import writes.
type importHeader struct {
	Spec  engine.RestorePointSpec `json:"spec"`
	Disks []engine.DiskSpec       `json:"disks"`
}

// headerOf is the import of p: its VM, time, level, consistency,
// configuration, meta (with its source ID) and unexpired lock.
func headerOf(p Point) importHeader {
	meta := map[string]string{}
	for k, v := range p.Meta {
		meta[k] = v
	}
	meta[SourceIDMeta] = p.ID
	h := importHeader{Spec: engine.RestorePointSpec{VM: p.VM, VMUUID: p.VMUUID, Time: p.Time, Level: p.Level, Consistency: p.Consistency,
		Config: p.Config, Meta: meta}}
	if p.LockedUntil.After(time.Now()) {
		h.Spec.LockUntil = p.LockedUntil
	}
	for _, d := range p.Disks {
		h.Disks = append(h.Disks, engine.DiskSpec{Index: d.Index, Bus: d.Bus, BusIndex: d.BusIndex, UUID: d.UUID, Size: d.Size})
	}
	return h
}

// --- a local repository ---

type localPlainDisk struct{ rd *engine.DiskReader }

func (d localPlainDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	_, err := d.rd.ReadAtContext(ctx, p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

func (d localPlainDisk) Close() error { return d.rd.Close() }

// OpenPlain implements plainSource.
func (l *Local) OpenPlain(ctx context.Context, p Point, disk int) (plainDisk, error) {
	rd, err := l.R.OpenDisk(ctx, p.RestorePoint, disk)
	if err != nil {
		return nil, err
	}
	return localPlainDisk{rd}, nil
}

// ChunkSize implements importer.
func (l *Local) ChunkSize(context.Context) (int, error) { return l.R.ChunkSize(), nil }

// localImport is a point being written into a local repository.
type localImport map[int]*engine.DiskWriter

func (li localImport) disk(n int) (*engine.DiskWriter, error) {
	dw, ok := li[n]
	if !ok {
		return nil, fmt.Errorf("%w: no disk %d in the import", errBadRequest, n)
	}
	return dw, nil
}

func (li localImport) WriteAt(ctx context.Context, disk int, data []byte, off int64) error {
	dw, err := li.disk(disk)
	if err != nil {
		return err
	}
	return dw.WriteAt(ctx, data, off)
}

func (li localImport) Zero(_ context.Context, disk int, off, n int64) error {
	dw, err := li.disk(disk)
	if err != nil {
		return err
	}
	return dw.Zero(off, n)
}

// Import implements importer.
func (l *Local) Import(ctx context.Context, h importHeader, fill func(ctx context.Context, w plainWriter) error) (engine.WriteStats, error) {
	w, err := l.R.NewRestorePoint(ctx, h.Spec)
	if err != nil {
		return engine.WriteStats{}, err
	}
	li := localImport{}
	for _, d := range h.Disks {
		if li[d.Index], err = w.AddDisk(d); err != nil {
			w.Abort()
			return engine.WriteStats{}, err
		}
	}
	if err := fill(ctx, li); err != nil {
		w.Abort()
		return engine.WriteStats{}, err
	}
	rp, err := w.Commit(ctx)
	if err != nil {
		return engine.WriteStats{}, err
	}
	return rp.Stats, nil
}

// --- a server ---

// plainRequest asks for len bytes of a disk of a point (by name).
type plainRequest struct {
	Point string `json:"point"`
	Disk  int    `json:"disk"`
	Off   int64  `json:"off"`
	Len   int    `json:"len"`
}

// maxPlainRead bounds one POST /v1/plain: the largest chunk (clients read
// a chunk of the target's size at a time).
const maxPlainRead = 8 << 20

func (s *Server) plain(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	var p plainRequest
	if err := readJSON(req, &p); err != nil {
		return err
	}
	if p.Len < 0 || p.Len > maxPlainRead || p.Off < 0 {
		return fmt.Errorf("%w: read of %d bytes at %d", errBadRequest, p.Len, p.Off)
	}
	rp, err := r.Resolve(req.Context(), p.Point)
	if err != nil {
		return err
	}
	rd, err := r.OpenDisk(req.Context(), rp, p.Disk)
	if err != nil {
		return err
	}
	defer rd.Close()
	buf := make([]byte, p.Len)
	if _, err := rd.ReadAtContext(req.Context(), buf, p.Off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	_, err = w.Write(buf)
	return err
}

type remotePlainDisk struct {
	r    *Remote
	name string
	disk int
}

func (d remotePlainDisk) ReadAt(ctx context.Context, p []byte, off int64) error {
	b, err := json.Marshal(plainRequest{Point: d.name, Disk: d.disk, Off: off, Len: len(p)})
	if err != nil {
		return err
	}
	resp, err := d.r.call(ctx, http.MethodPost, "/v1/plain", bytes.NewReader(b), "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, p); err != nil {
		return fmt.Errorf("%s/v1/plain: %s disk-%d at %d: %w", d.r.base, d.name, d.disk, off, err)
	}
	return nil
}

func (remotePlainDisk) Close() error { return nil }

// OpenPlain implements plainSource.
func (r *Remote) OpenPlain(_ context.Context, p Point, disk int) (plainDisk, error) {
	return remotePlainDisk{r: r, name: p.Name(), disk: disk}, nil
}

// ChunkSize implements importer.
func (r *Remote) ChunkSize(ctx context.Context) (int, error) {
	i, err := r.Info(ctx)
	if err != nil {
		return 0, err
	}
	if i.ChunkSize <= 0 {
		return 0, fmt.Errorf("%s: the server did not say its chunk size (an older ahvfs?)", r.base)
	}
	return i.ChunkSize, nil
}

const (
	importFrameHeader = 17
	importEnd         = 0xFFFFFFFF
	importData        = 0
	importZeros       = 1
)

// remoteImport writes frames into the request body.
type remoteImport struct {
	mu sync.Mutex
	w  *io.PipeWriter
}

func (ri *remoteImport) frame(disk int, off int64, n int, kind byte, data []byte) error {
	var h [importFrameHeader]byte
	binary.BigEndian.PutUint32(h[0:], uint32(disk))
	binary.BigEndian.PutUint64(h[4:], uint64(off))
	binary.BigEndian.PutUint32(h[12:], uint32(n))
	h[16] = kind
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if _, err := ri.w.Write(h[:]); err != nil {
		return err
	}
	if len(data) > 0 {
		if _, err := ri.w.Write(data); err != nil {
			return err
		}
	}
	return nil
}

func (ri *remoteImport) WriteAt(_ context.Context, disk int, data []byte, off int64) error {
	return ri.frame(disk, off, len(data), importData, data)
}

func (ri *remoteImport) Zero(_ context.Context, disk int, off, n int64) error {
	return ri.frame(disk, off, int(n), importZeros, nil)
}

// importReply is what POST /v1/import answers once the point is committed.
type importReply struct {
	Point string            `json:"point"`
	Stats engine.WriteStats `json:"stats"`
}

// Import implements importer: one request streams the whole point.
func (r *Remote) Import(ctx context.Context, h importHeader, fill func(ctx context.Context, w plainWriter) error) (engine.WriteStats, error) {
	hb, err := json.Marshal(h)
	if err != nil {
		return engine.WriteStats{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	ri := &remoteImport{w: pw}
	filled := make(chan error, 1)
	go func() {
		_, err := pw.Write(append(hb, '\n'))
		if err == nil {
			err = fill(ctx, ri)
		}
		if err == nil {
			err = ri.frame(importEnd, 0, 0, importData, nil)
		}
		if err != nil {
			cancel() // the request goes without its end frame: the server commits nothing
		}
		pw.CloseWithError(err)
		filled <- err
	}()
	resp, err := r.call(ctx, http.MethodPost, "/v1/import", pr, "application/octet-stream")
	if err != nil {
		pr.CloseWithError(err)
		if ferr := <-filled; ferr != nil && !errors.Is(ferr, err) && !errors.Is(ferr, io.ErrClosedPipe) {
			return engine.WriteStats{}, ferr // the fill failed first, and cancelled the request
		}
		return engine.WriteStats{}, err
	}
	defer resp.Body.Close()
	if err := <-filled; err != nil { // the server answered before the end frame
		return engine.WriteStats{}, err
	}
	var rep importReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return engine.WriteStats{}, fmt.Errorf("%s/v1/import: reply: %w", r.base, err)
	}
	return rep.Stats, nil
}

// importPoint is POST /v1/import: the point is written as the frames
// come, on several goroutines, and committed at the end frame.
func (s *Server) importPoint(w http.ResponseWriter, req *http.Request, r *engine.Repository) error {
	br := bufio.NewReaderSize(req.Body, 1<<20)
	line, err := br.ReadSlice('\n') // the header fits the buffer, or it is refused
	if err != nil {
		return fmt.Errorf("%w: import header: %w", errBadRequest, err)
	}
	var h importHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return fmt.Errorf("%w: import header: %w", errBadRequest, err)
	}
	if err := checkImport(h); err != nil {
		return err
	}
	if string(h.Spec.Config) == "null" { // a point without a configuration
		h.Spec.Config = nil
	}
	chunk := r.ChunkSize()
	stats, err := (&Local{R: r}).Import(req.Context(), h, func(ctx context.Context, pw plainWriter) error {
		return readFrames(ctx, br, chunk, pw)
	})
	if err != nil {
		return err
	}
	name := h.Spec.VM + "@" + engine.FormatTime(h.Spec.Time)
	s.Log.Info("restore point imported (re-encoded)", "client", clientName(req), "point", name, "new_stored", stats.NewStoredBytes)
	return writeJSON(w, importReply{Point: name, Stats: stats})
}

// Bounds of what an import may declare: what the writer sets up for a
// disk grows with its size before any data comes.
const (
	maxImportDisks    = 64
	maxImportDiskSize = 64 << 40
)

func checkImport(h importHeader) error {
	if len(h.Disks) > maxImportDisks {
		return fmt.Errorf("%w: import of %d disks (at most %d)", errBadRequest, len(h.Disks), maxImportDisks)
	}
	for _, d := range h.Disks {
		if d.Size < 0 || d.Size > maxImportDiskSize {
			return fmt.Errorf("%w: import of a disk of %d bytes (at most %d)", errBadRequest, d.Size, int64(maxImportDiskSize))
		}
	}
	return nil
}

// readFrames reads import frames from br until the end frame and hands
// them to pw on four goroutines.
func readFrames(ctx context.Context, br *bufio.Reader, chunk int, pw plainWriter) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type frame struct {
		disk int
		off  int64
		n    int64
		data []byte // nil: zeros
	}
	frames := make(chan frame, 8)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range frames {
				var err error
				if f.data == nil {
					err = pw.Zero(ctx, f.disk, f.off, f.n)
				} else {
					err = pw.WriteAt(ctx, f.disk, f.data, f.off)
				}
				if err != nil {
					cancel(err)
				}
			}
		}()
	}
	err := func() error {
		defer close(frames)
		for {
			var h [importFrameHeader]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return fmt.Errorf("%w: import cut short before its end: %w", errBadRequest, err)
			}
			disk := binary.BigEndian.Uint32(h[0:])
			if disk == importEnd {
				return nil
			}
			f := frame{disk: int(disk), off: int64(binary.BigEndian.Uint64(h[4:])), n: int64(binary.BigEndian.Uint32(h[12:]))}
			switch {
			case f.n <= 0 || f.n > int64(chunk) && h[16] == importData:
				return fmt.Errorf("%w: import frame of %d bytes (chunks are %d)", errBadRequest, f.n, chunk)
			case h[16] == importData:
				f.data = make([]byte, f.n)
				if _, err := io.ReadFull(br, f.data); err != nil {
					return fmt.Errorf("%w: import cut short: %w", errBadRequest, err)
				}
			case h[16] != importZeros:
				return fmt.Errorf("%w: import frame of kind %d", errBadRequest, h[16])
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}()
	wg.Wait()
	if err != nil {
		return err
	}
	return context.Cause(ctx)
}
