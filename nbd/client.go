package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Client is one connection to one export of an NBD server, in the
// transmission phase. It is safe for concurrent use: requests from all
// callers share the connection, up to Options.QueueDepth of them in
// flight, and one goroutine receives every reply and hands it to its
// request by cookie.
type Client struct {
	o        Options
	addr     string
	conn     net.Conn // the raw connection, for deadlines and Close
	w        io.Writer
	info     Info
	minBlock int64
	maxReq   int64 // largest read request: a multiple of minBlock
	log      *slog.Logger

	slots chan struct{} // one token per request in flight

	wmu      sync.Mutex // serialises writes of requests
	wbuf     [requestLen]byte
	discSent bool // under wmu: nothing may follow NBD_CMD_DISC

	mu      sync.Mutex
	pending map[uint64]*request
	cookie  uint64
	closed  bool
	err     error         // why the connection ended; set once
	dead    chan struct{} // closed when err is set

	readerDone chan struct{}
}

// Info describes the export and what the handshake negotiated.
type Info struct {
	// Export is the export's name: the server's canonical name when it
	// gave one, else the name asked for.
	Export string
	// Description is the server's description of the export, if any.
	Description string
	// Size is the export's size in bytes.
	Size int64
	// Flags are the transmission flags (FlagReadOnly, FlagCanMultiConn,
	// ...).
	Flags uint16
	// MinBlock, PreferredBlock and MaxPayload are the server's size
	// constraints (NBD_INFO_BLOCK_SIZE), or the protocol's defaults (1,
	// 4096, 32 MiB) when it advertised none.
	MinBlock, PreferredBlock, MaxPayload uint32
	// MaxRequest is the largest read this client sends as one request.
	MaxRequest int
	// TLS tells whether the connection is encrypted.
	TLS bool
	// StructuredReplies tells whether the server sends structured
	// replies (holes in reads, error messages).
	StructuredReplies bool
	// BlockStatus tells whether BlockStatus works (base:allocation was
	// selected).
	BlockStatus bool
	// ExportNameFallback tells that the server did not know NBD_OPT_GO
	// and the export was chosen with NBD_OPT_EXPORT_NAME.
	ExportNameFallback bool
}

var (
	_ io.ReaderAt = (*Client)(nil)
	_ io.Closer   = (*Client)(nil)
)

// Dial connects to the server, negotiates, and returns a Client in the
// transmission phase. ctx bounds the connect and the handshake only.
func Dial(ctx context.Context, o Options) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	network, address, host, _ := splitAddress(o.Address)
	var tlsCfg *tls.Config
	if o.TLS {
		var err error
		if tlsCfg, err = o.tlsConfig(host); err != nil {
			return nil, fmt.Errorf("nbd: TLS configuration for %s: %w", o.Address, err)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancel()
	conn, err := o.DialContext(hctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("nbd: connect to %s: %w", o.Address, err)
	}
	if dl, ok := hctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelling ctx interrupts whatever read or write is under way.
	stop := context.AfterFunc(hctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	upgrade := func() (io.ReadWriter, error) {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tc, nil
	}
	n, err := negotiate(conn, &o, upgrade)
	if !stop() && err == nil {
		err = hctx.Err()
	}
	if err != nil {
		if cerr := hctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		} else if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is the handshake's: it may fire
			// a moment before the context's own timer.
			err = fmt.Errorf("%w (handshake took over %v): %w", context.DeadlineExceeded, o.HandshakeTimeout, err)
		}
		var oe *OptionError
		if errors.As(err, &oe) && hctx.Err() == nil {
			// A soft disconnect, as proto.md asks of a client that gives up.
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			rw := io.Writer(conn)
			if n != nil && n.rw != nil {
				rw = n.rw
			}
			_, _ = rw.Write(appendOption(nil, optAbort, nil))
		}
		conn.Close()
		return nil, fmt.Errorf("nbd: handshake with %s: %w", o.Address, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := newClient(o, conn, n)
	o.Logger.Info("nbd connected", "address", o.Address, "export", c.info.Export, "size", c.info.Size,
		"tls", c.info.TLS, "structured", c.info.StructuredReplies, "block_status", c.info.BlockStatus)
	go c.readLoop(&receiver{
		r:          bufio.NewReaderSize(n.rw, 64<<10),
		structured: n.structured,
		haveMeta:   n.haveMeta,
		metaID:     n.metaID,
		lookup:     c.lookup,
		progress:   c.extendDeadline,
	})
	return c, nil
}

func newClient(o Options, conn net.Conn, n *negotiated) *Client {
	e := n.info
	info := Info{
		Export:             o.Export,
		Description:        e.description,
		Size:               int64(e.size),
		Flags:              e.flags,
		MinBlock:           1,
		PreferredBlock:     4096,
		MaxPayload:         32 << 20,
		TLS:                n.tls,
		StructuredReplies:  n.structured,
		BlockStatus:        n.haveMeta,
		ExportNameFallback: !n.viaGo,
	}
	if e.haveName {
		info.Export = e.name
	}
	if e.haveBlockSize {
		info.MinBlock, info.PreferredBlock, info.MaxPayload = e.minBlock, e.prefBlock, e.maxPayload
	}
	maxReq := min(int64(o.MaxRequest), int64(info.MaxPayload))
	mb := int64(info.MinBlock)
	maxReq = max(maxReq-maxReq%mb, mb)
	info.MaxRequest = int(maxReq)
	return &Client{
		o:          o,
		addr:       o.Address,
		conn:       conn,
		w:          n.rw,
		info:       info,
		minBlock:   mb,
		maxReq:     maxReq,
		log:        o.Logger,
		slots:      make(chan struct{}, o.QueueDepth),
		pending:    map[uint64]*request{},
		dead:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
}

// Info returns what the handshake learnt about the export.
func (c *Client) Info() Info { return c.info }

// Size returns the export's size in bytes.
func (c *Client) Size() int64 { return c.info.Size }

// Err returns nil while the connection works, else why it ended
// (ErrClosed after Close).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) lookup(cookie uint64) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[cookie]
}

// setDeadlineLocked gives the server IOTimeout more while requests are
// outstanding or the client is closing, and no deadline while the
// connection is idle. c.mu is held.
func (c *Client) setDeadlineLocked() {
	if len(c.pending) > 0 || c.closed {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.o.IOTimeout))
	} else {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
}

// extendDeadline is the receiver's progress callback.
func (c *Client) extendDeadline() {
	c.mu.Lock()
	c.setDeadlineLocked()
	c.mu.Unlock()
}

// submit sends req once a queue slot is free. An error means req was
// not sent; after a nil error, req completes through req.done.
func (c *Client) submit(ctx context.Context, req *request) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.dead:
		return c.Err()
	}
	c.mu.Lock()
	if c.err != nil || c.closed {
		err := c.err
		if err == nil {
			err = ErrClosed
		}
		c.mu.Unlock()
		<-c.slots
		return err
	}
	c.cookie++
	req.cookie = c.cookie
	c.pending[req.cookie] = req
	c.setDeadlineLocked()
	c.mu.Unlock()

	err := c.writeRequest(req.cmd, req.flags, req.cookie, req.off, req.length)
	switch {
	case err == errAfterDisc:
		// Close won the race: the request was never sent.
		c.mu.Lock()
		_, ok := c.pending[req.cookie]
		delete(c.pending, req.cookie)
		c.mu.Unlock()
		if ok {
			req.final = ErrClosed
			close(req.done)
			<-c.slots
		}
	case err != nil:
		c.fail(err) // completes req with the connection's error
	}
	return nil
}

