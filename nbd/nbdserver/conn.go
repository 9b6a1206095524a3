package nbdserver

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/nbd/internal/wire"
)

// Limits of what a client may ask and of what the server advertises.
const (
	// maxOptionLen bounds the data of one option (an export name of at
	// most 4096 bytes and its information requests fit well).
	maxOptionLen = 64 << 10
	// maxPayload is the largest read (and write, to be refused) accepted
	// in one request, advertised in NBD_INFO_BLOCK_SIZE.
	maxPayload = wire.DefaultMaxPayload
	// preferredBlock is the preferred block size advertised.
	preferredBlock = 4096
	// inFlight is how many reads of one connection are served
	// concurrently; the next request is read once one of them is done.
	inFlight = 8
	// transmissionFlags are every export's: read-only, and consistent
	// across connections since nothing writes.
	transmissionFlags = wire.FlagHasFlags | wire.FlagReadOnly | wire.FlagCanMultiConn
)

// errProtocol marks a client that broke the protocol; its connection is
// closed.
var errProtocol = errors.New("nbd client broke the protocol")

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProtocol}, args...)...)
}

// conn is one client connection.
type conn struct {
	s        *Server
	raw      net.Conn
	rw       io.ReadWriter // raw, or tc once TLS is up
	tc       *tls.Conn
	noZeroes bool
	ctx      context.Context // ends with the connection or the server
	log      *slog.Logger
}

// serveConn runs one connection to its end.
func (s *Server) serveConn(raw net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	remote := ""
	if a := raw.RemoteAddr(); a != nil {
		remote = a.String()
	}
	c := &conn{s: s, raw: raw, rw: raw, ctx: ctx, log: s.o.Logger.With("remote", remote)}
	c.log.Debug("nbd connection accepted")
	e, name, err := c.handshake()
	if err == nil && e != nil {
		c.log = c.log.With("export", logName(name))
		c.log.Debug("nbd transmission", "size", e.Size, "tls", c.tc != nil)
		err = c.transmit(e, name)
	}
	if c.tc != nil {
		c.tc.Close() // close_notify, then the connection
	} else {
		raw.Close()
	}
	switch {
	case err == nil:
		c.log.Debug("nbd connection ended")
	case s.ctx.Err() != nil:
		c.log.Debug("nbd connection closed by the server", "error", err)
	default:
		c.log.Info("nbd connection failed", "error", err)
	}
}

// logName is an export name fit for logs and errors: what follows a '?'
// may carry credentials (XCP-ng's session_id), so it is left out.
func logName(name string) string {
	if i := strings.IndexByte(name, '?'); i >= 0 {
		return name[:i] + "?…"
	}
	return name
}

