package iscsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrSessionFailed reports a session whose connection was lost and could
// not be re-established within Options.RecoveryTimeout. Every outstanding
// and later command fails with an error wrapping it.
var ErrSessionFailed = errors.New("iscsi session failed")

// ErrClosed reports a command on a closed session.
var ErrClosed = errors.New("iscsi session closed")

// Session is a logged-in session with one target over one TCP
// connection. Its methods are safe for concurrent use. A lost connection is
// recovered by logging in again and reissuing the commands that had not
// completed (see the package documentation).
type Session struct {
	o    Options
	isid [6]byte
	log  *slog.Logger

	closeCtx    context.Context // cancelled by Close: stops recovery
	closeCancel context.CancelFunc
	wg          sync.WaitGroup // goroutines of links and recovery

	// portal is the login portal (host:port), updated by permanent
	// redirects. Only the goroutine logging in touches it.
	portal string

	mu         sync.Mutex
	link       *link // nil while recovering
	cmdSN      uint32
	expCmdSN   uint32
	maxCmdSN   uint32
	nextTag    uint32
	tasks      map[uint32]*task // dispatched and unfinished, by ITT: at most QueueDepth
	queue      []*task          // waiting for a connection, the CmdSN window or QueueDepth
	failed     error
	closed     bool
	reconnects int
}

// SessionInfo describes a session's connection and negotiated parameters.
type SessionInfo struct {
	TargetIQN   string
	TargetAlias string
	// Portal is the address the session is connected to, which differs
	// from Options.Portal after a login redirect.
	Portal                   string
	HeaderDigest, DataDigest bool
	MaxRecvDataSegmentLength int // what the target may send us
	MaxXmitDataSegmentLength int // what we may send the target
	MaxBurstLength           int
	FirstBurstLength         int
	ImmediateData            bool
	InitialR2T               bool
	// Reconnects counts the connections re-established after a failure.
	Reconnects int
}

// Dial logs in to o.TargetIQN at o.Portal (following login redirects)
// and returns the session.
func Dial(ctx context.Context, o Options) (*Session, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.TargetIQN == "" {
		return nil, errors.New("iscsi options: TargetIQN is required")
	}
	o = o.withDefaults()
	portal, err := portalAddr(o.Portal)
	if err != nil {
		return nil, err
	}
	s := &Session{
		o:      o,
		isid:   newISID(),
		log:    o.Logger.With("target", o.TargetIQN),
		portal: portal,
		tasks:  map[uint32]*task{},
	}
	s.closeCtx, s.closeCancel = context.WithCancel(context.Background())
	l, err := s.login(ctx)
	if err != nil {
		s.closeCancel()
		return nil, err
	}
	s.mu.Lock()
	s.installLocked(l)
	s.mu.Unlock()
	s.log.Debug("iscsi session logged in", "portal", l.portal, "params", fmt.Sprintf("%+v", l.p))
	return s, nil
}

// Info returns the session's current connection parameters.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	si := SessionInfo{TargetIQN: s.o.TargetIQN, Reconnects: s.reconnects}
	if l := s.link; l != nil {
		si.TargetAlias = l.alias
		si.Portal = l.portal
		si.HeaderDigest, si.DataDigest = l.p.headerDigest, l.p.dataDigest
		si.MaxRecvDataSegmentLength = l.p.maxRecvData
		si.MaxXmitDataSegmentLength = l.p.maxXmitData
		si.MaxBurstLength, si.FirstBurstLength = l.p.maxBurst, l.p.firstBurst
		si.ImmediateData, si.InitialR2T = l.p.immediateData, l.p.initialR2T
	}
	return si
}

// login opens a connection in full feature phase.
func (s *Session) login(ctx context.Context) (*link, error) {
	c, err := dialLogin(ctx, &s.o, &s.portal, s.isid, "Normal")
	if err != nil {
		return nil, err
	}
	l := &link{
		conn:       c,
		wake:       make(chan struct{}, 1),
		dead:       make(chan struct{}),
		logoutDone: make(chan struct{}),
	}
	l.expStatSN.Store(c.expStatSN)
	l.lastRecv.Store(time.Now().UnixNano())
	return l, nil
}

// installLocked makes l the session's connection and starts its
// goroutines.
func (s *Session) installLocked(l *link) {
	s.link = l
	s.cmdSN = l.expCmdSN
	s.expCmdSN = l.expCmdSN
	s.maxCmdSN = l.maxCmdSN
	s.wg.Add(3)
	go s.readLoop(l)
	go l.sendLoop(&s.wg)
	go s.watchdog(l)
	if s.pumpLocked() {
		l.due.Store(false)
		l.kick()
	}
}

