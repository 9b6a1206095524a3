package nbd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"
)

// request is one command in flight, from its submission to its complete
// reply.
type request struct {
	cookie uint64
	cmd    uint16
	flags  uint16
	off    uint64
	length uint32
	buf    []byte // where a read's data goes; len(buf) == length

	// mu orders the receiver's writes into buf against abandon: once
	// abandoned is set, buf is never touched again, so a caller that
	// gave up (context cancelled) may reuse its buffer.
	mu        sync.Mutex
	abandoned bool

	// Written by the receiver only.
	covered   intervals      // structured read: byte ranges described so far, relative to off
	status    []statusExtent // block status descriptors
	gotStatus bool
	err       error // first error the server reported for this request

	done  chan struct{} // closed once result is set
	final error
}

type statusExtent struct {
	length uint32
	flags  uint32
}

func newRequest(cmd uint16, off uint64, length uint32, buf []byte) *request {
	return &request{cmd: cmd, off: off, length: length, buf: buf, done: make(chan struct{})}
}

// abandon stops the receiver from writing into the request's buffer.
func (r *request) abandon() {
	r.mu.Lock()
	r.abandoned = true
	r.mu.Unlock()
}

// fail records the first error of a request.
func (r *request) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *request) cmdError(errno uint32, msg string, errOff int64) *CommandError {
	return &CommandError{Command: r.cmd, Offset: int64(r.off), Length: r.length, Errno: errno, Message: msg, ErrorOffset: errOff}
}

// receiver decodes the server's replies in the transmission phase: simple
// replies and structured reply chunks, each matched to its request by
// cookie. It is strict: anything that breaks the protocol's framing, or
// that it cannot tell apart from a broken framing (bad magic, an unknown
// cookie, a length out of range, data outside the request, overlapping
// chunks), is an error that ends the connection. Errors the server
// reports for a command end only that command.
type receiver struct {
	r          *bufio.Reader
	structured bool
	haveMeta   bool
	metaID     uint32
	// lookup finds the request in flight with a cookie, or nil.
	lookup func(cookie uint64) *request
	// progress, when set, is called as data arrives (to extend the read
	// deadline while a long reply streams in).
	progress func()
	scratch  []byte
	hdr      [chunkHeaderLen]byte
}

// scratchSize is the piece in which data is received and then copied
// into the caller's buffer, under the request's lock.
const scratchSize = 256 << 10

// next reads one reply message (a simple reply, or one chunk of a
// structured reply) and applies it to its request. It returns that
// request and whether its reply is complete. An error means the stream
// can no longer be decoded.
func (rc *receiver) next() (*request, bool, error) {
	if _, err := io.ReadFull(rc.r, rc.hdr[:4]); err != nil {
		return nil, false, err // a clean io.EOF here is the server hanging up
	}
	switch m := binary.BigEndian.Uint32(rc.hdr[:4]); m {
	case magicSimple:
		return rc.simple()
	case magicChunk:
		return rc.chunk()
	case magicExtended:
		return nil, false, protocolErrorf("extended-header reply, not negotiated")
	default:
		return nil, false, protocolErrorf("reply magic %#08x", m)
	}
}

func (rc *receiver) readFull(b []byte) error {
	_, err := io.ReadFull(rc.r, b)
	return unexpectedEOF(err)
}

func (rc *receiver) find(cookie uint64) (*request, error) {
	req := rc.lookup(cookie)
	if req == nil {
		return nil, protocolErrorf("reply to unknown cookie %#x", cookie)
	}
	return req, nil
}

func (rc *receiver) simple() (*request, bool, error) {
	h := rc.hdr[4:simpleHeaderLen]
	if err := rc.readFull(h); err != nil {
		return nil, false, err
	}
	errno := binary.BigEndian.Uint32(h)
	req, err := rc.find(binary.BigEndian.Uint64(h[4:]))
	if err != nil {
		return nil, false, err
	}
	if errno != 0 {
		req.fail(req.cmdError(errno, "", -1))
		return req, true, nil
	}
	if req.cmd == cmdRead {
		if rc.structured {
			return nil, false, protocolErrorf("simple reply with data to %s although structured replies were negotiated", cmdName(req.cmd))
		}
		if err := rc.receive(req, 0, int(req.length)); err != nil {
			return nil, false, err
		}
	}
	if req.cmd == cmdBlockStatus {
		return nil, false, protocolErrorf("simple reply without error to %s", cmdName(req.cmd))
	}
	return req, true, nil
}

