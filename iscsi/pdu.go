package iscsi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Opcodes (RFC 7143 section 11.1.1).
const (
	opNOPOut     = 0x00
	opSCSICmd    = 0x01
	opTaskMgmt   = 0x02
	opLoginReq   = 0x03
	opTextReq    = 0x04
	opDataOut    = 0x05
	opLogoutReq  = 0x06
	opNOPIn      = 0x20
	opSCSIResp   = 0x21
	opTaskResp   = 0x22
	opLoginResp  = 0x23
	opTextResp   = 0x24
	opDataIn     = 0x25
	opLogoutResp = 0x26
	opR2T        = 0x31
	opAsync      = 0x32
	opReject     = 0x3f
)

const (
	bhsLen = 48
	// reservedTag is the "no task" tag (0xffffffff) of ITT and TTT fields.
	reservedTag = 0xffffffff
	// maxDataSegment bounds any data segment this package accepts: the
	// field is 24 bits wide.
	maxDataSegment = 1<<24 - 1
)

// Flag bits of byte 1.
const (
	flagFinal    = 0x80
	flagContinue = 0x40 // login, text
	flagRead     = 0x40 // SCSI command
	flagWrite    = 0x20 // SCSI command
	flagOverflow = 0x04 // SCSI response, Data-In
	flagUnder    = 0x02 // SCSI response, Data-In
	flagStatus   = 0x01 // Data-In
	flagImm      = 0x40 // byte 0
	attrSimple   = 0x01 // task attribute SIMPLE
)

// ErrProtocol reports a PDU that breaks RFC 7143 (bad length, unknown tag,
// digest mismatch, ...). The connection that carried it is dropped.
var ErrProtocol = errors.New("iscsi protocol error")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// bhs is a basic header segment. The accessors name the fields shared by
// most opcodes; opcode-specific words are read with u32.
type bhs [bhsLen]byte

func (h *bhs) opcode() uint8      { return h[0] & 0x3f }
func (h *bhs) totalAHSLen() int   { return int(h[4]) * 4 }
func (h *bhs) itt() uint32        { return h.u32(16) }
func (h *bhs) ttt() uint32        { return h.u32(20) }
func (h *bhs) statSN() uint32     { return h.u32(24) }
func (h *bhs) expCmdSN() uint32   { return h.u32(28) }
func (h *bhs) maxCmdSN() uint32   { return h.u32(32) }
func (h *bhs) u32(off int) uint32 { return binary.BigEndian.Uint32(h[off:]) }
func (h *bhs) setU32(off int, v uint32) {
	binary.BigEndian.PutUint32(h[off:], v)
}

func (h *bhs) dataLen() int {
	return int(h[5])<<16 | int(h[6])<<8 | int(h[7])
}

func (h *bhs) setDataLen(n int) {
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
}

// hasSN reports whether the opcode carries StatSN, ExpCmdSN and MaxCmdSN
// (every target PDU does; Data-In carries StatSN only with the S bit).
func (h *bhs) hasSN() bool {
	switch h.opcode() {
	case opNOPIn, opSCSIResp, opTaskResp, opLoginResp, opTextResp, opDataIn,
		opLogoutResp, opR2T, opAsync, opReject:
		return true
	}
	return false
}

func opName(op uint8) string {
	switch op {
	case opNOPOut:
		return "NOP-Out"
	case opSCSICmd:
		return "SCSI Command"
	case opTaskMgmt:
		return "Task Management Request"
	case opLoginReq:
		return "Login Request"
	case opTextReq:
		return "Text Request"
	case opDataOut:
		return "SCSI Data-Out"
	case opLogoutReq:
		return "Logout Request"
	case opNOPIn:
		return "NOP-In"
	case opSCSIResp:
		return "SCSI Response"
	case opTaskResp:
		return "Task Management Response"
	case opLoginResp:
		return "Login Response"
	case opTextResp:
		return "Text Response"
	case opDataIn:
		return "SCSI Data-In"
	case opLogoutResp:
		return "Logout Response"
	case opR2T:
		return "R2T"
	case opAsync:
		return "Asynchronous Message"
	case opReject:
		return "Reject"
	}
	return fmt.Sprintf("opcode 0x%02x", op)
}

func pad4(n int) int { return (4 - n%4) % 4 }

// pduReader reads PDUs from a connection. A header is read first
// (readHeader) so that the caller can choose where the data segment goes
// (readData): Data-In lands straight in the buffer of the task it belongs
// to.
type pduReader struct {
	r            *bufio.Reader
	headerDigest bool
	dataDigest   bool
	// maxData bounds the data segment length (our MaxRecvDataSegmentLength
	// after login; larger during login, when the limit is not yet known).
	maxData int
	scratch [bhsLen + 4]byte
	ahs     []byte
}

