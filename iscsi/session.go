package iscsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
// and returns the session. It makes one attempt: a refused login fails at
// once with a *LoginError, even one that session recovery would retry
// (see the package documentation).
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
