package nbdserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/nbd/internal/wire"
	"github.com/ahvfs/ahvfs/nbd/nbdserver"
	"github.com/ahvfs/ahvfs/nbd/nbdtest"
)

// xenName is an export name as XCP-ng hands them out.
const xenName = "/5e3b8c2a-1f0d-4e6b-9a7c-2d4f6e8a0b1c?session_id=OpaqueRef:9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"

// guard bounds every wait of a test on a busy machine; it is not a timing
// assertion.
const guard = 2 * time.Minute

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	t.Cleanup(cancel)
	return ctx
}

// randomData returns n reproducible random bytes.
func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// catalog is a Lookup over a fixed set of exports that records the names
// it was asked for.
type catalog struct {
	mu      sync.Mutex
	exports map[string]nbdserver.Export
	asked   []string
}

func newCatalog(exports ...nbdserver.Export) *catalog {
	c := &catalog{exports: map[string]nbdserver.Export{}}
	for _, e := range exports {
		c.exports[e.Name] = e
	}
	return c
}

func (c *catalog) lookup(_ context.Context, name string) (nbdserver.Export, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, name)
	e, ok := c.exports[name]
	if !ok {
		return nbdserver.Export{}, nbdserver.ErrUnknownExport
	}
	return e, nil
}

func (c *catalog) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.asked...)
}

// memExport is an export of data in memory.
func memExport(name string, data []byte) nbdserver.Export {
	return nbdserver.Export{Name: name, Size: int64(len(data)), Data: bytes.NewReader(data)}
}

