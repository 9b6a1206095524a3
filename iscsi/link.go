package iscsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// readLoop receives every PDU of l and dispatches it.
func (s *Session) readLoop(l *link) {
	defer s.wg.Done()
	var err error
	for {
		var h bhs
		var n int
		n, err = l.pr.readHeader(&h)
		if err != nil {
			break
		}
		l.lastRecv.Store(time.Now().UnixNano())
		if err = s.handle(l, &h, n); err != nil {
			break
		}
		// Commands dispatched in place of finished ones.
		if l.due.Load() && l.due.Swap(false) {
			l.flush()
		}
	}
	select {
	case <-l.dead:
		err = l.deadErr
	default:
	}
	l.kill(err)
	s.connLost(l, err)
}

// handle processes one PDU whose header has been read; it reads the data
// segment of n bytes.
func (s *Session) handle(l *link, h *bhs, n int) error {
	op := h.opcode()
	if !h.hasSN() {
		return fmt.Errorf("%w: unexpected %s from target", ErrProtocol, opName(op))
	}
	// StatSN: consumed by PDUs that carry a status.
	switch {
	case op == opSCSIResp, op == opTextResp, op == opLogoutResp, op == opTaskResp, op == opAsync,
		op == opReject, op == opDataIn && h[1]&flagStatus != 0, op == opNOPIn && h.itt() != reservedTag:
		if sn := h.statSN(); snLessEq(l.expStatSN.Load(), sn) {
			l.expStatSN.Store(sn + 1)
		}
	}
	s.mu.Lock()
	s.updateWindowLocked(h.expCmdSN(), h.maxCmdSN())
	var t *task
	switch op {
	case opDataIn, opSCSIResp, opR2T:
		t = s.tasks[h.itt()]
		if t == nil || t.link != l {
			s.mu.Unlock()
			return fmt.Errorf("%w: %s for unknown task 0x%x", ErrProtocol, opName(op), h.itt())
		}
	}
	s.mu.Unlock()

	switch op {
	case opDataIn:
		return s.dataIn(l, t, h, n)
	case opSCSIResp:
		data, err := l.readData(n)
		if err != nil {
			return err
		}
		t.response, t.status = h[2], h[3]
		if len(data) >= 2 {
			sl := int(binary.BigEndian.Uint16(data))
			t.sense = data[2:min(len(data), 2+sl)]
		}
		s.mu.Lock()
		s.completeLocked(t, nil)
		s.mu.Unlock()
		return nil
	case opR2T:
		if err := l.pr.discard(n); err != nil {
			return err
		}
		off, length := int(h.u32(40)), int(h.u32(44))
		if t.read || length == 0 || off < 0 || off+length > len(t.buf) {
			return fmt.Errorf("%w: R2T for %d bytes at offset %d of a %d-byte write", ErrProtocol, length, off, len(t.buf))
		}
		l.send(appendDataOut(nil, t, h.ttt(), off, length, l.p.maxXmitData)...)
		return nil
	case opNOPIn:
		if err := l.pr.discard(n); err != nil {
			return err
		}
		if itt := h.itt(); itt != reservedTag {
			if itt == l.pingITT.Load() {
				l.pingITT.Store(0)
			}
			return nil
		}
		if h.ttt() != reservedTag {
			// The target pings us: answer with its TTT.
			s.mu.Lock()
			cmdSN := s.cmdSN
			s.mu.Unlock()
			var r bhs
			r[0] = opNOPOut | flagImm
			r[1] = flagFinal
			copy(r[8:16], h[8:16])
			r.setU32(16, reservedTag)
			r.setU32(20, h.ttt())
			r.setU32(24, cmdSN)
			l.send(outPDU{h: r})
		}
		return nil
	case opLogoutResp:
		if err := l.pr.discard(n); err != nil {
			return err
		}
		if h.itt() == l.logoutITT.Load() {
			close(l.logoutDone)
			return ErrClosed
		}
		return nil
	case opAsync:
		if err := l.pr.discard(n); err != nil {
			return err
		}
		switch ev := h[36]; ev {
		case 1, 2, 3:
			return fmt.Errorf("target asked to drop the connection (async event %d)", ev)
		default:
			s.log.Debug("iscsi async event ignored", "event", ev)
		}
		return nil
	case opReject:
		data, err := l.readData(n)
		if err != nil {
			return err
		}
		if len(data) < bhsLen {
			return fmt.Errorf("%w: target rejected a PDU (reason 0x%02x)", ErrProtocol, h[2])
		}
		var rh bhs
		copy(rh[:], data)
		s.mu.Lock()
		t := s.tasks[rh.itt()]
		if t != nil && t.link == l {
			s.completeLocked(t, fmt.Errorf("%s: target rejected %s (reason 0x%02x)", t.op, opName(rh.opcode()), h[2]))
		}
		s.mu.Unlock()
		if t == nil {
			return fmt.Errorf("%w: target rejected %s (reason 0x%02x)", ErrProtocol, opName(rh.opcode()), h[2])
		}
		return nil
	default: // Text, task management responses: not used by this initiator.
		return l.pr.discard(n)
	}
}

