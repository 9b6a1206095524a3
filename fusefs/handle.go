package fusefs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"syscall"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/rptree"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// handle is an open regular file.
type handle struct {
	f   *rptree.File
	log *slog.Logger
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
	_ gofs.FileLseeker  = (*handle)(nil)
)

// errno translates an error of the file, naming its restore point.
func (h *handle) errno(err error, op, what string) syscall.Errno {
	rp := ""
	if p := h.f.RestorePoint(); p != nil {
		rp = p.Name()
	}
	return toErrno(h.log, err, op, rp, what)
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the manifest, so qemu-img,
// cp --sparse and friends skip a disk's zero chunks without reading them.
// Guest files have no holes here: all data up to their size.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	var pos int64
	var err error
	switch whence {
	case unix.SEEK_DATA:
		pos, err = h.f.SeekData(ctx, int64(off))
	case unix.SEEK_HOLE:
		pos, err = h.f.SeekHole(ctx, int64(off))
	default:
		return 0, syscall.EINVAL
	}
	if err == io.EOF {
		return 0, syscall.ENXIO
	}
	if err != nil {
		return 0, h.errno(err, "lseek", h.f.Path())
	}
	return uint64(pos), 0
}

// Read answers a read; it is called concurrently. A disk's bytes go to the
// kernel straight from the engine's chunk cache (one writev, no copy into
// dest); other files are read into dest.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	r := &spanResult{}
	ok, err := h.f.ReadSpan(ctx, &r.s, off, len(dest))
	if ok {
		if err != nil {
			r.s.Release()
			return nil, h.errno(err, "read", fmt.Sprintf("%s at %d+%d", h.f.Path(), off, len(dest)))
		}
		return r, 0
	}
	n, err := h.f.ReadAtContext(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, h.errno(err, "read", fmt.Sprintf("%s at %d+%d", h.f.Path(), off, len(dest)))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Release closes the file.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.f.Close()
	return 0
}

// spanResult is a read's reply made of the engine's cached chunks, which
// go-fuse writes to the kernel with one writev (its Slices method) and then
// releases (Done).
type spanResult struct{ s engine.Span }

var _ fuse.ReadResult = (*spanResult)(nil)

// Slices returns the reply's data; go-fuse prefers it to Bytes.
func (r *spanResult) Slices() ([][]byte, fuse.Status) { return r.s.Bytes(), fuse.OK }

// Bytes flattens the reply, for a server that cannot write slices.
func (r *spanResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	out := buf[:0]
	for _, b := range r.s.Bytes() {
		out = append(out, b...)
	}
	return out, fuse.OK
}

// Size is the reply's length in bytes.
func (r *spanResult) Size() int { return r.s.Len() }

// Done is called once the reply is written: the chunks may be recycled.
func (r *spanResult) Done() { r.s.Release() }
