package iscsi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// Login stages (CSG/NSG).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// ErrAuth reports a failed authentication: the target refused our CHAP
// credentials or the target failed mutual CHAP.
var ErrAuth = errors.New("iscsi authentication failed")

// ErrTargetNotFound reports a login to a target name the portal does not
// serve (or no longer serves).
var ErrTargetNotFound = errors.New("iscsi target not found")

// LoginError is a login refused by the target with a status class and
// detail (RFC 7143 section 11.13.5). It matches ErrAuth and
// ErrTargetNotFound with errors.Is where it means that.
type LoginError struct {
	Target string // the target name; empty for a discovery session
	Portal string
	Class  uint8
	Detail uint8
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("login to %s at %s refused: %s (status 0x%02x%02x)",
		nameOr(e.Target, "discovery"), e.Portal, e.describe(), e.Class, e.Detail)
}

func (e *LoginError) describe() string {
	switch uint16(e.Class)<<8 | uint16(e.Detail) {
	case 0x0200:
		return "initiator error"
	case 0x0201:
		return "authentication failure"
	case 0x0202:
		return "authorization failure"
	case 0x0203:
		return "target not found"
	case 0x0204:
		return "target removed"
	case 0x0205:
		return "unsupported version"
	case 0x0206:
		return "too many connections"
	case 0x0207:
		return "missing parameter"
	case 0x0208:
		return "cannot include in session"
	case 0x0209:
		return "session type not supported"
	case 0x020a:
		return "session does not exist"
	case 0x020b:
		return "invalid request during login"
	case 0x0300:
		return "target error"
	case 0x0301:
		return "service unavailable"
	case 0x0302:
		return "out of resources"
	}
	return "unknown status"
}

// Is lets errors.Is match the sentinels.
func (e *LoginError) Is(target error) bool {
	switch target {
	case ErrAuth:
		return e.Class == 2 && (e.Detail == 1 || e.Detail == 2)
	case ErrTargetNotFound:
		return e.Class == 2 && (e.Detail == 3 || e.Detail == 4)
	}
	return false
}

// Transient reports whether the same login may be accepted later: the
// portal does not serve the target now ("target not found" 0x0203,
// "target removed" 0x0204) or the target is out of service (class 3:
// "target error", "service unavailable", "out of resources"). A target
// that restarts answers so until its configuration is back. Every other
// refusal, failed authentication or authorization above all, is not
// transient. Session recovery retries transient refusals; Dial does not
// (see the package documentation).
func (e *LoginError) Transient() bool {
	return e.Class == 3 || e.Class == 2 && (e.Detail == 3 || e.Detail == 4)
}

// redirectError is returned by a single login attempt that was redirected.
type redirectError struct {
	addr      string
	permanent bool
}

func (e *redirectError) Error() string {
	kind := "temporarily"
	if e.permanent {
		kind = "permanently"
	}
	return "login redirected " + kind + " to " + e.addr
}

// conn is one TCP connection in (or entering) full feature phase.
type conn struct {
	nc     net.Conn
	portal string // address dialled, host:port
	pr     pduReader
	bw     *bufio.Writer
	p      params

	// Sequence numbers as left by login.
	itt       uint32 // login ITT
	cmdSN     uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	expStatSN uint32
	tsih      uint16
	alias     string
}

// loginRequest is the state of one login exchange on one connection.
type loginRequest struct {
	o           *Options
	c           *conn
	isid        [6]byte
	sessionType string // "Normal" or "Discovery"
	csg         int
	statSNValid bool
}

// dialLogin logs in at portal (host:port), following redirects, and
// returns the connection in full feature phase. A permanent redirect
// updates *portal.
func dialLogin(ctx context.Context, o *Options, portal *string, isid [6]byte, sessionType string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.LoginTimeout)
	defer cancel()
	addr := *portal
	for hops := 0; ; hops++ {
		c, err := loginOnce(ctx, o, addr, isid, sessionType)
		var re *redirectError
		if !errors.As(err, &re) {
			return c, err
		}
		if hops >= o.MaxRedirects {
			return nil, fmt.Errorf("login to %s: more than %d redirects", *portal, o.MaxRedirects)
		}
		next, err := portalAddr(re.addr)
		if err != nil {
			return nil, fmt.Errorf("login to %s: redirected to bad address %q: %w", addr, re.addr, err)
		}
		o.Logger.Info("iscsi login redirected", "from", addr, "to", next, "permanent", re.permanent, "target", o.TargetIQN)
		if re.permanent {
			*portal = next
		}
		addr = next
	}
}

