package nfs

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
)

// The portmapper (ONC RPC program 100000, version 2, RFC 1833): how NFS
// clients that are given only a host find MOUNT and NFS. It answers
// GETPORT and DUMP for the programs this server serves, over TCP and UDP;
// SET and UNSET (other programs registering) are refused, CALLIT is not
// offered, and rpcbind versions 3 and 4 are answered "version mismatch,
// 2 to 2", on which clients (libtirpc, libnfs) fall back to version 2.

const (
	progPortmap = 100000
	progNFS     = 100003
	progMount   = 100005

	protoTCP = 6
	protoUDP = 17

	pmapNull    = 0
	pmapSet     = 1
	pmapUnset   = 2
	pmapGetport = 3
	pmapDump    = 4

	// maxRPCRecord bounds a portmapper request (they are tens of bytes).
	maxRPCRecord = 64 << 10
)

// mapping is one registration: program, version, protocol, port.
type mapping struct{ prog, vers, proto, port uint32 }

// Portmap answers portmapper requests for an NFS server on nfsPort (TCP;
// NFS version 3 and MOUNT versions 1 and 3 share it).
type Portmap struct {
	maps []mapping
	log  *slog.Logger
}

// NewPortmap returns the portmapper of an NFS server listening on TCP
// port nfsPort, itself reachable on port self.
func NewPortmap(nfsPort, self int, log *slog.Logger) *Portmap {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, s := uint32(nfsPort), uint32(self)
	return &Portmap{log: log, maps: []mapping{
		{progPortmap, 2, protoTCP, s}, {progPortmap, 2, protoUDP, s},
		{progNFS, 3, protoTCP, n},
		{progMount, 1, protoTCP, n}, {progMount, 3, protoTCP, n},
	}}
}

// ServeTCP answers on ln until ctx is cancelled (then it returns nil) or
// ln fails; it closes ln.
func (p *Portmap) ServeTCP(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			if err := p.serveConn(c); !errors.Is(err, io.EOF) && ctx.Err() == nil {
				p.log.Debug("portmapper connection ended", "client", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// serveConn answers the record-marked requests of one TCP connection until
// it fails (io.EOF: the client closed it).
func (p *Portmap) serveConn(c net.Conn) error {
	r := bufio.NewReader(c)
	for {
		req, err := readRecordLimit(r, maxRPCRecord)
		if err != nil {
			return err
		}
		reply := p.answer(req)
		if reply == nil {
			continue
		}
		out := binary.BigEndian.AppendUint32(nil, 1<<31|uint32(len(reply)))
		if _, err := c.Write(append(out, reply...)); err != nil {
			return err
		}
	}
}

// ServeUDP answers datagrams on pc until ctx is cancelled (then it
// returns nil) or pc fails; it closes pc.
func (p *Portmap) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	buf := make([]byte, maxRPCRecord)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if reply := p.answer(buf[:n]); reply != nil {
			pc.WriteTo(reply, from)
		}
	}
}

// Reply fields (RFC 5531).
const (
	msgCall            = 0
	msgReply           = 1
	replyAccepted      = 0
	replyDenied        = 1
	acceptSuccess      = 0
	acceptProgUnavail  = 1
	acceptProgMismatch = 2
	acceptProcUnavail  = 3
	acceptGarbageArgs  = 4
	denyRPCMismatch    = 0
)

// answer returns the reply to one RPC call message, or nil for a message
// too short to have a transaction ID or not a call (dropped, as a server
// does).
func (p *Portmap) answer(msg []byte) []byte {
	d := xdrReader{b: msg}
	xid := d.uint32()
	if d.uint32() != msgCall || d.err != nil {
		return nil
	}
	rpcvers, prog, vers, proc := d.uint32(), d.uint32(), d.uint32(), d.uint32()
	d.opaqueAuth() // credentials: any flavor; the portmapper reveals only ports
	d.opaqueAuth() // verifier
	if d.err != nil {
		return accepted(xid, acceptGarbageArgs)
	}
	if rpcvers != 2 {
		out := binary.BigEndian.AppendUint32(nil, xid)
		for _, v := range []uint32{msgReply, replyDenied, denyRPCMismatch, 2, 2} {
			out = binary.BigEndian.AppendUint32(out, v)
		}
		return out
	}
	switch {
	case prog != progPortmap:
		return accepted(xid, acceptProgUnavail)
	case vers != 2:
		out := accepted(xid, acceptProgMismatch)
		out = binary.BigEndian.AppendUint32(out, 2)
		return binary.BigEndian.AppendUint32(out, 2)
	}
	switch proc {
	case pmapNull:
		return accepted(xid, acceptSuccess)
	case pmapSet, pmapUnset:
		// Registrations by other programs are not kept: false.
		return binary.BigEndian.AppendUint32(accepted(xid, acceptSuccess), 0)
	case pmapGetport:
		want := mapping{d.uint32(), d.uint32(), d.uint32(), d.uint32()}
		if d.err != nil {
			return accepted(xid, acceptGarbageArgs)
		}
		port := uint32(0)
		for _, m := range p.maps {
			if m.prog == want.prog && m.vers == want.vers && m.proto == want.proto {
				port = m.port
			}
		}
		return binary.BigEndian.AppendUint32(accepted(xid, acceptSuccess), port)
	case pmapDump:
		out := accepted(xid, acceptSuccess)
		for _, m := range p.maps {
			out = binary.BigEndian.AppendUint32(out, 1) // value follows
			for _, v := range []uint32{m.prog, m.vers, m.proto, m.port} {
				out = binary.BigEndian.AppendUint32(out, v)
			}
		}
		return binary.BigEndian.AppendUint32(out, 0)
	}
	return accepted(xid, acceptProcUnavail)
}

// accepted starts an accepted reply with an AUTH_NULL verifier and stat.
func accepted(xid, stat uint32) []byte {
	out := make([]byte, 0, 64)
	for _, v := range []uint32{xid, msgReply, replyAccepted, 0, 0, stat} {
		out = binary.BigEndian.AppendUint32(out, v)
	}
	return out
}

// xdrReader reads XDR items; the first short read sets err, and later
// reads return zero.
type xdrReader struct {
	b   []byte
	err error
}

func (d *xdrReader) uint32() uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.err = io.ErrUnexpectedEOF
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

// opaque reads variable-length opaque data of at most max bytes.
func (d *xdrReader) opaque(max int) []byte {
	n := d.uint32()
	if d.err != nil {
		return nil
	}
	padded := (uint64(n) + 3) &^ 3
	if int(n) > max || uint64(len(d.b)) < padded {
		d.err = io.ErrUnexpectedEOF
		return nil
	}
	b := d.b[:n]
	d.b = d.b[padded:]
	return b
}

// opaqueAuth skips an opaque_auth (flavor, then at most 400 bytes of body,
// padded to 4).
func (d *xdrReader) opaqueAuth() {
	d.uint32()
	n := d.uint32()
	if d.err != nil {
		return
	}
	padded := (uint64(n) + 3) &^ 3
	if n > 400 || uint64(len(d.b)) < padded {
		d.err = io.ErrUnexpectedEOF
		return
	}
	d.b = d.b[padded:]
}