func (rc *receiver) chunk() (*request, bool, error) {
	h := rc.hdr[4:chunkHeaderLen]
	if err := rc.readFull(h); err != nil {
		return nil, false, err
	}
	flags := binary.BigEndian.Uint16(h)
	typ := binary.BigEndian.Uint16(h[2:])
	length := binary.BigEndian.Uint32(h[12:])
	req, err := rc.find(binary.BigEndian.Uint64(h[4:]))
	if err != nil {
		return nil, false, err
	}
	if !rc.structured {
		return nil, false, protocolErrorf("structured reply chunk, not negotiated")
	}
	done := flags&chunkFlagDone != 0
	switch {
	case typ == chunkNone:
		if length != 0 || !done {
			return nil, false, protocolErrorf("%s with length %d, done %v", chunkName(typ), length, done)
		}
	case typ == chunkOffsetData:
		err = rc.offsetData(req, length)
	case typ == chunkOffsetHole:
		err = rc.offsetHole(req, length)
	case typ == chunkBlockStatus:
		err = rc.blockStatus(req, length)
	case typ&chunkFlagError != 0:
		err = rc.errorChunk(req, typ, length)
	default:
		err = protocolErrorf("unknown %s", chunkName(typ))
	}
	if err != nil {
		return nil, false, err
	}
	if done {
		rc.finish(req)
	}
	return req, done, nil
}

// finish checks that a successful structured reply said all it had to.
func (rc *receiver) finish(req *request) {
	if req.err != nil {
		return
	}
	switch req.cmd {
	case cmdRead:
		if got := req.covered.total(); got != uint64(req.length) {
			req.fail(protocolErrorf("%s of %d bytes at offset %d answered with %d bytes", cmdName(req.cmd), req.length, req.off, got))
		}
	case cmdBlockStatus:
		if !req.gotStatus {
			req.fail(protocolErrorf("%s answered without status", cmdName(req.cmd)))
		}
	}
}

// within checks that [off, off+n) lies inside the request and returns its
// start relative to the request.
func within(req *request, off uint64, n uint64, what string) (uint64, error) {
	if off < req.off || off-req.off > uint64(req.length) || n > uint64(req.length)-(off-req.off) {
		return 0, protocolErrorf("%s [%d, +%d) outside request [%d, +%d)", what, off, n, req.off, req.length)
	}
	return off - req.off, nil
}

func (rc *receiver) offsetData(req *request, length uint32) error {
	if req.cmd != cmdRead {
		return protocolErrorf("%s in reply to %s", chunkName(chunkOffsetData), cmdName(req.cmd))
	}
	if length < 9 || length-8 > req.length {
		return protocolErrorf("%s of length %d for a read of %d bytes", chunkName(chunkOffsetData), length, req.length)
	}
	var b [8]byte
	if err := rc.readFull(b[:]); err != nil {
		return err
	}
	n := uint64(length - 8)
	rel, err := within(req, binary.BigEndian.Uint64(b[:]), n, "data")
	if err != nil {
		return err
	}
	if err := req.covered.add(rel, rel+n); err != nil {
		return err
	}
	return rc.receive(req, int(rel), int(n))
}

func (rc *receiver) offsetHole(req *request, length uint32) error {
	if req.cmd != cmdRead {
		return protocolErrorf("%s in reply to %s", chunkName(chunkOffsetHole), cmdName(req.cmd))
	}
	if length != 12 {
		return protocolErrorf("%s of length %d, want 12", chunkName(chunkOffsetHole), length)
	}
	var b [12]byte
	if err := rc.readFull(b[:]); err != nil {
		return err
	}
	n := uint64(binary.BigEndian.Uint32(b[8:]))
	if n == 0 {
		return protocolErrorf("hole of 0 bytes")
	}
	rel, err := within(req, binary.BigEndian.Uint64(b[:]), n, "hole")
	if err != nil {
		return err
	}
	if err := req.covered.add(rel, rel+n); err != nil {
		return err
	}
	req.mu.Lock()
	if !req.abandoned {
		clear(req.buf[rel : rel+n])
	}
	req.mu.Unlock()
	return nil
}

func (rc *receiver) blockStatus(req *request, length uint32) error {
	if req.cmd != cmdBlockStatus {
		return protocolErrorf("%s in reply to %s", chunkName(chunkBlockStatus), cmdName(req.cmd))
	}
	if length < 12 || (length-4)%8 != 0 || length > maxStatusChunk {
		return protocolErrorf("%s of length %d", chunkName(chunkBlockStatus), length)
	}
	// Descriptors are read one by one: a chunk of up to 8 MiB is not
	// buffered whole.
	var b [8]byte
	if err := rc.readFull(b[:4]); err != nil {
		return err
	}
	if id := binary.BigEndian.Uint32(b[:4]); !rc.haveMeta || id != rc.metaID {
		return protocolErrorf("block status for metadata context %d, not selected", id)
	}
	if req.gotStatus {
		return protocolErrorf("two block status chunks for one context")
	}
	req.gotStatus = true
	var sum uint64
	for range (length - 4) / 8 {
		if err := rc.readFull(b[:]); err != nil {
			return err
		}
		e := statusExtent{length: binary.BigEndian.Uint32(b[:]), flags: binary.BigEndian.Uint32(b[4:])}
		if e.length == 0 {
			return protocolErrorf("block status extent of 0 bytes")
		}
		if sum >= uint64(req.length) {
			return protocolErrorf("block status extents go past the %d bytes asked for", req.length)
		}
		sum += uint64(e.length)
		req.status = append(req.status, e)
	}
	if req.flags&cmdFlagReqOne != 0 && (len(req.status) != 1 || sum > uint64(req.length)) {
		return protocolErrorf("block status with NBD_CMD_FLAG_REQ_ONE answered with %d extents, %d bytes", len(req.status), sum)
	}
	return nil
}

