package export

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// A minimal read-only NBD server (https://github.com/NetworkBlockDevice/nbd
// doc/proto.md): fixed newstyle handshake, NBD_OPT_EXPORT_NAME, NBD_OPT_GO,
// NBD_OPT_INFO, NBD_OPT_LIST and NBD_OPT_ABORT; in transmission NBD_CMD_READ
// and NBD_CMD_DISC with simple replies. Everything else is refused
// (NBD_REP_ERR_UNSUP, or EPERM/EINVAL for commands). It exists so that
// qemu-img can read a restore point's disk straight from the engine
// (export), without a temporary raw copy.

const (
	nbdMagic          = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic       = 0x49484156454f5054 // "IHAVEOPT"
	nbdRepMagic       = 0x0003e889045565a9
	nbdRequestMagic   = 0x25609513
	nbdSimpleRepMagic = 0x67446698

	nbdFlagFixedNewstyle = 1 << 0
	nbdFlagNoZeroes      = 1 << 1

	nbdOptExportName = 1
	nbdOptAbort      = 2
	nbdOptList       = 3
	nbdOptInfo       = 6
	nbdOptGo         = 7

	nbdRepAck    = 1
	nbdRepServer = 2
	nbdRepInfo   = 3

	nbdRepErrUnsup   = 1<<31 + 1
	nbdRepErrInvalid = 1<<31 + 3
	nbdRepErrUnknown = 1<<31 + 6

	nbdInfoExport    = 0
	nbdInfoBlockSize = 3

	nbdTFlagHasFlags  = 1 << 0
	nbdTFlagReadOnly  = 1 << 1
	nbdTFlagMultiConn = 1 << 8

	nbdCmdRead = 0
	nbdCmdDisc = 2

	nbdEPERM  = 1
	nbdEIO    = 5
	nbdEINVAL = 22

	// nbdMaxOption bounds an option's payload (names, info requests).
	nbdMaxOption = 64 << 10
	// nbdMaxRead bounds one NBD_CMD_READ (qemu asks for at most 32 MiB).
	nbdMaxRead = 32 << 20
	// nbdInFlight is how many reads one connection serves concurrently.
	nbdInFlight = 8
)

// errNBDProtocol marks a client that broke the protocol; the connection is
// closed.
var errNBDProtocol = errors.New("nbd: protocol error")

// nbdExport is one read-only export: a name and a ReadAt-shaped source safe
// for concurrent callers.
type nbdExport struct {
	Name string
	Size int64
	// ReadAt fills p from off; it is never asked to read past Size.
	ReadAt func(ctx context.Context, p []byte, off int64) error
}

// nbdRequest is a decoded transmission-phase request header.
type nbdRequest struct {
	Flags  uint16
	Type   uint16
	Handle uint64
	Offset uint64
	Length uint32
}