// readHeader reads one BHS with its AHS and header digest into h and
// returns the length of the data segment that follows. The AHS is kept in
// pr.ahs until the next call (the opcodes this initiator receives carry
// none that it needs).
func (pr *pduReader) readHeader(h *bhs) (int, error) {
	if _, err := io.ReadFull(pr.r, h[:]); err != nil {
		return 0, err
	}
	ahsLen := h.totalAHSLen()
	pr.ahs = pr.ahs[:0]
	if ahsLen > 0 {
		if cap(pr.ahs) < ahsLen {
			pr.ahs = make([]byte, ahsLen)
		}
		pr.ahs = pr.ahs[:ahsLen]
		if _, err := io.ReadFull(pr.r, pr.ahs); err != nil {
			return 0, unexpectedEOF(err)
		}
	}
	if pr.headerDigest {
		if _, err := io.ReadFull(pr.r, pr.scratch[:4]); err != nil {
			return 0, unexpectedEOF(err)
		}
		sum := crc32.Update(0, castagnoli, h[:])
		sum = crc32.Update(sum, castagnoli, pr.ahs)
		if got := binary.LittleEndian.Uint32(pr.scratch[:4]); got != sum {
			return 0, fmt.Errorf("%w: header digest mismatch in %s (got %08x, want %08x)",
				ErrProtocol, opName(h.opcode()), got, sum)
		}
	}
	n := h.dataLen()
	if n > pr.maxData {
		return 0, fmt.Errorf("%w: %s data segment of %d bytes exceeds limit %d",
			ErrProtocol, opName(h.opcode()), n, pr.maxData)
	}
	return n, nil
}

// readData reads the data segment announced by the last header, its
// padding and its digest. dst must be exactly as long as the segment.
func (pr *pduReader) readData(dst []byte) error {
	if len(dst) == 0 {
		return nil
	}
	if _, err := io.ReadFull(pr.r, dst); err != nil {
		return unexpectedEOF(err)
	}
	p := pad4(len(dst))
	need := p
	if pr.dataDigest {
		need += 4
	}
	if need == 0 {
		return nil
	}
	tail := pr.scratch[:need]
	if _, err := io.ReadFull(pr.r, tail); err != nil {
		return unexpectedEOF(err)
	}
	if pr.dataDigest {
		sum := crc32.Update(0, castagnoli, dst)
		sum = crc32.Update(sum, castagnoli, tail[:p])
		if got := binary.LittleEndian.Uint32(tail[p:]); got != sum {
			return fmt.Errorf("%w: data digest mismatch (got %08x, want %08x)", ErrProtocol, got, sum)
		}
	}
	return nil
}

// discard reads and drops a data segment of n bytes (checking its digest).
func (pr *pduReader) discard(n int) error {
	var buf [4096]byte
	sum := uint32(0)
	total := n + pad4(n)
	for left := total; left > 0; {
		c := min(left, len(buf))
		if _, err := io.ReadFull(pr.r, buf[:c]); err != nil {
			return unexpectedEOF(err)
		}
		sum = crc32.Update(sum, castagnoli, buf[:c])
		left -= c
	}
	if pr.dataDigest && n > 0 {
		if _, err := io.ReadFull(pr.r, pr.scratch[:4]); err != nil {
			return unexpectedEOF(err)
		}
		if got := binary.LittleEndian.Uint32(pr.scratch[:4]); got != sum {
			return fmt.Errorf("%w: data digest mismatch (got %08x, want %08x)", ErrProtocol, got, sum)
		}
	}
	return nil
}

// readPDU reads a whole PDU, allocating its data segment.
func (pr *pduReader) readPDU(h *bhs) ([]byte, error) {
	n, err := pr.readHeader(h)
	if err != nil {
		return nil, err
	}
	data := make([]byte, n)
	if err := pr.readData(data); err != nil {
		return nil, err
	}
	return data, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

var zeroPad [4]byte

// writePDU writes one PDU (no AHS) to w: header, header digest, data,
// padding, data digest. It sets the data segment length in h.
func writePDU(w *bufio.Writer, h *bhs, data []byte, headerDigest, dataDigest bool) error {
	h[4] = 0
	h.setDataLen(len(data))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	var d [4]byte
	if headerDigest {
		binary.LittleEndian.PutUint32(d[:], crc32.Checksum(h[:], castagnoli))
		if _, err := w.Write(d[:]); err != nil {
			return err
		}
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	p := pad4(len(data))
	if p > 0 {
		if _, err := w.Write(zeroPad[:p]); err != nil {
			return err
		}
	}
	if dataDigest {
		sum := crc32.Update(0, castagnoli, data)
		sum = crc32.Update(sum, castagnoli, zeroPad[:p])
		binary.LittleEndian.PutUint32(d[:], sum)
		if _, err := w.Write(d[:]); err != nil {
			return err
		}
	}
	return nil
}

// Serial number arithmetic (RFC 1982, 32 bits) for CmdSN and StatSN.
func snLess(a, b uint32) bool { return a != b && int32(a-b) < 0 }

func snLessEq(a, b uint32) bool { return a == b || int32(a-b) < 0 }