// maxErrorChunk bounds an error chunk: the message is at most 4096 bytes
// and the structured fields of the known types take 8 more; unknown
// error types get some room for fields of their own.
const maxErrorChunk = 6 + maxStringLen + 1024

func (rc *receiver) errorChunk(req *request, typ uint16, length uint32) error {
	if length < 6 || length > maxErrorChunk {
		return protocolErrorf("%s of length %d", chunkName(typ), length)
	}
	b := make([]byte, length)
	if err := rc.readFull(b); err != nil {
		return err
	}
	errno := binary.BigEndian.Uint32(b)
	mlen := uint32(binary.BigEndian.Uint16(b[4:]))
	if mlen > length-6 {
		return protocolErrorf("%s message of %d bytes in a chunk of %d", chunkName(typ), mlen, length)
	}
	if errno == 0 {
		return protocolErrorf("%s with error value 0", chunkName(typ))
	}
	msg := printable(b[6 : 6+mlen])
	rest := b[6+mlen:]
	errOff := int64(-1)
	switch typ {
	case chunkError:
		if len(rest) != 0 {
			return protocolErrorf("%s with %d bytes after the message", chunkName(typ), len(rest))
		}
	case chunkErrorOffset:
		if len(rest) != 8 {
			return protocolErrorf("%s with %d bytes after the message, want 8", chunkName(typ), len(rest))
		}
		off := binary.BigEndian.Uint64(rest)
		if _, err := within(req, off, 0, "error offset"); err != nil || (req.length > 0 && off == req.off+uint64(req.length)) {
			return protocolErrorf("error offset %d outside request [%d, +%d)", off, req.off, req.length)
		}
		errOff = int64(off)
	default:
		// An unknown error type: the request failed; the rest is
		// fields this client does not know.
		if msg != "" {
			msg += " "
		}
		msg += fmt.Sprintf("(%s)", chunkName(typ))
	}
	req.fail(req.cmdError(errno, msg, errOff))
	return nil
}

// receive reads n bytes of a read's data into req.buf[at:], through the
// scratch buffer so that an abandoned request's buffer is never written.
func (rc *receiver) receive(req *request, at, n int) error {
	if rc.scratch == nil {
		rc.scratch = make([]byte, scratchSize)
	}
	for n > 0 {
		k := min(n, len(rc.scratch))
		if err := rc.readFull(rc.scratch[:k]); err != nil {
			return err
		}
		req.mu.Lock()
		if !req.abandoned {
			copy(req.buf[at:at+k], rc.scratch[:k])
		}
		req.mu.Unlock()
		at += k
		n -= k
		if rc.progress != nil {
			rc.progress()
		}
	}
	return nil
}

// intervals is a set of disjoint half-open byte ranges, kept sorted and
// merged. Chunks usually arrive in order, so adding at the end is O(1).
type intervals struct {
	r [][2]uint64
}

// add inserts [lo, hi) and fails if it overlaps what is there.
func (s *intervals) add(lo, hi uint64) error {
	if lo >= hi {
		return nil
	}
	n := len(s.r)
	if n == 0 || lo >= s.r[n-1][1] {
		if n > 0 && lo == s.r[n-1][1] {
			s.r[n-1][1] = hi
		} else {
			s.r = append(s.r, [2]uint64{lo, hi})
		}
		return nil
	}
	i := sort.Search(n, func(i int) bool { return s.r[i][1] > lo }) // first range ending after lo
	if s.r[i][0] < hi {
		return protocolErrorf("chunk [%d, %d) overlaps [%d, %d) of the same reply", lo, hi, s.r[i][0], s.r[i][1])
	}
	// Insert before i, merging with neighbours that touch.
	switch {
	case i > 0 && s.r[i-1][1] == lo && s.r[i][0] == hi:
		s.r[i-1][1] = s.r[i][1]
		s.r = append(s.r[:i], s.r[i+1:]...)
	case i > 0 && s.r[i-1][1] == lo:
		s.r[i-1][1] = hi
	case s.r[i][0] == hi:
		s.r[i][0] = lo
	default:
		s.r = append(s.r, [2]uint64{})
		copy(s.r[i+1:], s.r[i:])
		s.r[i] = [2]uint64{lo, hi}
	}
	return nil
}

func (s *intervals) total() uint64 {
	var t uint64
	for _, r := range s.r {
		t += r[1] - r[0]
	}
	return t
}