// Close logs out and closes the session. Commands still in flight fail
// with ErrClosed.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	l := s.link
	for _, t := range s.tasks {
		t.abandoned.Store(true)
	}
	var tag, cmdSN uint32
	if l != nil {
		tag = s.newTagLocked()
		cmdSN = s.cmdSN
		l.logoutITT.Store(tag)
	}
	s.mu.Unlock()
	s.closeCancel()

	var err error
	if l != nil {
		var h bhs
		h[0] = opLogoutReq | flagImm
		h[1] = flagFinal // reason 0: close the session
		h.setU32(16, tag)
		h.setU32(24, cmdSN)
		l.send(outPDU{h: h})
		t := time.NewTimer(5 * time.Second)
		select {
		case <-l.logoutDone:
		case <-l.dead:
			// The reader closes logoutDone and then ends the link, so both
			// may be ready by the time this goroutine runs; select picks
			// either. Only a link that died without the response is lost.
			select {
			case <-l.logoutDone:
			default:
				err = fmt.Errorf("logout from %s: connection lost", s.o.TargetIQN)
			}
		case <-t.C:
			err = fmt.Errorf("logout from %s: no response", s.o.TargetIQN)
		case <-ctx.Done():
			err = fmt.Errorf("logout from %s: %w", s.o.TargetIQN, ctx.Err())
		}
		t.Stop()
		l.kill(ErrClosed)
	}
	s.wg.Wait()
	s.mu.Lock()
	s.failAllLocked(ErrClosed)
	s.mu.Unlock()
	return err
}

func (s *Session) newTagLocked() uint32 {
	s.nextTag++
	if s.nextTag == reservedTag {
		s.nextTag = 0
	}
	return s.nextTag
}

// task is one SCSI command.
type task struct {
	op    string
	lun   [8]byte
	cdb   []byte
	read  bool   // data flows from the target into buf
	exact bool   // the target must transfer all of buf
	buf   []byte // Data-In destination or Data-Out source

	// Set under Session.mu.
	itt        uint32
	cmdSN      uint32
	link       *link
	dispatched bool
	finished   bool
	done       chan struct{}

	// abandoned: the caller stopped waiting; data for the task is dropped.
	abandoned atomic.Bool
	// bufMu is held by the reader goroutine while it fills buf, so that an
	// abandoning caller can wait until its buffer is no longer written.
	bufMu    sync.Mutex
	received int

	// Results, written before done is closed.
	response uint8
	status   uint8
	sense    []byte
	err      error
}

// isWrite reports whether t sends data to the target.
func (t *task) isWrite() bool { return !t.read && len(t.buf) > 0 }

func (t *task) result() error {
	if t.err != nil {
		return t.err
	}
	if t.response != 0 {
		return &StatusError{Op: t.op, Response: t.response}
	}
	switch t.status {
	case statusGood:
		if t.exact && t.read && t.received != len(t.buf) {
			return fmt.Errorf("%s: target returned %d of %d bytes", t.op, t.received, len(t.buf))
		}
		return nil
	case statusCheckCondition:
		return parseSense(t.op, t.sense)
	}
	return &StatusError{Op: t.op, Status: t.status}
}

// do runs one task to completion, or until ctx is done.
func (s *Session) do(ctx context.Context, t *task) error {
	if err := s.start(ctx, t); err != nil {
		return err
	}
	return s.wait(ctx, t)
}

// start queues t for sending; it does not block. Tasks beyond QueueDepth
// in flight wait in the queue and are dispatched, in order, as earlier
// ones finish (by the reader of the connection, without waking the
// callers).
func (s *Session) start(ctx context.Context, t *task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.done = make(chan struct{})
	s.mu.Lock()
	if s.failed != nil || s.closed {
		err := s.failed
		if err == nil {
			err = ErrClosed
		}
		s.mu.Unlock()
		return err
	}
	s.queue = append(s.queue, t)
	var l *link
	if s.pumpLocked() {
		l = s.link
	}
	s.mu.Unlock()
	if l != nil && l.due.Swap(false) {
		l.flush()
	}
	return nil
}