// parseNBDRequest decodes the 28-byte request header.
func parseNBDRequest(b []byte) (nbdRequest, error) {
	if len(b) != 28 {
		return nbdRequest{}, fmt.Errorf("%w: request header of %d bytes", errNBDProtocol, len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != nbdRequestMagic {
		return nbdRequest{}, fmt.Errorf("%w: bad request magic %#x", errNBDProtocol, m)
	}
	return nbdRequest{
		Flags:  binary.BigEndian.Uint16(b[4:]),
		Type:   binary.BigEndian.Uint16(b[6:]),
		Handle: binary.BigEndian.Uint64(b[8:]),
		Offset: binary.BigEndian.Uint64(b[16:]),
		Length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// parseNBDGo decodes the payload of NBD_OPT_GO / NBD_OPT_INFO: the export
// name and the information types requested.
func parseNBDGo(b []byte) (name string, infos []uint16, err error) {
	if len(b) < 4 {
		return "", nil, fmt.Errorf("%w: short NBD_OPT_GO", errNBDProtocol)
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) || len(b)-4-int(n) < 2 {
		return "", nil, fmt.Errorf("%w: NBD_OPT_GO name length %d", errNBDProtocol, n)
	}
	name = string(b[4 : 4+n])
	rest := b[4+n:]
	k := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*k {
		return "", nil, fmt.Errorf("%w: NBD_OPT_GO announces %d info requests in %d bytes", errNBDProtocol, k, len(rest))
	}
	for i := 0; i < k; i++ {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, nil
}

// nbdServer serves exports on a listener until Close.
type nbdServer struct {
	exports map[string]nbdExport
	ctx     context.Context
	cancel  context.CancelFunc
	ln      net.Listener
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	err   error // first read error met while serving (reported by Close)
}

// serveNBD starts serving the exports on ln. The first export is also the
// default one (empty name).
func serveNBD(ctx context.Context, ln net.Listener, exports ...nbdExport) *nbdServer {
	s := &nbdServer{exports: map[string]nbdExport{}, ln: ln, conns: map[net.Conn]struct{}{}}
	for i, e := range exports {
		s.exports[e.Name] = e
		if i == 0 {
			s.exports[""] = e
		}
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveConn(c)
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

// Close stops the listener and every connection and returns the first
// error a read of an export returned.
func (s *nbdServer) Close() error {
	s.cancel()
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.err
}

func (s *nbdServer) noteErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// serveConn runs the handshake then the transmission phase.
func (s *nbdServer) serveConn(rw io.ReadWriter) error {
	e, _, err := s.handshake(rw)
	if err != nil || e == nil {
		return err
	}
	return s.transmit(rw, *e)
}

// handshake runs the fixed newstyle negotiation; it returns the export
// chosen (nil when the client aborted).
func (s *nbdServer) handshake(rw io.ReadWriter) (e *nbdExport, noZeroes bool, err error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], nbdMagic)
	binary.BigEndian.PutUint64(hello[8:], nbdOptMagic)
	binary.BigEndian.PutUint16(hello[16:], nbdFlagFixedNewstyle|nbdFlagNoZeroes)
	if _, err := rw.Write(hello[:]); err != nil {
		return nil, false, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(rw, cf[:]); err != nil {
		return nil, false, err
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&nbdFlagFixedNewstyle == 0 || flags&^uint32(nbdFlagFixedNewstyle|nbdFlagNoZeroes) != 0 {
		return nil, false, fmt.Errorf("%w: client flags %#x", errNBDProtocol, flags)
	}
	noZeroes = flags&nbdFlagNoZeroes != 0
	tflags := uint16(nbdTFlagHasFlags | nbdTFlagReadOnly | nbdTFlagMultiConn)
	for {
		var h [16]byte
		if _, err := io.ReadFull(rw, h[:]); err != nil {
			return nil, false, err
		}
		if binary.BigEndian.Uint64(h[:]) != nbdOptMagic {
			return nil, false, fmt.Errorf("%w: bad option magic", errNBDProtocol)
		}
		opt := binary.BigEndian.Uint32(h[8:])
		n := binary.BigEndian.Uint32(h[12:])
		if n > nbdMaxOption {
			return nil, false, fmt.Errorf("%w: option %d of %d bytes", errNBDProtocol, opt, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(rw, data); err != nil {
			return nil, false, err
		}
		switch opt {
		case nbdOptExportName:
			ex, ok := s.exports[string(data)]
			if !ok {
				return nil, false, fmt.Errorf("nbd: unknown export %q", data)
			}
			b := make([]byte, 10, 134)
			binary.BigEndian.PutUint64(b, uint64(ex.Size))
			binary.BigEndian.PutUint16(b[8:], tflags)
			if !noZeroes {
				b = b[:134]
			}
			if _, err := rw.Write(b); err != nil {
				return nil, false, err
			}
			return &ex, noZeroes, nil
		case nbdOptAbort:
			optReply(rw, opt, nbdRepAck, nil)
			return nil, false, nil
		case nbdOptList:
			if n != 0 {
				if err := optReply(rw, opt, nbdRepErrInvalid, nil); err != nil {
					return nil, false, err
				}
				continue
			}
			for name := range s.exports {
				if name == "" {
					continue
				}
				b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
				if err := optReply(rw, opt, nbdRepServer, append(b, name...)); err != nil {
					return nil, false, err
				}
			}
			if err := optReply(rw, opt, nbdRepAck, nil); err != nil {
				return nil, false, err
			}
		case nbdOptInfo, nbdOptGo:
			name, infos, perr := parseNBDGo(data)
			if perr != nil {
				if err := optReply(rw, opt, nbdRepErrInvalid, nil); err != nil {
					return nil, false, err
				}
				continue
			}
			ex, ok := s.exports[name]
			if !ok {
				if err := optReply(rw, opt, nbdRepErrUnknown, []byte("no such export")); err != nil {
					return nil, false, err
				}
				continue
			}
			info := binary.BigEndian.AppendUint16(nil, nbdInfoExport)
			info = binary.BigEndian.AppendUint64(info, uint64(ex.Size))
			info = binary.BigEndian.AppendUint16(info, tflags)
			if err := optReply(rw, opt, nbdRepInfo, info); err != nil {
				return nil, false, err
			}
			for _, it := range infos {
				if it == nbdInfoBlockSize {
					bs := binary.BigEndian.AppendUint16(nil, nbdInfoBlockSize)
					bs = binary.BigEndian.AppendUint32(bs, 1)
					bs = binary.BigEndian.AppendUint32(bs, 4096)
					bs = binary.BigEndian.AppendUint32(bs, nbdMaxRead)
					if err := optReply(rw, opt, nbdRepInfo, bs); err != nil {
						return nil, false, err
					}
				}
			}
			if err := optReply(rw, opt, nbdRepAck, nil); err != nil {
				return nil, false, err
			}
			if opt == nbdOptGo {
				return &ex, noZeroes, nil
			}
		default:
			// Structured replies, meta contexts, TLS, extended headers…:
			// not offered; the client falls back to simple replies.
			if err := optReply(rw, opt, nbdRepErrUnsup, nil); err != nil {
				return nil, false, err
			}
		}
	}
}

func optReply(w io.Writer, opt, typ uint32, data []byte) error {
	b := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint64(b, nbdRepMagic)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

// transmit serves requests until NBD_CMD_DISC, an error or Close. Reads run
// concurrently (nbdInFlight); replies are written whole under a mutex.
func (s *nbdServer) transmit(rw io.ReadWriter, e nbdExport) error {
	var (
		wmu sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, nbdInFlight)
	)
	defer wg.Wait()
	reply := func(handle uint64, errno uint32, data []byte) error {
		var h [16]byte
		binary.BigEndian.PutUint32(h[0:], nbdSimpleRepMagic)
		binary.BigEndian.PutUint32(h[4:], errno)
		binary.BigEndian.PutUint64(h[8:], handle)
		wmu.Lock()
		defer wmu.Unlock()
		if _, err := rw.Write(h[:]); err != nil {
			return err
		}
		if len(data) > 0 {
			_, err := rw.Write(data)
			return err
		}
		return nil
	}
	var hb [28]byte
	for {
		if _, err := io.ReadFull(rw, hb[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		rq, err := parseNBDRequest(hb[:])
		if err != nil {
			return err
		}
		switch rq.Type {
		case nbdCmdDisc:
			return nil
		case nbdCmdRead:
			if rq.Length > nbdMaxRead || rq.Offset > uint64(e.Size) || uint64(rq.Length) > uint64(e.Size)-rq.Offset {
				if err := reply(rq.Handle, nbdEINVAL, nil); err != nil {
					return err
				}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-s.ctx.Done():
				return s.ctx.Err()
			}
			wg.Add(1)
			go func(rq nbdRequest) {
				defer func() { <-sem; wg.Done() }()
				buf := make([]byte, rq.Length)
				if err := e.ReadAt(s.ctx, buf, int64(rq.Offset)); err != nil {
					s.noteErr(fmt.Errorf("read %s at %d: %w", e.Name, rq.Offset, err))
					reply(rq.Handle, nbdEIO, nil)
					return
				}
				reply(rq.Handle, 0, buf)
			}(rq)
		default:
			if rq.Type == 1 { // NBD_CMD_WRITE carries a payload: drop it
				if rq.Length > nbdMaxRead {
					return fmt.Errorf("%w: write of %d bytes", errNBDProtocol, rq.Length)
				}
				if _, err := io.CopyN(io.Discard, rw, int64(rq.Length)); err != nil {
					return err
				}
				if err := reply(rq.Handle, nbdEPERM, nil); err != nil {
					return err
				}
				continue
			}
			if err := reply(rq.Handle, nbdEINVAL, nil); err != nil {
				return err
			}
		}
	}
}
