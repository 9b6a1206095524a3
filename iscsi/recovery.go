package iscsi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// connLost is called by the reader of l once it has stopped: it requeues
// the tasks that had not completed and starts recovery.
func (s *Session) connLost(l *link, cause error) {
	// The link is dead (readLoop killed it): wait until its writer lets go
	// of the tasks' data before they are reissued or failed, and their
	// callers reuse their buffers.
	l.quiesce()
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
// target refuses us for good (see retryLogin).
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
		if !retryLogin(err) || ctx.Err() != nil {
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
	why := fmt.Sprintf("not re-established within %v", s.o.RecoveryTimeout)
	if !retryLogin(last) {
		why = "not re-established (the target refuses the login for good)"
	}
	s.failed = fmt.Errorf("%w: connection to %s for %s lost (%v) and %s: %w",
		ErrSessionFailed, s.portal, s.o.TargetIQN, cause, why, last)
	s.log.Error("iscsi session failed", "err", s.failed)
	s.failAllLocked(s.failed)
}

// retryLogin reports whether recovery logs in again after a login that
// failed with err. It does after a connection that could not be made or
// broke and after a transient refusal (LoginError.Transient): a target
// that restarts accepts connections before its targets are configured
// again and answers "target not found" meanwhile. It does not after any
// other refusal (bad credentials, not authorized, an initiator error):
// asking again cannot change the answer.
func retryLogin(err error) bool {
	var le *LoginError
	return !errors.As(err, &le) || le.Transient()
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