// wait waits for a started task and returns its outcome. When ctx ends
// first, the task is abandoned: its data is dropped, and buf is no longer
// written once wait returns.
func (s *Session) wait(ctx context.Context, t *task) error {
	select {
	case <-t.done:
		return t.result()
	case <-ctx.Done():
	}
	s.mu.Lock()
	if t.finished {
		s.mu.Unlock()
		return t.result()
	}
	t.abandoned.Store(true)
	if !t.dispatched {
		if i := slices.Index(s.queue, t); i >= 0 {
			s.queue = slices.Delete(s.queue, i, i+1)
		}
		s.finishLocked(t, ctx.Err())
	}
	s.mu.Unlock()
	// Wait until the reader is done with buf, if it is filling it now.
	t.bufMu.Lock()
	//lint:ignore SA2001 the empty critical section is a barrier
	t.bufMu.Unlock()
	return ctx.Err()
}

// pumpLocked dispatches queued tasks while the connection is up, fewer
// than QueueDepth tasks are in flight and the target's CmdSN window is
// open. It queues their PDUs on the link without sending them and reports
// whether it did: then link.due is set, and whoever clears it calls
// link.flush after releasing s.mu.
func (s *Session) pumpLocked() bool {
	l := s.link
	if l == nil || s.failed != nil || s.closed || len(s.queue) == 0 {
		return false
	}
	sent := 0
	l.sendMu.Lock()
	for len(s.queue) > 0 && len(s.tasks) < s.o.QueueDepth && snLessEq(s.cmdSN, s.maxCmdSN) {
		t := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		t.itt = s.newTagLocked()
		t.cmdSN = s.cmdSN
		s.cmdSN++
		t.link = l
		t.dispatched = true
		t.received = 0
		s.tasks[t.itt] = t
		if t.isWrite() {
			l.writes.Add(1)
		}
		l.sendQ = appendCommandPDUs(l.sendQ, t, &l.p)
		sent++
	}
	l.sendMu.Unlock()
	if len(s.queue) == 0 {
		s.queue = nil
	}
	if sent == 0 {
		return false
	}
	l.due.Store(true)
	return true
}

// finishLocked completes t with err (nil: see the response fields).
func (s *Session) finishLocked(t *task, err error) {
	if t.finished {
		return
	}
	t.finished = true
	if err != nil {
		t.err = err
	}
	if t.dispatched && s.tasks[t.itt] == t {
		delete(s.tasks, t.itt)
		if t.isWrite() {
			t.link.writes.Add(-1)
		}
	}
	close(t.done)
}

// completeLocked finishes t and dispatches the next queued task in its
// place.
func (s *Session) completeLocked(t *task, err error) {
	s.finishLocked(t, err)
	s.pumpLocked()
}

// failAllLocked completes every task with err.
func (s *Session) failAllLocked(err error) {
	for _, t := range s.tasks {
		s.finishLocked(t, err)
	}
	for _, t := range s.queue {
		s.finishLocked(t, err)
	}
	s.queue = nil
}

// updateWindowLocked applies ExpCmdSN and MaxCmdSN from a target PDU
// (RFC 7143 section 4.2.2.1).
func (s *Session) updateWindowLocked(exp, max uint32) {
	if snLess(max, exp-1) {
		return
	}
	if snLess(s.expCmdSN, exp) {
		s.expCmdSN = exp
	}
	if snLess(s.maxCmdSN, max) {
		s.maxCmdSN = max
		if len(s.queue) > 0 {
			s.pumpLocked()
		}
	}
}

// connLost is called by the reader of l once it has stopped: it requeues
// the tasks that had not completed and starts recovery.
func (s *Session) connLost(l *link, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.link != l {
		return
	}
	s.link = nil
	var again []*task
	for _, t := range s.tasks {
		if t.abandoned.Load() {
			s.finishLocked(t, ErrClosed)
			continue
		}
		t.dispatched = false
		again = append(again, t)
	}
	clear(s.tasks)
	slices.SortFunc(again, func(a, b *task) int {
		if snLess(a.cmdSN, b.cmdSN) {
			return -1
		}
		return 1
	})
	s.queue = append(again, s.queue...)
	if s.closed {
		s.failAllLocked(ErrClosed)
		return
	}
	if s.failed != nil {
		s.failAllLocked(s.failed)
		return
	}
	s.log.Warn("iscsi connection lost, logging in again", "portal", l.portal, "err", cause, "outstanding", len(s.queue))
	s.wg.Add(1)
	go s.recover(cause)
}