// handshake runs the fixed newstyle negotiation. It returns the export
// the client chose and its name as sent, or a nil export when the client
// aborted.
func (c *conn) handshake() (*Export, string, error) {
	if t := c.s.o.HandshakeTimeout; t > 0 {
		_ = c.raw.SetDeadline(time.Now().Add(t))
	}
	var g [wire.GreetingLen]byte
	binary.BigEndian.PutUint64(g[0:], wire.MagicInit)
	binary.BigEndian.PutUint64(g[8:], wire.MagicOpt)
	binary.BigEndian.PutUint16(g[16:], wire.FlagFixedNewstyle|wire.FlagNoZeroes)
	if _, err := c.rw.Write(g[:]); err != nil {
		return nil, "", fmt.Errorf("send greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.rw, cf[:]); err != nil {
		return nil, "", fmt.Errorf("read client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&wire.FlagCFixedNewstyle == 0 {
		return nil, "", protocolErrorf("client flags %#x: only fixed newstyle clients are served", flags)
	}
	if flags&^uint32(wire.FlagCFixedNewstyle|wire.FlagCNoZeroes) != 0 {
		return nil, "", protocolErrorf("unknown client flags %#x", flags)
	}
	c.noZeroes = flags&wire.FlagCNoZeroes != 0
	o := &c.s.o
	for {
		var h [wire.OptHeaderLen]byte
		if _, err := io.ReadFull(c.rw, h[:]); err != nil {
			return nil, "", fmt.Errorf("read option: %w", err)
		}
		if m := binary.BigEndian.Uint64(h[:]); m != wire.MagicOpt {
			return nil, "", protocolErrorf("option magic %#x", m)
		}
		opt := binary.BigEndian.Uint32(h[8:])
		n := binary.BigEndian.Uint32(h[12:])
		if n > maxOptionLen {
			_ = c.errReply(opt, wire.RepErrTooBig, fmt.Sprintf("option data of %d bytes (at most %d)", n, maxOptionLen))
			return nil, "", protocolErrorf("%s with %d bytes of data", wire.OptName(opt), n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.rw, data); err != nil {
			return nil, "", fmt.Errorf("read %s: %w", wire.OptName(opt), err)
		}
		c.log.Debug("nbd option", "option", wire.OptName(opt), "length", n)
		if o.RequireTLS && c.tc == nil && opt != wire.OptStartTLS && opt != wire.OptAbort {
			if opt == wire.OptExportName {
				// It cannot be refused with a reply.
				return nil, "", errors.New("NBD_OPT_EXPORT_NAME before TLS: TLS is required")
			}
			if err := c.errReply(opt, wire.RepErrTLSReqd, "TLS is required: send NBD_OPT_STARTTLS first"); err != nil {
				return nil, "", err
			}
			continue
		}
		var err error
		switch opt {
		case wire.OptExportName:
			return c.exportName(string(data))
		case wire.OptAbort:
			_ = c.optReply(opt, wire.RepAck, nil)
			c.log.Debug("nbd client aborted the handshake")
			return nil, "", nil
		case wire.OptList:
			err = c.list(data)
		case wire.OptStartTLS:
			err = c.startTLS(data)
		case wire.OptInfo, wire.OptGo:
			var e *Export
			var name string
			if e, name, err = c.info(opt, data); err == nil && e != nil {
				_ = c.raw.SetDeadline(time.Time{})
				return e, name, nil
			}
		default:
			// Structured replies, metadata contexts, extended headers:
			// not offered. A client falls back to simple replies.
			err = c.errReply(opt, wire.RepErrUnsup, wire.OptName(opt)+" is not supported by this server")
		}
		if err != nil {
			return nil, "", err
		}
	}
}

// optReply sends one option reply in a single write.
func (c *conn) optReply(opt, typ uint32, data []byte) error {
	b := make([]byte, wire.OptReplyHeaderLen, wire.OptReplyHeaderLen+len(data))
	binary.BigEndian.PutUint64(b, wire.MagicOptReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	if _, err := c.rw.Write(append(b, data...)); err != nil {
		return fmt.Errorf("send %s reply to %s: %w", wire.RepName(typ), wire.OptName(opt), err)
	}
	return nil
}

// errReply sends an error reply with a message for humans.
func (c *conn) errReply(opt, typ uint32, msg string) error {
	c.log.Debug("nbd option refused", "option", wire.OptName(opt), "reply", wire.RepName(typ), "message", msg)
	return c.optReply(opt, typ, []byte(clip(msg)))
}

// clip cuts s to the protocol's longest string, on a rune boundary.
func clip(s string) string {
	if len(s) <= wire.MaxStringLen {
		return s
	}
	return strings.ToValidUTF8(s[:wire.MaxStringLen], "")
}

// lookup asks Options.Lookup for an export. On failure it returns the
// error reply to send and its message.
func (c *conn) lookup(name string) (e Export, rep uint32, msg string) {
	e, err := c.s.o.Lookup(c.ctx, name)
	switch {
	case err == nil && (e.Size < 0 || e.Data == nil):
		c.s.noteErr(fmt.Errorf("nbd server: Lookup(%q) returned an export of size %d with Data %v", logName(name), e.Size, e.Data))
		return Export{}, wire.RepErrUnknown, "export unavailable"
	case err == nil:
		return e, 0, ""
	case errors.Is(err, ErrUnknownExport):
		return Export{}, wire.RepErrUnknown, err.Error()
	case errors.Is(err, ErrPolicy):
		return Export{}, wire.RepErrPolicy, err.Error()
	case c.ctx.Err() != nil:
		return Export{}, wire.RepErrShutdown, "the server is shutting down"
	default:
		c.s.noteErr(fmt.Errorf("nbd server: look up export %q: %w", logName(name), err))
		return Export{}, wire.RepErrUnknown, "export unavailable"
	}
}

// exportName answers NBD_OPT_EXPORT_NAME: the export's size and flags,
// or, since no error can be sent, the end of the connection.
func (c *conn) exportName(name string) (*Export, string, error) {
	if len(name) > wire.MaxStringLen {
		return nil, "", protocolErrorf("export name of %d bytes", len(name))
	}
	e, rep, msg := c.lookup(name)
	if rep != 0 {
		return nil, "", fmt.Errorf("NBD_OPT_EXPORT_NAME %q refused: %s: %s", logName(name), wire.RepName(rep), msg)
	}
	b := make([]byte, wire.ExportNameReplyLen, wire.ExportNameReplyLen+wire.ExportNameZeroesLen)
	binary.BigEndian.PutUint64(b, uint64(e.Size))
	binary.BigEndian.PutUint16(b[8:], transmissionFlags)
	if !c.noZeroes {
		b = b[:cap(b)]
	}
	if _, err := c.rw.Write(b); err != nil {
		return nil, "", fmt.Errorf("send reply to NBD_OPT_EXPORT_NAME: %w", err)
	}
	_ = c.raw.SetDeadline(time.Time{})
	return &e, name, nil
}

// list answers NBD_OPT_LIST.
func (c *conn) list(data []byte) error {
	const opt = wire.OptList
	if len(data) != 0 {
		return c.errReply(opt, wire.RepErrInvalid, "NBD_OPT_LIST takes no data")
	}
	if c.s.o.List == nil {
		return c.errReply(opt, wire.RepErrPolicy, "this server does not list its exports")
	}
	for _, name := range c.s.o.List(c.ctx) {
		if len(name) > wire.MaxStringLen {
			continue
		}
		b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
		if err := c.optReply(opt, wire.RepServer, append(b, name...)); err != nil {
			return err
		}
	}
	return c.optReply(opt, wire.RepAck, nil)
}

// startTLS answers NBD_OPT_STARTTLS and, once acknowledged, runs the
// server side of the TLS handshake.
func (c *conn) startTLS(data []byte) error {
	const opt = wire.OptStartTLS
	switch {
	case len(data) != 0:
		return c.errReply(opt, wire.RepErrInvalid, "NBD_OPT_STARTTLS takes no data")
	case c.tc != nil:
		return c.errReply(opt, wire.RepErrInvalid, "TLS is already up")
	case c.s.o.TLS == nil:
		return c.errReply(opt, wire.RepErrPolicy, "this server does not offer TLS")
	}
	if err := c.optReply(opt, wire.RepAck, nil); err != nil {
		return err
	}
	tc := tls.Server(c.raw, c.s.o.TLS)
	if err := tc.HandshakeContext(c.ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.tc, c.rw = tc, tc
	c.log.Debug("nbd TLS established", "version", tls.VersionName(tc.ConnectionState().Version))
	return nil
}

// info answers NBD_OPT_INFO and NBD_OPT_GO. It returns the export when
// NBD_OPT_GO succeeded, nil otherwise (the negotiation goes on).
func (c *conn) info(opt uint32, data []byte) (*Export, string, error) {
	name, infos, err := parseGo(data)
	if err != nil {
		return nil, "", c.errReply(opt, wire.RepErrInvalid, err.Error())
	}
	if len(name) > wire.MaxStringLen {
		return nil, "", c.errReply(opt, wire.RepErrInvalid, fmt.Sprintf("export name of %d bytes (at most %d)", len(name), wire.MaxStringLen))
	}
	e, rep, msg := c.lookup(name)
	if rep != 0 {
		return nil, "", c.errReply(opt, rep, msg)
	}
	b := binary.BigEndian.AppendUint16(nil, wire.InfoExport)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Size))
	b = binary.BigEndian.AppendUint16(b, transmissionFlags)
	if err := c.optReply(opt, wire.RepInfo, b); err != nil {
		return nil, "", err
	}
	var sent [wire.InfoBlockSize + 1]bool
	for _, it := range infos {
		if int(it) >= len(sent) || sent[it] {
			continue // unknown types are ignored, as proto.md asks
		}
		sent[it] = true
		b = binary.BigEndian.AppendUint16(b[:0], it)
		switch it {
		case wire.InfoName:
			if e.Name == "" {
				continue
			}
			b = append(b, clip(e.Name)...)
		case wire.InfoDescription:
			if e.Description == "" {
				continue
			}
			b = append(b, clip(e.Description)...)
		case wire.InfoBlockSize:
			b = binary.BigEndian.AppendUint32(b, 1)
			b = binary.BigEndian.AppendUint32(b, preferredBlock)
			b = binary.BigEndian.AppendUint32(b, maxPayload)
		default:
			continue // NBD_INFO_EXPORT went first
		}
		if err := c.optReply(opt, wire.RepInfo, b); err != nil {
			return nil, "", err
		}
	}
	if err := c.optReply(opt, wire.RepAck, nil); err != nil {
		return nil, "", err
	}
	if opt == wire.OptGo {
		return &e, name, nil
	}
	return nil, "", nil
}

// parseGo decodes the data of NBD_OPT_GO and NBD_OPT_INFO: the export
// name and the information types requested.
func parseGo(b []byte) (name string, infos []uint16, err error) {
	if len(b) < 6 {
		return "", nil, fmt.Errorf("option data of %d bytes: too short", len(b))
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > uint64(len(b)-6) {
		return "", nil, fmt.Errorf("export name length %d in option data of %d bytes", n, len(b))
	}
	name = string(b[4 : 4+n])
	rest := b[4+n:]
	k := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*k {
		return "", nil, fmt.Errorf("%d information requests announced in %d bytes", k, len(rest))
	}
	infos = make([]uint16, k)
	for i := range infos {
		infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return name, infos, nil
}
