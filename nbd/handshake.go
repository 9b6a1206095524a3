package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
)

// maxInfoReplies bounds the replies to one option, so that a server
// cannot keep the client in the handshake for ever.
const maxInfoReplies = 1024

// negotiated is the outcome of a handshake.
type negotiated struct {
	rw         io.ReadWriter // the connection, TLS once upgraded
	tls        bool
	structured bool
	metaID     uint32
	haveMeta   bool // base:allocation selected, with metaID
	viaGo      bool // NBD_OPT_GO (false: NBD_OPT_EXPORT_NAME fallback)
	info       exportInfo
}

// handshaker runs the fixed newstyle negotiation as a client. upgrade,
// called after the server accepted NBD_OPT_STARTTLS, returns the
// connection wrapped in TLS.
type handshaker struct {
	rw      io.ReadWriter
	o       *Options
	log     *slog.Logger
	upgrade func() (io.ReadWriter, error)
	buf     []byte
}

// negotiate performs the whole handshake on rw: it reads the server's
// greeting, upgrades to TLS when asked, negotiates structured replies and
// the base:allocation metadata context, and enters transmission with
// NBD_OPT_GO (NBD_OPT_EXPORT_NAME when the server does not know GO).
// Once the greeting is through, it returns a negotiated even with an
// error, so that the caller can say goodbye on the right connection.
func negotiate(rw io.ReadWriter, o *Options, upgrade func() (io.ReadWriter, error)) (*negotiated, error) {
	h := &handshaker{rw: rw, o: o, log: o.Logger, upgrade: upgrade}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h.run()
}

func (h *handshaker) run() (*negotiated, error) {
	var greet [18]byte
	if _, err := io.ReadFull(h.rw, greet[:]); err != nil {
		return nil, fmt.Errorf("read server greeting: %w", unexpectedEOF(err))
	}
	if m := binary.BigEndian.Uint64(greet[0:]); m != magicInit {
		return nil, protocolErrorf("greeting magic %#x is not NBDMAGIC: not an NBD server", m)
	}
	switch m := binary.BigEndian.Uint64(greet[8:]); m {
	case magicOpt:
	case magicOldstyle:
		return nil, fmt.Errorf("%w: oldstyle negotiation (no export names, no TLS)", ErrUnsupported)
	default:
		return nil, protocolErrorf("second greeting magic %#x is neither IHAVEOPT nor oldstyle", m)
	}
	sflags := binary.BigEndian.Uint16(greet[16:])
	fixed := sflags&flagFixedNewstyle != 0
	noZeroes := sflags&flagNoZeroes != 0
	var cflags uint32
	if fixed {
		cflags |= flagCFixedNewstyle
	}
	if noZeroes {
		cflags |= flagCNoZeroes
	}
	h.log.Debug("nbd greeting", "fixed_newstyle", fixed, "no_zeroes", noZeroes)
	if !fixed && h.o.TLS {
		return nil, fmt.Errorf("%w: the server speaks only non-fixed newstyle negotiation", ErrTLSUnavailable)
	}
	if err := h.write(binary.BigEndian.AppendUint32(nil, cflags)); err != nil {
		return nil, err
	}
	n := &negotiated{rw: h.rw}
	return n, h.options(n, noZeroes, fixed)
}

// options runs the option haggling. n.rw is the connection to use even
// when it fails (TLS may be up by then).
func (h *handshaker) options(n *negotiated, noZeroes, fixed bool) error {
	if !fixed {
		// Only NBD_OPT_EXPORT_NAME is allowed without fixed newstyle.
		return h.exportName(n, noZeroes)
	}
	if h.o.TLS {
		if err := h.startTLS(n); err != nil {
			return err
		}
	}
	if !h.o.NoStructuredReplies {
		if err := h.structuredReply(n); err != nil {
			return err
		}
	}
	if n.structured {
		if err := h.setMetaContext(n); err != nil {
			return err
		}
	}
	ok, err := h.goOption(n)
	if err != nil || ok {
		return err
	}
	h.log.Debug("nbd server does not know NBD_OPT_GO; falling back to NBD_OPT_EXPORT_NAME")
	return h.exportName(n, noZeroes)
}

func (h *handshaker) write(b []byte) error {
	if _, err := h.rw.Write(b); err != nil {
		return fmt.Errorf("send handshake: %w", err)
	}
	return nil
}

func (h *handshaker) sendOption(opt uint32, data []byte) error {
	h.buf = appendOption(h.buf[:0], opt, data)
	if _, err := h.rw.Write(h.buf); err != nil {
		return fmt.Errorf("send %s: %w", optName(opt), err)
	}
	return nil
}

func (h *handshaker) refused(opt uint32, rep *optReply) error {
	return &OptionError{Option: opt, Reply: rep.typ, Export: h.o.Export, Message: rep.message()}
}

// startTLS upgrades the connection; TLS is then mandatory: a refusal
// fails the handshake (no downgrade).
func (h *handshaker) startTLS(n *negotiated) error {
	if err := h.sendOption(optStartTLS, nil); err != nil {
		return err
	}
	rep, err := readOptReply(h.rw, optStartTLS)
	if err != nil {
		return err
	}
	switch {
	case rep.typ == repAck:
	case rep.isError():
		return h.refused(optStartTLS, &rep)
	default:
		return protocolErrorf("%s reply to NBD_OPT_STARTTLS", repName(rep.typ))
	}
	if len(rep.data) != 0 {
		return protocolErrorf("NBD_REP_ACK with %d bytes of data", len(rep.data))
	}
	if h.upgrade == nil {
		return errors.New("TLS upgrade not available")
	}
	rw, err := h.upgrade()
	if err != nil {
		return err
	}
	h.rw, n.rw, n.tls = rw, rw, true
	h.log.Debug("nbd TLS established")
	return nil
}

