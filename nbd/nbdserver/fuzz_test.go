package nbdserver_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/ahvfs/ahvfs/internal/testtls"
	"github.com/ahvfs/ahvfs/nbd/internal/wire"
	"github.com/ahvfs/ahvfs/nbd/nbdserver"
)

// pipeListener is an in-memory net.Listener: Dial hands the server one
// end of a net.Pipe.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) Dial() (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// sessionSeeds are client byte streams: handshakes with every option,
// then requests.
func sessionSeeds() [][]byte {
	var b []byte
	opt := func(o uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, wire.MagicOpt)
		b = binary.BigEndian.AppendUint32(b, o)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	rq := func(typ uint16, off uint64, n uint32) {
		b = binary.BigEndian.AppendUint32(b, wire.MagicRequest)
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, 42)
		b = binary.BigEndian.AppendUint64(b, off)
		b = binary.BigEndian.AppendUint32(b, n)
	}
	flags := binary.BigEndian.AppendUint32(nil, wire.FlagCFixedNewstyle|wire.FlagCNoZeroes)

	b = append([]byte(nil), flags...)
	opt(wire.OptStructuredReply, nil)
	opt(wire.OptList, nil)
	opt(wire.OptInfo, goData("x", wire.InfoName, wire.InfoDescription, wire.InfoBlockSize))
	opt(wire.OptGo, goData("x", wire.InfoBlockSize))
	rq(wire.CmdRead, 0, 512)
	rq(wire.CmdRead, 4000, 96)
	rq(wire.CmdRead, 4000, 200)
	rq(wire.CmdWrite, 0, 4)
	b = append(b, "data"...)
	rq(wire.CmdTrim, 0, 4096)
	rq(wire.CmdDisc, 0, 0)
	goSession := b

	b = append([]byte(nil), flags...)
	opt(wire.OptExportName, []byte("x"))
	rq(wire.CmdRead, 4095, 1)
	exportName := b

	b = append([]byte(nil), flags...)
	opt(wire.OptStartTLS, nil)
	startTLS := b

	b = append([]byte(nil), flags...)
	opt(wire.OptGo, goData("nope"))
	opt(wire.OptAbort, nil)
	abort := b

	return [][]byte{goSession, exportName, startTLS, abort, goSession[:20], flags}
}

// FuzzSession feeds arbitrary client bytes (handshake, options,
// requests) to a server, with and without RequireTLS: it must neither
// panic, nor read outside the export, nor report an error of its own.
func FuzzSession(f *testing.F) {
	for _, s := range sessionSeeds() {
		f.Add(s)
	}
	dir := f.TempDir()
	ca := testtls.NewCA(f, dir, "fuzz")
	cert, key := ca.Server(f, "fuzz-server")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		f.Fatal(err)
	}
	const size = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		data := readerFunc(func(p []byte, off int64) (int, error) {
			if off < 0 || off+int64(len(p)) > size {
				t.Errorf("read [%d, +%d) outside the export", off, len(p))
			}
			clear(p)
			return len(p), nil
		})
		lookup := func(_ context.Context, name string) (nbdserver.Export, error) {
			if name != "x" && name != "" {
				return nbdserver.Export{}, nbdserver.ErrUnknownExport
			}
			return nbdserver.Export{Name: "x", Size: size, Data: data, Description: "fuzz"}, nil
		}
		for _, o := range []nbdserver.Options{
			{Lookup: lookup, List: func(context.Context) []string { return []string{"x"} }},
			{Lookup: lookup, TLS: &tls.Config{Certificates: []tls.Certificate{kp}}, RequireTLS: true},
		} {
			ln := newPipeListener()
			srv := nbdserver.Serve(context.Background(), ln, o)
			c, err := ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			drained := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, c)
				close(drained)
			}()
			_, _ = c.Write(in) // returns once the server has read it all, or hung up
			c.Close()
			<-drained
			if err := srv.Close(); err != nil {
				t.Fatalf("server error: %v", err)
			}
		}
	})
}
