package nbd

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// A scripted NBD server for fault injection: a handshake with knobs, then
// a transmission handler the test writes.

type fakeConfig struct {
	size       uint64
	flags      uint16
	oldstyle   bool
	notFixed   bool   // no NBD_FLAG_FIXED_NEWSTYLE
	zeroes     bool   // no NBD_FLAG_NO_ZEROES: EXPORT_NAME answers carry 124 zeroes
	structured bool   // accept NBD_OPT_STRUCTURED_REPLY
	meta       bool   // select base:allocation (context id 7)
	noGo       bool   // NBD_REP_ERR_UNSUP to NBD_OPT_GO
	goErr      uint32 // an error reply to NBD_OPT_GO
	goErrMsg   string
	blockSize  [3]uint32 // NBD_INFO_BLOCK_SIZE, when [0] != 0
	name       string    // NBD_INFO_NAME, when set
	// serve runs the transmission phase of each connection.
	serve func(fc *fakeConn)
}

type fakeConn struct {
	t   testing.TB
	c   net.Conn
	mu  sync.Mutex // serialises writes
	cfg *fakeConfig
	// options the client sent, in order
	opts []uint32
	done chan struct{} // closed when the server is done with the connection
}

type fakeServer struct {
	addr string
	mu   sync.Mutex
	// conns records the connections, for the options they saw.
	conns []*fakeConn
}

func (s *fakeServer) options() [][]uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]uint32
	for _, c := range s.conns {
		c.mu.Lock()
		out = append(out, append([]uint32(nil), c.opts...))
		c.mu.Unlock()
	}
	return out
}

// waitConn waits until the server is done with its i-th connection.
func (s *fakeServer) waitConn(i int) {
	s.mu.Lock()
	fc := s.conns[i]
	s.mu.Unlock()
	<-fc.done
}

func startFake(t *testing.T, cfg fakeConfig) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{t: t, c: c, cfg: &cfg, done: make(chan struct{})}
			s.mu.Lock()
			s.conns = append(s.conns, fc)
			s.mu.Unlock()
			wg.Go(func() {
				defer close(fc.done)
				defer c.Close()
				if fc.handshake() && cfg.serve != nil {
					cfg.serve(fc)
				}
			})
		}
	})
	return s
}

func (fc *fakeConn) write(b []byte) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	_, _ = fc.c.Write(b)
}

func (fc *fakeConn) optReply(opt, typ uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	fc.write(append(b, data...))
}

