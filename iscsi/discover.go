package iscsi

import (
	"context"
	"fmt"
	"time"
)

// Target is one entry of a SendTargets answer.
type Target struct {
	Name string
	// Addresses are the target's portals as the target reports them,
	// "host:port,tpgt"; empty means the discovery portal itself.
	Addresses []string
}

// Discover logs in to o.Portal in a discovery session (with o.CHAP, if
// set), asks for every target (SendTargets=All) and logs out.
func Discover(ctx context.Context, o Options) ([]Target, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	o.TargetIQN = ""
	portal, err := portalAddr(o.Portal)
	if err != nil {
		return nil, err
	}
	c, err := dialLogin(ctx, &o, &portal, newISID(), "Discovery")
	if err != nil {
		return nil, fmt.Errorf("discover targets at %s: %w", o.Portal, err)
	}
	defer c.nc.Close()
	ctx, cancel := context.WithTimeout(ctx, o.LoginTimeout)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	data, err := c.textRequest([]keyValue{{"SendTargets", "All"}})
	if err != nil {
		return nil, fmt.Errorf("discover targets at %s: %w", o.Portal, err)
	}
	kvs, err := parseText(data)
	if err != nil {
		return nil, fmt.Errorf("discover targets at %s: %w", o.Portal, err)
	}
	var out []Target
	for _, kv := range kvs {
		switch kv.Key {
		case "TargetName":
			out = append(out, Target{Name: kv.Value})
		case "TargetAddress":
			if len(out) > 0 {
				out[len(out)-1].Addresses = append(out[len(out)-1].Addresses, kv.Value)
			}
		}
	}
	_ = c.logout() // the answer is in hand; a failed logout does not matter
	return out, nil
}

// textRequest runs a text exchange on a bare connection (no reader
// goroutine), gathering continued responses.
func (c *conn) textRequest(kvs []keyValue) ([]byte, error) {
	data := encodeText(kvs)
	ttt := uint32(reservedTag)
	var all []byte
	c.itt++
	for i := 0; ; i++ {
		if i > 1000 {
			return nil, fmt.Errorf("%w: text response never ends", ErrProtocol)
		}
		var h bhs
		h[0] = opTextReq | flagImm
		h[1] = flagFinal
		h.setU32(16, c.itt)
		h.setU32(20, ttt)
		h.setU32(24, c.expCmdSN)
		h.setU32(28, c.expStatSN)
		if err := writePDU(c.bw, &h, data, c.p.headerDigest, c.p.dataDigest); err != nil {
			return nil, err
		}
		if err := c.bw.Flush(); err != nil {
			return nil, err
		}
		var r bhs
		rdata, err := c.pr.readPDU(&r)
		if err != nil {
			return nil, fmt.Errorf("read text response: %w", unexpectedEOF(err))
		}
		if r.opcode() == opReject {
			return nil, fmt.Errorf("%w: target rejected the text request (reason 0x%02x)", ErrProtocol, r[2])
		}
		if r.opcode() != opTextResp || r.itt() != c.itt {
			return nil, fmt.Errorf("%w: got %s (ITT 0x%x) in answer to a text request", ErrProtocol, opName(r.opcode()), r.itt())
		}
		c.expStatSN = r.statSN() + 1
		all = append(all, rdata...)
		if r[1]&flagContinue == 0 {
			return all, nil
		}
		ttt, data = r.ttt(), nil
	}
}

// logout closes a session on a bare connection.
func (c *conn) logout() error {
	c.itt++
	var h bhs
	h[0] = opLogoutReq | flagImm
	h[1] = flagFinal
	h.setU32(16, c.itt)
	h.setU32(24, c.expCmdSN)
	h.setU32(28, c.expStatSN)
	if err := writePDU(c.bw, &h, nil, c.p.headerDigest, c.p.dataDigest); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	var r bhs
	if _, err := c.pr.readPDU(&r); err != nil {
		return err
	}
	if r.opcode() != opLogoutResp || r[2] != 0 {
		return fmt.Errorf("%w: logout answered by %s, response %d", ErrProtocol, opName(r.opcode()), r[2])
	}
	return nil
}