// dataIn receives one Data-In PDU straight into the task's buffer.
func (s *Session) dataIn(l *link, t *task, h *bhs, n int) error {
	off := int(h.u32(40))
	t.bufMu.Lock()
	var err error
	switch {
	case !t.read:
		err = fmt.Errorf("%w: Data-In for a write", ErrProtocol)
	case off != t.received || off+n > len(t.buf):
		err = fmt.Errorf("%w: Data-In of %d bytes at offset %d, expected offset %d of %d", ErrProtocol, n, off, t.received, len(t.buf))
	case t.abandoned.Load():
		err = l.pr.discard(n)
	default:
		err = l.pr.readData(t.buf[off : off+n])
		t.received += n
	}
	t.bufMu.Unlock()
	if err != nil {
		return err
	}
	if h[1]&flagStatus != 0 {
		t.status = h[3]
		s.mu.Lock()
		s.completeLocked(t, nil)
		s.mu.Unlock()
	}
	return nil
}

// link is a connection in full feature phase with its sender state.
type link struct {
	*conn
	sendMu  sync.Mutex
	sendQ   []outPDU
	spare   []outPDU
	writing bool // a goroutine is writing sendQ out (see write)
	// writers counts the goroutines writing sendQ out (at most one);
	// none starts once dead is closed, so after kill, writers.Wait
	// returns when nothing reads the tasks' buffers any more.
	writers sync.WaitGroup
	wake    chan struct{}
	// due: Session.pumpLocked queued commands that nobody has flushed yet.
	due atomic.Bool
	// writes counts the write commands in flight: while there are any,
	// the socket may be full of Data-Out the target has not read yet.
	writes atomic.Int32

	dead     chan struct{}
	deadOnce sync.Once
	deadErr  error

	lastRecv   atomic.Int64 // unix nanoseconds of the last PDU received
	pingITT    atomic.Uint32
	expStatSN  atomic.Uint32
	logoutITT  atomic.Uint32
	logoutDone chan struct{}
}

// outPDU is a PDU waiting to be sent; ExpStatSN is filled in when it is.
type outPDU struct {
	h    bhs
	data []byte
}

func (l *link) kill(err error) {
	l.deadOnce.Do(func() {
		if err == nil {
			err = errors.New("connection closed")
		}
		l.deadErr = err
		l.sendMu.Lock() // no writer starts after this (startWriting)
		close(l.dead)
		l.sendMu.Unlock()
		l.nc.Close()
	})
}

// startWritingLocked makes the caller the goroutine that writes sendQ out, if
// none is and the link is alive; with sendMu held. The caller runs write
// and then l.writers.Done.
func (l *link) startWritingLocked() bool {
	if l.writing {
		return false
	}
	select {
	case <-l.dead:
		return false
	default:
	}
	l.writing = true
	l.writers.Add(1)
	return true
}

// quiesce waits, after kill, until no goroutine writes the link's queued
// PDUs any more: the data of write commands then belongs to their callers
// again, and the commands may complete (reissued or failed).
func (l *link) quiesce() { l.writers.Wait() }

func (l *link) readData(n int) ([]byte, error) {
	b := make([]byte, n)
	return b, l.pr.readData(b)
}

func (l *link) send(pdus ...outPDU) {
	l.sendMu.Lock()
	l.sendQ = append(l.sendQ, pdus...)
	l.sendMu.Unlock()
	l.kick()
}

// kick wakes the sender.
func (l *link) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// flush sends the queued PDUs. When no write command is in flight, and
// so nothing can fill the socket's buffer, the calling goroutine writes
// them itself unless another goroutine is writing already (which then
// writes them too): a command costs no wake-up of the sender goroutine.
// Otherwise the sender goroutine writes them, so that the reader of the
// connection never blocks in a write.
func (l *link) flush() {
	if l.writes.Load() > 0 {
		l.kick()
		return
	}
	l.sendMu.Lock()
	if !l.startWritingLocked() {
		l.sendMu.Unlock()
		return
	}
	l.sendMu.Unlock()
	l.write(true)
	l.writers.Done()
}

// sendLoop writes PDUs queued by send, and by flush while write commands
// are in flight.
func (l *link) sendLoop(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-l.dead:
			return
		case <-l.wake:
		}
		l.sendMu.Lock()
		if !l.startWritingLocked() {
			l.sendMu.Unlock()
			continue
		}
		l.sendMu.Unlock()
		ok := l.write(false)
		l.writers.Done()
		if !ok {
			return
		}
	}
}

// write is run by the goroutine that set l.writing: it writes queued PDUs,
// flushing when the queue runs dry so that PDUs queued together go out in
// few writes, then clears l.writing. Inline (called by flush), it leaves
// PDUs that carry data, and everything once a write command is in flight,
// to the sender goroutine. It reports false when the connection failed.
func (l *link) write(inline bool) bool {
	for {
		l.sendMu.Lock()
		q := l.sendQ
		if len(q) == 0 || inline && (l.writes.Load() > 0 || hasData(q)) {
			if l.bw.Buffered() > 0 {
				l.sendMu.Unlock()
				if err := l.bw.Flush(); err != nil {
					l.kill(fmt.Errorf("send: %w", err))
					return false
				}
				continue
			}
			l.writing = false
			l.sendMu.Unlock()
			if len(q) > 0 {
				l.kick()
			}
			return true
		}
		l.sendQ, l.spare = l.spare[:0], nil
		l.sendMu.Unlock()
		for i := range q {
			q[i].h.setU32(28, l.expStatSN.Load())
			if err := writePDU(l.bw, &q[i].h, q[i].data, l.p.headerDigest, l.p.dataDigest); err != nil {
				l.kill(fmt.Errorf("send %s: %w", opName(q[i].h.opcode()), err))
				return false
			}
			q[i].data = nil
		}
		l.sendMu.Lock()
		l.spare = q[:0]
		l.sendMu.Unlock()
	}
}

func hasData(q []outPDU) bool {
	for i := range q {
		if len(q[i].data) > 0 {
			return true
		}
	}
	return false
}