// loginOnce dials addr and logs in without following redirects.
func loginOnce(ctx context.Context, o *Options, addr string, isid [6]byte, sessionType string) (*conn, error) {
	d := net.Dialer{Timeout: o.DialTimeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to iscsi portal %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &conn{
		nc:     nc,
		portal: addr,
		// A small read buffer: a data segment larger than it is read
		// straight into its destination, skipping the copy.
		pr: pduReader{r: bufio.NewReaderSize(nc, 16<<10), maxData: maxDataSegment},
		bw: bufio.NewWriterSize(nc, 256<<10),
		p:  defaultParams(),
	}
	// Bound the login by ctx: a deadline, and cancellation breaks any
	// blocked read or write.
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	err = (&loginRequest{o: o, c: c, isid: isid, sessionType: sessionType}).run()
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		nc.Close()
		if ctx.Err() != nil && !isRedirect(err) {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		var le *LoginError
		if isRedirect(err) || errors.As(err, &le) {
			return nil, err
		}
		return nil, fmt.Errorf("login to %s at %s: %w", nameOr(o.TargetIQN, "discovery"), addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func isRedirect(err error) bool {
	var re *redirectError
	return errors.As(err, &re)
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newISID() [6]byte {
	var isid [6]byte
	_, _ = rand.Read(isid[1:4])
	isid[0] = 0x80 // type "random" (RFC 7143 section 11.12.5)
	return isid
}

func (l *loginRequest) run() error {
	o := l.o
	c := l.c
	var b [4]byte
	_, _ = rand.Read(b[:])
	c.itt = binary.BigEndian.Uint32(b[:]) & 0x7fffffff
	c.cmdSN = 1

	first := []keyValue{
		{"InitiatorName", o.InitiatorIQN},
		{"SessionType", l.sessionType},
	}
	if l.sessionType == "Normal" {
		first = append(first, keyValue{"TargetName", o.TargetIQN})
	}

	// Security stage.
	if o.CHAP.User == "" {
		first = append(first, keyValue{"AuthMethod", "None"})
		keys, err := l.exchange(stageSecurity, stageOperational, true, first)
		if err != nil {
			return err
		}
		if m := textMap(keys)["AuthMethod"]; m != "" && m != "None" {
			return fmt.Errorf("%w: target requires AuthMethod=%s and no CHAP credentials were given", ErrAuth, m)
		}
		// A target may answer without the T bit; keep asking.
		for i := 0; l.csg == stageSecurity; i++ {
			if i > 4 {
				return fmt.Errorf("%w: target stays in the security stage", ErrProtocol)
			}
			if _, err := l.exchange(stageSecurity, stageOperational, true, nil); err != nil {
				return err
			}
		}
	} else {
		first = append(first, keyValue{"AuthMethod", "CHAP,None"})
		keys, err := l.exchange(stageSecurity, stageOperational, false, first)
		if err != nil {
			return err
		}
		m := textMap(keys)["AuthMethod"]
		switch m {
		case "CHAP":
			if err := l.chap(); err != nil {
				return err
			}
		case "None":
			if o.CHAP.TargetSecret != "" {
				return fmt.Errorf("%w: target declined CHAP, but mutual CHAP was required", ErrAuth)
			}
			if l.csg == stageSecurity {
				if _, err := l.exchange(stageSecurity, stageOperational, true, nil); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%w: target answered AuthMethod=%q", ErrAuth, m)
		}
	}
	if l.csg != stageOperational {
		return fmt.Errorf("%w: login did not reach the operational stage", ErrProtocol)
	}

	// Operational stage.
	var offer []keyValue
	if l.sessionType == "Discovery" {
		offer = []keyValue{
			{"HeaderDigest", "None"}, {"DataDigest", "None"},
			{"MaxRecvDataSegmentLength", "65536"},
		}
	} else {
		offer = o.offer()
	}
	p := defaultParams()
	p.maxRecvData = o.MaxRecvDataSegmentLength
	if l.sessionType == "Discovery" {
		p.maxRecvData = 65536
	}
	for i := 0; l.csg != stageFullFeature; i++ {
		if i > 4 {
			return fmt.Errorf("%w: target does not finish the operational stage", ErrProtocol)
		}
		keys, err := l.exchange(stageOperational, stageFullFeature, true, offer)
		if err != nil {
			return err
		}
		offer = nil
		if l.sessionType == "Discovery" {
			// Only MaxRecvDataSegmentLength matters for discovery.
			for _, kv := range keys {
				if kv.Key == "MaxRecvDataSegmentLength" {
					if p.maxXmitData, err = numberIn(kv.Key, kv.Value, 512, maxDataSegment); err != nil {
						return err
					}
				}
			}
			continue
		}
		if err := p.applyAnswer(o, keys); err != nil {
			return err
		}
	}
	c.p = p
	c.pr.headerDigest = p.headerDigest
	c.pr.dataDigest = p.dataDigest
	c.pr.maxData = p.maxRecvData
	return nil
}

// chap runs the CHAP exchange of the security stage.
func (l *loginRequest) chap() error {
	o := l.o
	keys, err := l.exchange(stageSecurity, stageOperational, false, []keyValue{{"CHAP_A", chapMD5}})
	if err != nil {
		return err
	}
	m := textMap(keys)
	answer, err := chapAnswer(&o.CHAP, m)
	if err != nil {
		return err
	}
	var mc *mutualChallenge
	if o.CHAP.TargetSecret != "" {
		if mc, err = newMutualChallenge(); err != nil {
			return err
		}
		if tc, _ := decodeBinary(m["CHAP_C"]); bytes.Equal(tc, mc.challenge) {
			return fmt.Errorf("%w: target reflected our CHAP challenge", ErrAuth)
		}
		answer = append(answer, mc.keys()...)
	}
	keys, err = l.exchange(stageSecurity, stageOperational, true, answer)
	if err != nil {
		return err
	}
	if mc != nil {
		if err := mc.verify(&o.CHAP, textMap(keys)); err != nil {
			return err
		}
	}
	for i := 0; l.csg == stageSecurity; i++ {
		if i > 4 {
			return fmt.Errorf("%w: target stays in the security stage after CHAP", ErrProtocol)
		}
		if _, err := l.exchange(stageSecurity, stageOperational, true, nil); err != nil {
			return err
		}
	}
	return nil
}

// exchange sends one login request (csg → nsg, with the T bit when
// transit) and gathers the response keys, asking for more while the
// target sets the C bit. On return l.csg is the stage the login is in: nsg
// when the target accepted the transition.
func (l *loginRequest) exchange(csg, nsg int, transit bool, kvs []keyValue) ([]keyValue, error) {
	c := l.c
	data := encodeText(kvs)
	var all []byte
	for {
		var h bhs
		h[0] = opLoginReq | flagImm
		h[1] = byte(csg<<2) & 0x0c
		if transit {
			h[1] |= flagFinal | byte(nsg&3)
		}
		h[2], h[3] = 0, 0 // version max, min
		copy(h[8:14], l.isid[:])
		h.setU32(16, c.itt)
		h.setU32(24, c.cmdSN)
		h.setU32(28, c.expStatSN)
		if err := writePDU(c.bw, &h, data, false, false); err != nil {
			return nil, err
		}
		if err := c.bw.Flush(); err != nil {
			return nil, err
		}
		var r bhs
		rdata, err := c.pr.readPDU(&r)
		if err != nil {
			return nil, fmt.Errorf("read login response: %w", unexpectedEOF(err))
		}
		if r.opcode() == opReject {
			return nil, fmt.Errorf("%w: target rejected the login request (reason 0x%02x)", ErrProtocol, r[2])
		}
		if r.opcode() != opLoginResp {
			return nil, fmt.Errorf("%w: got %s during login", ErrProtocol, opName(r.opcode()))
		}
		if r.itt() != c.itt {
			return nil, fmt.Errorf("%w: login response for ITT 0x%x, want 0x%x", ErrProtocol, r.itt(), c.itt)
		}
		class, detail := r[36], r[37]
		switch class {
		case 0:
		case 1:
			addr := textMap(mustParse(rdata))["TargetAddress"]
			if addr == "" {
				return nil, fmt.Errorf("%w: redirect without TargetAddress", ErrProtocol)
			}
			return nil, &redirectError{addr: addr, permanent: detail == 2}
		default:
			return nil, &LoginError{Target: l.o.TargetIQN, Portal: c.portal, Class: class, Detail: detail}
		}
		if r[3] != 0 {
			return nil, fmt.Errorf("%w: target chose protocol version %d", ErrProtocol, r[3])
		}
		statSN := r.statSN()
		if l.statSNValid && statSN != c.expStatSN {
			return nil, fmt.Errorf("%w: login StatSN %d, want %d", ErrProtocol, statSN, c.expStatSN)
		}
		l.statSNValid = true
		c.expStatSN = statSN + 1
		c.expCmdSN, c.maxCmdSN = r.expCmdSN(), r.maxCmdSN()
		c.tsih = binary.BigEndian.Uint16(r[14:16])
		all = append(all, rdata...)
		if r[1]&flagContinue != 0 {
			// More text follows: answer with an empty request.
			data = nil
			continue
		}
		if r[1]&flagFinal != 0 {
			l.csg = int(r[1] & 3)
			if !transit || l.csg != nsg {
				return nil, fmt.Errorf("%w: target moved to login stage %d", ErrProtocol, l.csg)
			}
		} else {
			l.csg = csg
		}
		keys, err := parseText(all)
		if err != nil {
			return nil, err
		}
		if a := textMap(keys)["TargetAlias"]; a != "" {
			c.alias = a
		}
		return keys, nil
	}
}

func mustParse(b []byte) []keyValue {
	kvs, _ := parseText(b)
	return kvs
}
