package nbd

import (
	"context"
	"fmt"
)

// maxStatusRequest bounds the length of one block status request: below
// 2^31 as qemu's client keeps it (nbdkit 1.32 aborts on lengths near
// 2^32), and a multiple of every legal minimum block size.
const maxStatusRequest = 1<<31 - maxMinBlock

// Extent is a run of the export with one allocation state
// (base:allocation).
type Extent struct {
	Offset, Length int64
	// Flags hold StateHole and StateZero.
	Flags uint32
}

// Hole tells that the extent is not allocated on the server.
func (e Extent) Hole() bool { return e.Flags&StateHole != 0 }

// Zero tells that the extent reads as zeroes.
func (e Extent) Zero() bool { return e.Flags&StateZero != 0 }

// BlockStatus asks the server how [off, off+length) is allocated
// (NBD_CMD_BLOCK_STATUS, base:allocation). The extents returned are
// consecutive from off and lie within the range and the export; they
// may cover less than asked (at least one byte): ask again from where
// they end. It fails with ErrUnsupported when the server did not
// select base:allocation (Info().BlockStatus).
func (c *Client) BlockStatus(ctx context.Context, off, length int64) ([]Extent, error) {
	if !c.info.BlockStatus {
		return nil, fmt.Errorf("nbd: block status of export %q: %w (no base:allocation)", c.info.Export, ErrUnsupported)
	}
	size := c.info.Size
	if off < 0 || length <= 0 || off >= size {
		return nil, fmt.Errorf("nbd: block status of [%d, +%d): outside the export of %d bytes", off, length, size)
	}
	end := off + min(length, size-off)
	// Requests are aligned to the minimum block size.
	mb := c.minBlock
	start := off - off%mb
	stop := min(end+(mb-end%mb)%mb, size)
	n := min(stop-start, maxStatusRequest)
	req := newRequest(cmdBlockStatus, uint64(start), uint32(n), nil)
	if err := c.submit(ctx, req); err != nil {
		return nil, fmt.Errorf("nbd: block status of [%d, +%d): %w", off, length, err)
	}
	if err := c.wait(ctx, req); err != nil {
		return nil, fmt.Errorf("nbd: block status of [%d, +%d): %w", off, length, err)
	}
	var out []Extent
	pos := start
	for _, s := range req.status {
		e := Extent{Offset: pos, Length: int64(s.length), Flags: s.flags}
		pos += e.Length
		if e.Offset < off { // the widening to a whole block
			e.Length -= off - e.Offset
			e.Offset = off
		}
		if e.Offset+e.Length > end {
			e.Length = end - e.Offset
		}
		if e.Length <= 0 {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k].Flags == e.Flags {
			out[k].Length += e.Length
		} else {
			out = append(out, e)
		}
		if pos >= end {
			break
		}
	}
	if len(out) == 0 {
		// Only possible when the server's first extent ends inside the
		// block that was widened: ask again from where it ended.
		return nil, fmt.Errorf("nbd: block status of [%d, +%d): %w", off, length,
			protocolErrorf("extents end at %d, before the offset asked for", pos))
	}
	return out, nil
}