// structuredReply asks for structured replies; a server that does not
// offer them is fine, one that wants TLS first or is shutting down is
// not.
func (h *handshaker) structuredReply(n *negotiated) error {
	if err := h.sendOption(optStructuredReply, nil); err != nil {
		return err
	}
	rep, err := readOptReply(h.rw, optStructuredReply)
	if err != nil {
		return err
	}
	switch {
	case rep.typ == repAck:
		if len(rep.data) != 0 {
			return protocolErrorf("NBD_REP_ACK with %d bytes of data", len(rep.data))
		}
		n.structured = true
	case rep.typ == repErrTLSReqd || rep.typ == repErrShutdown:
		return h.refused(optStructuredReply, &rep)
	case rep.isError():
		h.log.Debug("nbd structured replies refused", "reply", repName(rep.typ), "message", rep.message())
	default:
		return protocolErrorf("%s reply to NBD_OPT_STRUCTURED_REPLY", repName(rep.typ))
	}
	return nil
}

// setMetaContext selects base:allocation for block status. A server
// without metadata contexts is fine.
func (h *handshaker) setMetaContext(n *negotiated) error {
	if err := h.sendOption(optSetMetaContext, metaContextData(h.o.Export, metaBaseAllocation)); err != nil {
		return err
	}
	var id uint32
	found := false
	for range maxInfoReplies {
		rep, err := readOptReply(h.rw, optSetMetaContext)
		if err != nil {
			return err
		}
		switch {
		case rep.typ == repMetaContext:
			cid, name, err := parseMetaContext(rep.data)
			if err != nil {
				return err
			}
			if name != metaBaseAllocation {
				return protocolErrorf("server selected metadata context %q, not asked for", printable([]byte(name)))
			}
			if found {
				return protocolErrorf("server selected %s twice", metaBaseAllocation)
			}
			id, found = cid, true
		case rep.typ == repAck:
			n.metaID, n.haveMeta = id, found
			h.log.Debug("nbd metadata context", "base_allocation", found)
			return nil
		case rep.typ == repErrUnknown || rep.typ == repErrTLSReqd || rep.typ == repErrShutdown:
			return h.refused(optSetMetaContext, &rep)
		case rep.isError():
			h.log.Debug("nbd metadata contexts refused", "reply", repName(rep.typ), "message", rep.message())
			return nil
		default:
			return protocolErrorf("%s reply to NBD_OPT_SET_META_CONTEXT", repName(rep.typ))
		}
	}
	return protocolErrorf("more than %d replies to NBD_OPT_SET_META_CONTEXT", maxInfoReplies)
}

// goOption sends NBD_OPT_GO. It returns false, and no error, when the
// server does not know the option, so that the caller falls back to
// NBD_OPT_EXPORT_NAME.
func (h *handshaker) goOption(n *negotiated) (bool, error) {
	if err := h.sendOption(optGo, goData(h.o.Export, infoBlockSize)); err != nil {
		return false, err
	}
	var info exportInfo
	for range maxInfoReplies {
		rep, err := readOptReply(h.rw, optGo)
		if err != nil {
			return false, err
		}
		switch {
		case rep.typ == repInfo:
			if err := info.parseInfo(rep.data); err != nil {
				return false, err
			}
		case rep.typ == repAck:
			if len(rep.data) != 0 {
				return false, protocolErrorf("NBD_REP_ACK with %d bytes of data", len(rep.data))
			}
			if !info.haveExport {
				return false, protocolErrorf("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
			}
			n.info, n.viaGo = info, true
			return true, nil
		case rep.typ == repErrUnsup:
			return false, nil
		case rep.isError():
			return false, h.refused(optGo, &rep)
		default:
			return false, protocolErrorf("%s reply to NBD_OPT_GO", repName(rep.typ))
		}
	}
	return false, protocolErrorf("more than %d replies to NBD_OPT_GO", maxInfoReplies)
}

// exportName enters transmission the old way. The server cannot refuse
// with a message: it closes the connection instead.
func (h *handshaker) exportName(n *negotiated, noZeroes bool) error {
	if err := h.sendOption(optExportName, []byte(h.o.Export)); err != nil {
		return err
	}
	want := 10
	if !noZeroes {
		want += 124
	}
	b := make([]byte, want)
	if _, err := io.ReadFull(h.rw, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the server closed the connection on NBD_OPT_EXPORT_NAME %q (no such export, or it needs TLS)",
				ErrUnknownExport, h.o.Export)
		}
		return fmt.Errorf("read reply to NBD_OPT_EXPORT_NAME: %w", err)
	}
	size := binary.BigEndian.Uint64(b)
	if size > math.MaxInt64 {
		return protocolErrorf("export size %d out of range", size)
	}
	n.info = exportInfo{size: size, flags: binary.BigEndian.Uint16(b[8:]), haveExport: true}
	return nil
}
