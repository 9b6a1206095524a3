package nbd

import (
	"context"
	"fmt"
	"io"
)

// ReadAt implements io.ReaderAt. It is ReadAtContext without a context:
// it ends when the reply arrives or the connection fails (at most
// IOTimeout of server silence).
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off, like io.ReaderAt: it returns
// io.EOF with fewer bytes when the export ends first. A long read is
// split into requests of at most Info().MaxRequest bytes, and at most
// 256 KiB unless QueueDepth is 1 (pipelineRequest), all put in flight at
// once (up to the queue depth); reads that are not aligned to the
// server's minimum block size are widened to whole blocks. When ctx ends
// first, the error is ctx's and p is no longer written once
// ReadAtContext has returned.
func (c *Client) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	size := c.info.Size
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p, eof = p[:size-off], io.EOF
	}
	n, err := c.read(ctx, p, off)
	if err != nil {
		return n, fmt.Errorf("nbd: read %d bytes at offset %d of export %q: %w", len(p), off, c.info.Export, err)
	}
	return n, eof
}

// piece is one read request of a ReadAt. It reads straight into dst, or,
// for a partial block, into bounce, from which dst is then filled.
type piece struct {
	off    int64
	length int64
	dst    []byte // part of the caller's buffer this piece fills
	bounce []byte // nil for a direct read; else whole blocks, dst = bounce[skip:]
	skip   int64
}

// planRead splits the read of p at off into requests of at most maxReq
// bytes, aligned to the minimum block size mb; partial blocks at either
// end go through a bounce buffer. off+len(p) <= size.
func planRead(p []byte, off, mb, maxReq, size int64) []piece {
	end := off + int64(len(p))
	var out []piece
	for pos := off; pos < end; {
		if mb > 1 && (pos%mb != 0 || end-pos < mb) {
			bs := pos - pos%mb
			be := min(bs+mb, size)
			n := min(be, end) - pos
			out = append(out, piece{off: bs, length: be - bs, dst: p[pos-off : pos-off+n], bounce: make([]byte, be-bs), skip: pos - bs})
			pos += n
			continue
		}
		n := min(end-pos, maxReq)
		n -= n % mb
		out = append(out, piece{off: pos, length: n, dst: p[pos-off : pos-off+n]})
		pos += n
	}
	return out
}

// pipelineRequest caps the requests of a long read below MaxRequest (it
// is nbdcopy's default request size): one ReadAt of many MiB then keeps
// several requests in flight, so that the server reads one while it
// sends another, and each request's buffer stays small for the server.
// qemu-nbd faults in every page of a fresh buffer for many requests of
// 512 KiB or more; 8 MiB ReadAt calls one after the other, one request
// each, read its export at half the speed (tools/bench/nbd-read.sh,
// docs/PERFORMANCE.md). With QueueDepth 1 nothing overlaps, and long
// requests save round trips: the cap does not apply.
const pipelineRequest = 256 << 10

// requestStep is the longest request a read sends: the server's maximum
// maxReq, capped at pipelineRequest (whole blocks of minBlock) when more
// than one request may be in flight.
func requestStep(maxReq, minBlock int64, queueDepth int) int64 {
	if maxReq <= pipelineRequest || queueDepth <= 1 {
		return maxReq
	}
	return max(pipelineRequest-pipelineRequest%minBlock, minBlock)
}

func (c *Client) read(ctx context.Context, p []byte, off int64) (int, error) {
	pieces := planRead(p, off, c.minBlock, requestStep(c.maxReq, c.minBlock, c.o.QueueDepth), c.info.Size)
	reqs := make([]*request, 0, len(pieces))
	var serr error
	for _, pc := range pieces {
		buf := pc.dst
		if pc.bounce != nil {
			buf = pc.bounce
		}
		req := newRequest(cmdRead, uint64(pc.off), uint32(pc.length), buf)
		if serr = c.submit(ctx, req); serr != nil {
			break
		}
		reqs = append(reqs, req)
	}
	n := 0
	var werr error
	for i, req := range reqs {
		err := c.wait(ctx, req)
		if err == nil && werr == nil {
			pc := pieces[i]
			if pc.bounce != nil {
				copy(pc.dst, pc.bounce[pc.skip:])
			}
			n += len(pc.dst)
		}
		if err != nil && werr == nil {
			werr = err
		}
	}
	if werr == nil {
		werr = serr
	}
	return n, werr
}
