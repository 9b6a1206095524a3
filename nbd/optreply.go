package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"unicode/utf8"
)

// appendOption appends an option request: IHAVEOPT, the option, the
// length of its data and the data.
func appendOption(b []byte, opt uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// goData is the data of NBD_OPT_GO and NBD_OPT_INFO: the export name and
// the information requests.
func goData(export string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// metaContextData is the data of NBD_OPT_SET_META_CONTEXT and
// NBD_OPT_LIST_META_CONTEXT: the export name and the queries.
func metaContextData(export string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// optReply is one reply of the server to an option.
type optReply struct {
	typ  uint32
	data []byte
}

func (r *optReply) isError() bool { return r.typ&repFlagError != 0 }

// message returns the error message an error reply carries, made
// printable.
func (r *optReply) message() string {
	return printable(r.data)
}

// readOptReply reads one option reply to opt. The magic, the option it
// answers and its length are checked.
func readOptReply(r io.Reader, opt uint32) (optReply, error) {
	var h [optHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return optReply{}, fmt.Errorf("read reply to %s: %w", optName(opt), unexpectedEOF(err))
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOptReply {
		return optReply{}, protocolErrorf("reply to %s has magic %#x, want %#x", optName(opt), m, uint64(magicOptReply))
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		return optReply{}, protocolErrorf("reply to %s names %s", optName(opt), optName(o))
	}
	rep := optReply{typ: binary.BigEndian.Uint32(h[12:])}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptionReplyLength {
		return optReply{}, protocolErrorf("%s reply to %s of %d bytes (at most %d)", repName(rep.typ), optName(opt), n, maxOptionReplyLength)
	}
	if n > 0 {
		rep.data = make([]byte, n)
		if _, err := io.ReadFull(r, rep.data); err != nil {
			return optReply{}, fmt.Errorf("read %s reply to %s: %w", repName(rep.typ), optName(opt), unexpectedEOF(err))
		}
	}
	return rep, nil
}

// exportInfo is what NBD_REP_INFO replies (or NBD_OPT_EXPORT_NAME) told
// about an export.
type exportInfo struct {
	size          uint64
	flags         uint16
	haveExport    bool
	minBlock      uint32
	prefBlock     uint32
	maxPayload    uint32
	haveBlockSize bool
	name          string
	haveName      bool
	description   string
}

// parseInfo applies the data of one NBD_REP_INFO reply. Unknown
// information types are ignored, as proto.md asks.
func (e *exportInfo) parseInfo(data []byte) error {
	if len(data) < 2 {
		return protocolErrorf("NBD_REP_INFO of %d bytes", len(data))
	}
	typ := binary.BigEndian.Uint16(data)
	switch typ {
	case infoExport:
		if len(data) != 12 {
			return protocolErrorf("NBD_INFO_EXPORT of %d bytes, want 12", len(data))
		}
		e.size = binary.BigEndian.Uint64(data[2:])
		e.flags = binary.BigEndian.Uint16(data[10:])
		if e.size > math.MaxInt64 {
			return protocolErrorf("export size %d out of range", e.size)
		}
		e.haveExport = true
	case infoBlockSize:
		if len(data) != 14 {
			return protocolErrorf("NBD_INFO_BLOCK_SIZE of %d bytes, want 14", len(data))
		}
		mn := binary.BigEndian.Uint32(data[2:])
		pref := binary.BigEndian.Uint32(data[6:])
		mx := binary.BigEndian.Uint32(data[10:])
		if err := checkBlockSizes(mn, mx); err != nil {
			return err
		}
		e.minBlock, e.prefBlock, e.maxPayload, e.haveBlockSize = mn, pref, mx, true
	case infoName:
		if len(data)-2 > maxStringLen {
			return protocolErrorf("NBD_INFO_NAME of %d bytes", len(data)-2)
		}
		e.name, e.haveName = string(data[2:]), true
	case infoDescription:
		if len(data)-2 > maxStringLen {
			return protocolErrorf("NBD_INFO_DESCRIPTION of %d bytes", len(data)-2)
		}
		e.description = printable(data[2:])
	}
	return nil
}

// checkBlockSizes applies proto.md's size constraints to what this
// client relies on: the minimum is a power of two of at most 64 KiB (every
// request is aligned to it) and the maximum payload is no smaller than
// it. A preferred size that breaks the rules is only a hint, so it is
// tolerated (Info reports it as sent).
func checkBlockSizes(mn, mx uint32) error {
	switch {
	case mn == 0 || bits.OnesCount32(mn) != 1 || mn > maxMinBlock:
		return protocolErrorf("minimum block size %d is not a power of two up to 64 KiB", mn)
	case mx < mn:
		return protocolErrorf("maximum payload %d is smaller than the minimum block size %d", mx, mn)
	}
	return nil
}

// parseMetaContext decodes an NBD_REP_META_CONTEXT reply.
func parseMetaContext(data []byte) (id uint32, name string, err error) {
	if len(data) < 5 || len(data)-4 > maxStringLen {
		return 0, "", protocolErrorf("NBD_REP_META_CONTEXT of %d bytes", len(data))
	}
	return binary.BigEndian.Uint32(data), string(data[4:]), nil
}

// printable makes a server's string safe to show: invalid UTF-8 and
// control characters are replaced, and it is cut at maxStringLen.
func printable(b []byte) string {
	if len(b) > maxStringLen {
		b = b[:maxStringLen]
	}
	out := make([]rune, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// unexpectedEOF turns a clean EOF in the middle of a message exchange
// into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
