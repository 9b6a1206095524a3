package nbdserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ahvfs/ahvfs/nbd/internal/wire"
)

// request is a decoded request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseRequest decodes a request header of wire.RequestLen bytes.
func parseRequest(b []byte) (request, error) {
	if len(b) != wire.RequestLen {
		return request{}, protocolErrorf("request header of %d bytes", len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != wire.MagicRequest {
		return request{}, protocolErrorf("request magic %#x", m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// replier writes simple replies, each whole, from any goroutine. After a
// failed write nothing more is written and the connection is closed, so
// that the request loop ends too.
type replier struct {
	c   *conn
	mu  sync.Mutex
	err error
}

// send writes b, a reply whose first wire.SimpleReplyLen bytes are left
// for the header.
func (r *replier) send(cookie uint64, errno uint32, b []byte) error {
	binary.BigEndian.PutUint32(b[0:], wire.MagicSimpleReply)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], cookie)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if _, err := r.c.rw.Write(b); err != nil {
		r.err = fmt.Errorf("send reply: %w", err)
		r.c.raw.Close()
	}
	return r.err
}

// fail replies with an error value and no data.
func (r *replier) fail(cookie uint64, errno uint32) error {
	var b [wire.SimpleReplyLen]byte
	return r.send(cookie, errno, b[:])
}

// transmit serves requests until NBD_CMD_DISC, the client hangs up, a
// protocol violation or the server's end. Requests are read in order;
// reads are served concurrently (inFlight) and answered as they finish.
func (c *conn) transmit(e *Export, name string) (err error) {
	var (
		rp  = &replier{c: c}
		wg  sync.WaitGroup
		sem = make(chan struct{}, inFlight)
	)
	defer func() {
		if err != nil {
			// Replies still to come are lost anyway; closing now also
			// frees reads blocked writing to a client that stopped
			// reading.
			c.raw.Close()
		}
		wg.Wait()
	}()
	br := bufio.NewReaderSize(c.rw, 64<<10)
	var h [wire.RequestLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if err == io.EOF {
				return nil // a hard disconnect between requests
			}
			return fmt.Errorf("read request: %w", err)
		}
		rq, err := parseRequest(h[:])
		if err != nil {
			return err
		}
		switch rq.typ {
		case wire.CmdRead:
			if rq.length > maxPayload || rq.offset > uint64(e.Size) || uint64(rq.length) > uint64(e.Size)-rq.offset {
				c.log.Debug("nbd read out of range", "offset", rq.offset, "length", rq.length)
				err = rp.fail(rq.cookie, wire.EINVAL)
				break
			}
			if rq.length == 0 {
				err = rp.fail(rq.cookie, 0)
				break
			}
			select {
			case sem <- struct{}{}:
			case <-c.ctx.Done():
				return c.ctx.Err()
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				c.read(rp, e, name, rq)
			}()
		case wire.CmdDisc:
			wg.Wait()
			return nil
		case wire.CmdWrite:
			// The payload follows the header: skip it to stay in step.
			if rq.length > maxPayload {
				return protocolErrorf("NBD_CMD_WRITE of %d bytes", rq.length)
			}
			if _, err := io.CopyN(io.Discard, br, int64(rq.length)); err != nil {
				return fmt.Errorf("read NBD_CMD_WRITE payload: %w", err)
			}
			err = rp.fail(rq.cookie, wire.EPERM)
		case wire.CmdTrim, wire.CmdWriteZeroes:
			err = rp.fail(rq.cookie, wire.EPERM)
		default:
			// Not advertised: flush, cache, block status, resize, ...
			err = rp.fail(rq.cookie, wire.EINVAL)
		}
		if err != nil {
			return err
		}
	}
}

// read serves one NBD_CMD_READ within the export.
func (c *conn) read(rp *replier, e *Export, name string, rq request) {
	b := make([]byte, wire.SimpleReplyLen+int(rq.length))
	p := b[wire.SimpleReplyLen:]
	n, err := e.Data.ReadAt(p, int64(rq.offset))
	if n == len(p) {
		_ = rp.send(rq.cookie, 0, b)
		return
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	} else if errors.Is(err, io.EOF) {
		err = fmt.Errorf("export ends at %d bytes: %w", rq.offset+uint64(n), io.ErrUnexpectedEOF)
	}
	c.s.noteErr(fmt.Errorf("nbd server: read %d bytes at offset %d of export %q: %w", rq.length, rq.offset, logName(name), err))
	_ = rp.fail(rq.cookie, wire.EIO)
}