// handshake plays the server's side; it reports whether transmission
// started.
func (fc *fakeConn) handshake() bool {
	cfg := fc.cfg
	if cfg.oldstyle {
		b := binary.BigEndian.AppendUint64(nil, magicInit)
		b = binary.BigEndian.AppendUint64(b, magicOldstyle)
		fc.write(append(b, make([]byte, 8+4+124)...))
		return false
	}
	b := binary.BigEndian.AppendUint64(nil, magicInit)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	var hf uint16
	if !cfg.notFixed {
		hf |= flagFixedNewstyle
	}
	if !cfg.zeroes {
		hf |= flagNoZeroes
	}
	fc.write(binary.BigEndian.AppendUint16(b, hf))
	var cf [4]byte
	if _, err := io.ReadFull(fc.c, cf[:]); err != nil {
		return false
	}
	for {
		var h [16]byte
		if _, err := io.ReadFull(fc.c, h[:]); err != nil {
			return false
		}
		opt := binary.BigEndian.Uint32(h[8:])
		data := make([]byte, binary.BigEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(fc.c, data); err != nil {
			return false
		}
		fc.mu.Lock()
		fc.opts = append(fc.opts, opt)
		fc.mu.Unlock()
		export := func() []byte {
			e := binary.BigEndian.AppendUint64(nil, cfg.size)
			return binary.BigEndian.AppendUint16(e, cfg.flags|FlagHasFlags)
		}
		switch opt {
		case optExportName:
			e := export()
			if cf[3]&flagCNoZeroes == 0 {
				e = append(e, make([]byte, 124)...)
			}
			fc.write(e)
			return true
		case optAbort:
			fc.optReply(opt, repAck, nil)
			return false
		case optStructuredReply:
			if cfg.structured {
				fc.optReply(opt, repAck, nil)
			} else {
				fc.optReply(opt, repErrUnsup, nil)
			}
		case optSetMetaContext:
			if cfg.meta {
				fc.optReply(opt, repMetaContext, append(binary.BigEndian.AppendUint32(nil, 7), metaBaseAllocation...))
			}
			fc.optReply(opt, repAck, nil)
		case optGo:
			switch {
			case cfg.noGo:
				fc.optReply(opt, repErrUnsup, nil)
				continue
			case cfg.goErr != 0:
				fc.optReply(opt, cfg.goErr, []byte(cfg.goErrMsg))
				continue
			}
			fc.optReply(opt, repInfo, append([]byte{0, infoExport}, export()...))
			if cfg.blockSize[0] != 0 {
				d := []byte{0, infoBlockSize}
				for _, v := range cfg.blockSize {
					d = binary.BigEndian.AppendUint32(d, v)
				}
				fc.optReply(opt, repInfo, d)
			}
			if cfg.name != "" {
				fc.optReply(opt, repInfo, append([]byte{0, infoName}, cfg.name...))
			}
			fc.optReply(opt, repAck, nil)
			return true
		default:
			fc.optReply(opt, repErrPolicy, []byte("not here"))
		}
	}
}

type fakeReq struct {
	flags, cmd uint16
	cookie     uint64
	off        uint64
	length     uint32
}

// readReq reads one request; ok is false at the end of the connection.
func (fc *fakeConn) readReq() (fakeReq, bool) {
	var b [requestLen]byte
	if _, err := io.ReadFull(fc.c, b[:]); err != nil {
		return fakeReq{}, false
	}
	if binary.BigEndian.Uint32(b[:]) != magicRequest {
		fc.t.Errorf("fake server: request magic %#x", binary.BigEndian.Uint32(b[:]))
		return fakeReq{}, false
	}
	return fakeReq{
		flags:  binary.BigEndian.Uint16(b[4:]),
		cmd:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		off:    binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, true
}

func simpleReply(cookie uint64, errno uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicSimple)
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return append(b, data...)
}

func chunk(cookie uint64, flags, typ uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicChunk)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func dataChunk(cookie uint64, flags uint16, off uint64, data []byte) []byte {
	return chunk(cookie, flags, chunkOffsetData, append(binary.BigEndian.AppendUint64(nil, off), data...))
}

func holeChunk(cookie uint64, flags uint16, off uint64, n uint32) []byte {
	return chunk(cookie, flags, chunkOffsetHole, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, off), n))
}

func errorChunk(cookie uint64, flags, typ uint16, errno uint32, msg string, off *uint64) []byte {
	p := binary.BigEndian.AppendUint32(nil, errno)
	p = binary.BigEndian.AppendUint16(p, uint16(len(msg)))
	p = append(p, msg...)
	if off != nil {
		p = binary.BigEndian.AppendUint64(p, *off)
	}
	return chunk(cookie, flags, typ, p)
}

func noneChunk(cookie uint64) []byte { return chunk(cookie, chunkFlagDone, chunkNone, nil) }

// pattern is the content of the fake exports: byte i is i*7 mod 251.
func pattern(off uint64, n uint32) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off + uint64(i)) * 7 % 251)
	}
	return b
}

// serveSimple answers reads with simple replies of the pattern until DISC.
func serveSimple(fc *fakeConn) {
	for {
		r, ok := fc.readReq()
		if !ok || r.cmd == cmdDisc {
			return
		}
		fc.write(simpleReply(r.cookie, 0, pattern(r.off, r.length)))
	}
}

func fakeCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialFake(t *testing.T, s *fakeServer, o Options) *Client {
	t.Helper()
	o.Address = s.addr
	c, err := Dial(fakeCtx(t), o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func checkPattern(t *testing.T, got []byte, off uint64) {
	t.Helper()
	want := pattern(off, uint32(len(got)))
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("byte %d differs: %d, want %d", off+uint64(i), got[i], want[i])
		}
	}
}
