package iscsi

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

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