// serve starts a server on a loopback port. Unless the test closes it
// itself, the server must end without error.
func serve(t *testing.T, o nbdserver.Options) (*nbdserver.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := nbdserver.Serve(context.Background(), ln, o)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func dial(t *testing.T, o nbd.Options) *nbd.Client {
	t.Helper()
	c, err := nbd.Dial(testCtx(t), o)
	if err != nil {
		t.Fatalf("dial %s export %q: %v", o.Address, o.Export, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// certs is a CA and a server certificate for 127.0.0.1.
type certs struct {
	dir    string // ca-cert.pem, server-cert.pem, server-key.pem
	caPEM  []byte
	server *tls.Config
}

func newCerts(t *testing.T, name string) *certs {
	t.Helper()
	d := nbdtest.NewTLSDir(t, name)
	ca, err := os.ReadFile(d.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(filepath.Join(d.Dir, "server-cert.pem"), filepath.Join(d.Dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &certs{dir: d.Dir, caPEM: ca, server: &tls.Config{Certificates: []tls.Certificate{kp}}}
}

// rawClient speaks the protocol byte by byte, for what the nbd client
// never sends.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	rw   io.ReadWriter
}

// dialRaw connects and answers the greeting with flags.
func dialRaw(t *testing.T, addr string, flags uint32) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(guard))
	r := &rawClient{t: t, conn: conn, rw: conn}
	var g [wire.GreetingLen]byte
	r.read(g[:])
	if binary.BigEndian.Uint64(g[:]) != wire.MagicInit || binary.BigEndian.Uint64(g[8:]) != wire.MagicOpt {
		t.Fatalf("greeting %x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != wire.FlagFixedNewstyle|wire.FlagNoZeroes {
		t.Fatalf("handshake flags %#x", f)
	}
	r.write(binary.BigEndian.AppendUint32(nil, flags))
	return r
}

func (r *rawClient) read(b []byte) {
	r.t.Helper()
	if _, err := io.ReadFull(r.rw, b); err != nil {
		r.t.Fatalf("read: %v", err)
	}
}

func (r *rawClient) write(b []byte) {
	r.t.Helper()
	if _, err := r.rw.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawClient) option(opt uint32, data []byte) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, wire.MagicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	r.write(append(b, data...))
}

// reply reads one option reply to opt.
func (r *rawClient) reply(opt uint32) (typ uint32, data []byte) {
	r.t.Helper()
	var h [wire.OptReplyHeaderLen]byte
	r.read(h[:])
	if m := binary.BigEndian.Uint64(h[:]); m != wire.MagicOptReply {
		r.t.Fatalf("option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		r.t.Fatalf("reply to %s names %s", wire.OptName(opt), wire.OptName(o))
	}
	data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	r.read(data)
	return binary.BigEndian.Uint32(h[12:]), data
}

// expectReply sends an option and checks the type of its one reply.
func (r *rawClient) expectReply(opt uint32, data []byte, want uint32) []byte {
	r.t.Helper()
	r.option(opt, data)
	typ, msg := r.reply(opt)
	if typ != want {
		r.t.Fatalf("%s: %s (%q), want %s", wire.OptName(opt), wire.RepName(typ), msg, wire.RepName(want))
	}
	return msg
}

// startTLS upgrades the connection, trusting caPEM.
func (r *rawClient) startTLS(caPEM []byte) {
	r.t.Helper()
	r.expectReply(wire.OptStartTLS, nil, wire.RepAck)
	pool := x509Pool(r.t, caPEM)
	tc := tls.Client(r.conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("TLS handshake: %v", err)
	}
	r.rw = tc
}

// goData is the data of NBD_OPT_GO and NBD_OPT_INFO.
func goData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// info sends NBD_OPT_INFO or NBD_OPT_GO and returns the NBD_REP_INFO
// replies by type, or the error reply.
func (r *rawClient) info(opt uint32, name string, infos ...uint16) (map[uint16][]byte, uint32) {
	r.t.Helper()
	r.option(opt, goData(name, infos...))
	got := map[uint16][]byte{}
	for {
		typ, data := r.reply(opt)
		switch {
		case typ == wire.RepAck:
			return got, typ
		case typ == wire.RepInfo:
			it := binary.BigEndian.Uint16(data)
			if _, dup := got[it]; dup {
				r.t.Fatalf("NBD_INFO %d sent twice", it)
			}
			got[it] = data[2:]
		case typ&wire.RepFlagError != 0:
			return nil, typ
		default:
			r.t.Fatalf("%s reply to %s", wire.RepName(typ), wire.OptName(opt))
		}
	}
}

// goExport enters transmission.
func (r *rawClient) goExport(name string) {
	r.t.Helper()
	if _, typ := r.info(wire.OptGo, name); typ != wire.RepAck {
		r.t.Fatalf("NBD_OPT_GO %q: %s", name, wire.RepName(typ))
	}
}

func (r *rawClient) request(cmd uint16, cookie, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint32(nil, wire.MagicRequest)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, cmd)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	r.write(append(b, payload...))
}

// simpleReply reads a simple reply's header.
func (r *rawClient) simpleReply() (errno uint32, cookie uint64) {
	r.t.Helper()
	var h [wire.SimpleReplyLen]byte
	r.read(h[:])
	if m := binary.BigEndian.Uint32(h[:]); m != wire.MagicSimpleReply {
		r.t.Fatalf("reply magic %#x", m)
	}
	return binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
}

// expectErrno sends a request without payload and checks its error.
func (r *rawClient) expectErrno(cmd uint16, off uint64, length uint32, want uint32) {
	r.t.Helper()
	r.request(cmd, 77, off, length, nil)
	errno, cookie := r.simpleReply()
	if errno != want || cookie != 77 {
		r.t.Fatalf("%s [%d, +%d): %s for cookie %d, want %s", wire.CmdName(cmd), off, length, wire.ErrnoName(errno), cookie, wire.ErrnoName(want))
	}
}

// expectClosed checks that the server closed the connection.
func (r *rawClient) expectClosed() {
	r.t.Helper()
	var b [1]byte
	n, err := r.rw.Read(b[:])
	if err == nil {
		r.t.Fatalf("connection still open: read %d bytes", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection still open: %v", err)
	}
}

func x509Pool(t *testing.T, caPEM []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	return p
}