// recover logs in again until it works, RecoveryTimeout passes, or the
// target refuses us for good.
func (s *Session) recover(cause error) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.closeCtx, s.o.RecoveryTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		l, err := s.login(ctx)
		if err == nil {
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				l.nc.Close()
				return
			}
			s.reconnects++
			s.log.Info("iscsi session recovered", "portal", l.portal, "attempts", attempt, "reissued", len(s.queue))
			s.installLocked(l)
			s.mu.Unlock()
			return
		}
		last = err
		s.log.Debug("iscsi login attempt failed", "attempt", attempt, "err", err)
		var le *LoginError
		if errors.As(err, &le) && le.permanent() || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.failAllLocked(ErrClosed)
		return
	}
	s.failed = fmt.Errorf("%w: connection to %s for %s lost (%v) and not re-established within %v: %w",
		ErrSessionFailed, s.portal, s.o.TargetIQN, cause, s.o.RecoveryTimeout, last)
	s.log.Error("iscsi session failed", "err", s.failed)
	s.failAllLocked(s.failed)
}

// watchdog pings an idle connection and kills one whose target has gone
// silent, so that recovery starts instead of a hang.
func (s *Session) watchdog(l *link) {
	defer s.wg.Done()
	tick := min(s.o.KeepAlive, s.o.IOTimeout) / 4
	tick = max(10*time.Millisecond, min(tick, time.Second))
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-l.dead:
			return
		case <-tk.C:
		}
		idle := time.Duration(time.Now().UnixNano() - l.lastRecv.Load())
		s.mu.Lock()
		busy := len(s.tasks) > 0 || l.pingITT.Load() != 0
		s.mu.Unlock()
		if busy && idle > s.o.IOTimeout {
			l.kill(fmt.Errorf("no PDU from target for %v", idle.Round(time.Millisecond)))
			return
		}
		if idle > s.o.KeepAlive && l.pingITT.Load() == 0 {
			s.mu.Lock()
			tag, cmdSN := s.newTagLocked(), s.cmdSN
			s.mu.Unlock()
			l.pingITT.Store(tag)
			var h bhs
			h[0] = opNOPOut | flagImm
			h[1] = flagFinal
			h.setU32(16, tag)
			h.setU32(20, reservedTag)
			h.setU32(24, cmdSN)
			l.send(outPDU{h: h})
		}
	}
}

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

// appendCommandPDUs appends the SCSI Command PDU of t and the unsolicited
// data that goes with it.
func appendCommandPDUs(out []outPDU, t *task, p *params) []outPDU {
	var h bhs
	h[0] = opSCSICmd
	h[1] = flagFinal | attrSimple
	copy(h[8:16], t.lun[:])
	h.setU32(16, t.itt)
	h.setU32(20, uint32(len(t.buf)))
	h.setU32(24, t.cmdSN)
	copy(h[32:48], t.cdb)
	if t.read || len(t.buf) == 0 {
		if len(t.buf) > 0 {
			h[1] |= flagRead
		}
		return append(out, outPDU{h: h})
	}
	h[1] |= flagWrite
	sent := 0
	var imm []byte
	unsolicited := min(len(t.buf), p.firstBurst)
	if p.immediateData {
		sent = min(unsolicited, p.maxXmitData)
		imm = t.buf[:sent]
	}
	more := !p.initialR2T && sent < unsolicited
	if more {
		h[1] &^= flagFinal
	}
	out = append(out, outPDU{h: h, data: imm})
	if more {
		out = appendDataOut(out, t, reservedTag, sent, unsolicited-sent, p.maxXmitData)
	}
	return out
}

// appendDataOut appends the Data-Out PDUs of one burst: length bytes of
// t.buf from off, in segments of at most maxSeg bytes.
func appendDataOut(out []outPDU, t *task, ttt uint32, off, length, maxSeg int) []outPDU {
	for sn := uint32(0); length > 0; sn++ {
		n := min(length, maxSeg)
		var h bhs
		h[0] = opDataOut
		if n == length {
			h[1] = flagFinal
		}
		copy(h[8:16], t.lun[:])
		h.setU32(16, t.itt)
		h.setU32(20, ttt)
		h.setU32(36, sn)
		h.setU32(40, uint32(off))
		out = append(out, outPDU{h: h, data: t.buf[off : off+n]})
		off += n
		length -= n
	}
	return out
}

// link is a connection in full feature phase with its sender state.
type link struct {
	*conn
	sendMu  sync.Mutex
	sendQ   []outPDU
	spare   []outPDU
	writing bool // a goroutine is writing sendQ out (see write)
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
		close(l.dead)
		l.nc.Close()
	})
}

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
	if l.writing {
		l.sendMu.Unlock()
		return
	}
	l.writing = true
	l.sendMu.Unlock()
	l.write(true)
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
		if l.writing {
			l.sendMu.Unlock()
			continue
		}
		l.writing = true
		l.sendMu.Unlock()
		if !l.write(false) {
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