var errAfterDisc = errors.New("request after NBD_CMD_DISC")

func (c *Client) writeRequest(cmd, flags uint16, cookie, off uint64, length uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.discSent {
		return errAfterDisc
	}
	c.discSent = cmd == cmdDisc
	b := c.wbuf[:]
	putRequest(b, cmd, flags, cookie, off, length)
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.o.IOTimeout))
	if _, err := c.w.Write(b); err != nil {
		return fmt.Errorf("send %s: %w", cmdName(cmd), err)
	}
	return nil
}

// putRequest encodes a request header into b[:requestLen].
func putRequest(b []byte, cmd, flags uint16, cookie, off uint64, length uint32) {
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], cmd)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
}

// wait returns req's result, or ctx's error if ctx ends first; then req
// is abandoned and its buffer is no longer written.
func (c *Client) wait(ctx context.Context, req *request) error {
	select {
	case <-req.done:
		return req.final
	case <-ctx.Done():
		req.abandon()
		return ctx.Err()
	}
}

// complete ends a request whose reply has fully arrived.
func (c *Client) complete(req *request) {
	c.mu.Lock()
	if c.pending[req.cookie] != req {
		c.mu.Unlock() // fail got there first
		return
	}
	delete(c.pending, req.cookie)
	c.setDeadlineLocked()
	c.mu.Unlock()
	req.final = req.err
	close(req.done)
	<-c.slots
}

// fail ends the connection: every request in flight, and every later
// one, fails with err (wrapped to match ErrConnectionLost, unless it is
// ErrClosed).
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if err != ErrClosed {
		err = &connError{addr: c.addr, err: err}
	}
	c.err = err
	reqs := c.pending
	c.pending = map[uint64]*request{}
	close(c.dead)
	c.mu.Unlock()
	c.conn.Close()
	for _, r := range reqs {
		r.abandon() // the receiver may still hold r
		r.final = err
		close(r.done)
		<-c.slots
	}
	if err != ErrClosed {
		c.log.Info("nbd connection lost", "address", c.addr, "error", err, "requests_failed", len(reqs))
	}
}

// readLoop receives replies until the connection ends.
func (c *Client) readLoop(rc *receiver) {
	defer close(c.readerDone)
	for {
		req, complete, err := rc.next()
		if err != nil {
			c.mu.Lock()
			quiet := c.closed && len(c.pending) == 0
			c.mu.Unlock()
			switch {
			case quiet:
				c.fail(ErrClosed)
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.fail(fmt.Errorf("server silent for %v with requests outstanding: %w", c.o.IOTimeout, err))
			case err == io.EOF:
				c.fail(fmt.Errorf("server closed the connection: %w", io.ErrUnexpectedEOF))
			default:
				c.fail(err)
			}
			return
		}
		if complete {
			c.complete(req)
		}
	}
}

// Close lets the requests in flight finish, sends NBD_CMD_DISC, waits
// (up to IOTimeout) for the server to close its side, and closes the
// connection. Requests submitted after Close fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	alive := c.err == nil
	c.mu.Unlock()
	if !alive {
		<-c.readerDone
		return nil
	}
	// No reply is expected; the cookie only has to be unique.
	err := c.writeRequest(cmdDisc, 0, c.nextCookie(), 0, 0)
	if err == nil {
		// The server answers what is in flight, then closes; the
		// receiver sees the end and records ErrClosed.
		_ = c.conn.SetReadDeadline(time.Now().Add(c.o.IOTimeout))
		<-c.readerDone
	} else {
		c.fail(ErrClosed)
		<-c.readerDone
	}
	c.mu.Lock()
	cerr := c.err
	c.mu.Unlock()
	if cerr != ErrClosed {
		return fmt.Errorf("nbd: close %s: %w", c.addr, cerr)
	}
	return nil
}

func (c *Client) nextCookie() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cookie++
	return c.cookie
}
