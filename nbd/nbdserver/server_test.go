package nbdserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/nbd/nbdserver"
)

// exportSize is odd on purpose: no block size divides it.
const exportSize = 3<<20 + 4097

// TestReadByteExact: two clients (one splitting reads into small
// requests) read random ranges at odd offsets from many goroutines at
// once; every byte matches, and Lookup got the name exactly as sent.
func TestReadByteExact(t *testing.T) {
	data := randomData(exportSize, 1)
	cat := newCatalog(memExport(xenName, data))
	_, addr := serve(t, nbdserver.Options{Lookup: cat.lookup})
	clients := []*nbd.Client{
		dial(t, nbd.Options{Address: addr, Export: xenName}),
		dial(t, nbd.Options{Address: addr, Export: xenName, MaxRequest: 4096, QueueDepth: 64}),
	}
	for _, c := range clients {
		in := c.Info()
		if in.Size != exportSize || in.Flags&nbd.FlagReadOnly == 0 || in.Flags&nbd.FlagCanMultiConn == 0 || in.Flags&nbd.FlagHasFlags == 0 {
			t.Fatalf("info %+v", in)
		}
		if in.MinBlock != 1 || in.PreferredBlock != 4096 || in.MaxPayload != 32<<20 || in.TLS || in.StructuredReplies || in.ExportNameFallback {
			t.Fatalf("info %+v", in)
		}
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		c := clients[g%2]
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 25 {
				off := r.Int64N(exportSize)
				n := 1 + r.IntN(300<<10)
				buf := make([]byte, n)
				got, err := c.ReadAtContext(ctx, buf, off)
				want := data[off:min(off+int64(n), exportSize)]
				if (err != nil && err != io.EOF) || got != len(want) || (err == io.EOF) != (off+int64(n) > exportSize) {
					errs <- fmt.Errorf("read [%d, +%d): %d bytes, %v", off, n, got, err)
					return
				}
				if !slices.Equal(buf[:got], want) {
					errs <- fmt.Errorf("read [%d, +%d): data differs", off, n)
					return
				}
			}
		})
	}
	// And the whole export at once, in 4 KiB requests 64 deep.
	wg.Go(func() {
		buf := make([]byte, exportSize)
		if n, err := clients[1].ReadAtContext(ctx, buf, 0); err != nil || n != exportSize || !slices.Equal(buf, data) {
			errs <- fmt.Errorf("whole export: %d bytes, %v", n, err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, name := range cat.names() {
		if name != xenName {
			t.Errorf("Lookup got %q, want %q", name, xenName)
		}
	}
}

// TestReadPastEnd: the client clips a read at the end (io.EOF); a raw
// request beyond the end, or longer than 32 MiB, gets NBD_EINVAL and the
// connection goes on.
func TestReadPastEnd(t *testing.T) {
	data := randomData(exportSize, 2)
	_, addr := serve(t, nbdserver.Options{Lookup: newCatalog(memExport("d", data)).lookup})
	c := dial(t, nbd.Options{Address: addr, Export: "d"})
	buf := make([]byte, 300)
	if n, err := c.ReadAt(buf, exportSize-100); n != 100 || err != io.EOF || !slices.Equal(buf[:n], data[exportSize-100:]) {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if n, err := c.ReadAt(buf, exportSize); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v", n, err)
	}

	r := dialRaw(t, addr, 3)
	r.goExport("d")
	r.expectErrno(0, exportSize-10, 11, 22)
	r.expectErrno(0, exportSize+1, 0, 22)
	r.expectErrno(0, 1<<63, 1, 22)
	r.expectErrno(0, 0, 32<<20+1, 22)
	r.expectErrno(0, exportSize, 0, 0)
	r.expectErrno(0, exportSize-10, 10, 0)
	got := make([]byte, 10)
	r.read(got)
	if !slices.Equal(got, data[exportSize-10:]) {
		t.Fatal("last bytes differ")
	}
}

// TestLookupFailures: an unknown export and a refused one reach the client
// as its sentinels; a Lookup that fails otherwise, or returns an unusable
// export, is also an error of the server.
func TestLookupFailures(t *testing.T) {
	boom := errors.New("disk store offline")
	lookup := func(_ context.Context, name string) (nbdserver.Export, error) {
		switch name {
		case "policy":
			return nbdserver.Export{}, fmt.Errorf("session of another host: %w", nbdserver.ErrPolicy)
		case "boom":
			return nbdserver.Export{}, boom
		case "nodata":
			return nbdserver.Export{Size: 10}, nil
		}
		return nbdserver.Export{}, fmt.Errorf("no VDI %s: %w", name, nbdserver.ErrUnknownExport)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := nbdserver.Serve(context.Background(), ln, nbdserver.Options{Lookup: lookup})
	defer srv.Close()
	addr := ln.Addr().String()
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		want error
	}{{"nope", nbd.ErrUnknownExport}, {"policy", nbd.ErrPolicy}} {
		_, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: tc.name})
		if !errors.Is(err, tc.want) {
			t.Errorf("export %q: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := srv.Err(); err != nil {
		t.Fatalf("refusals are not server errors: %v", err)
	}
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: "boom"}); !errors.Is(err, nbd.ErrUnknownExport) || strings.Contains(err.Error(), boom.Error()) {
		t.Errorf("failing Lookup: %v", err)
	}
	if err := srv.Err(); !errors.Is(err, boom) {
		t.Errorf("server error %v, want %v", err, boom)
	}
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: "nodata"}); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Errorf("export without data: %v", err)
	}
	// NBD_OPT_EXPORT_NAME cannot refuse: the connection ends.
	r := dialRaw(t, addr, 3)
	r.option(1, []byte("nope"))
	r.expectClosed()
	if err := srv.Close(); !errors.Is(err, boom) {
		t.Errorf("Close: %v", err)
	}
}

// TestReadErrors: a failed read is NBD_EIO for that request only, and an
// error of the server; so is data that ends before the export's size.
func TestReadErrors(t *testing.T) {
	data := randomData(1<<20, 3)
	bad := errors.New("pack checksum mismatch")
	failing := readerFunc(func(p []byte, off int64) (int, error) {
		if off+int64(len(p)) > 512<<10 {
			return 0, bad
		}
		return copy(p, data[off:]), nil
	})
	short := readerFunc(func(p []byte, off int64) (int, error) {
		if off >= 1000 {
			return 0, io.EOF
		}
		n := copy(p, data[off:1000])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	})
	for _, tc := range []struct {
		name string
		data io.ReaderAt
		want error
	}{{"failing", failing, bad}, {"short", short, io.ErrUnexpectedEOF}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			e := nbdserver.Export{Name: "d", Size: int64(len(data)), Data: tc.data}
			srv := nbdserver.Serve(context.Background(), ln, nbdserver.Options{Lookup: newCatalog(e).lookup})
			defer srv.Close()
			c := dial(t, nbd.Options{Address: ln.Addr().String(), Export: "d"})
			buf := make([]byte, 4096)
			if _, err := c.ReadAt(buf, 900<<10); !errors.Is(err, syscall.EIO) {
				t.Fatalf("read: %v, want EIO", err)
			}
			if n, err := c.ReadAt(buf[:100], 0); err != nil || !slices.Equal(buf[:n], data[:100]) {
				t.Fatalf("read after the failure: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := srv.Close(); !errors.Is(err, tc.want) {
				t.Fatalf("Close: %v, want %v", err, tc.want)
			}
		})
	}
}

type readerFunc func(p []byte, off int64) (int, error)

func (f readerFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// TestTLS: with RequireTLS a client that trusts the CA reads over TLS, a
// plain one is told TLS is required, and one that does not trust the
// certificate fails the handshake, which is no error of the server.
func TestTLS(t *testing.T) {
	cs := newCerts(t, "nbdserver")
	other := newCerts(t, "other")
	data := randomData(exportSize, 4)
	_, addr := serve(t, nbdserver.Options{Lookup: newCatalog(memExport(xenName, data)).lookup, TLS: cs.server, RequireTLS: true})
	c := dial(t, nbd.Options{Address: addr, Export: xenName, CAPEM: cs.caPEM, ServerName: "127.0.0.1"})
	if !c.Info().TLS {
		t.Fatal("not TLS")
	}
	buf := make([]byte, exportSize)
	if n, err := c.ReadAt(buf, 0); err != nil || n != exportSize || !slices.Equal(buf, data) {
		t.Fatalf("read over TLS: %d, %v", n, err)
	}
	ctx := testCtx(t)
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: xenName}); !errors.Is(err, nbd.ErrTLSRequired) {
		t.Errorf("plain client: %v, want ErrTLSRequired", err)
	}
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: xenName, CAPEM: other.caPEM}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("client trusting another CA: %v", err)
	}
	if _, err := nbd.Dial(ctx, nbd.Options{Address: addr, Export: "nope", CAPEM: cs.caPEM}); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Errorf("unknown export over TLS: %v", err)
	}
}

// TestTLSOptional: with TLS offered but not required, both kinds of
// client read; a server without TLS refuses NBD_OPT_STARTTLS.
func TestTLSOptional(t *testing.T) {
	cs := newCerts(t, "nbdserver")
	data := randomData(100<<10, 5)
	cat := newCatalog(memExport("d", data))
	_, addr := serve(t, nbdserver.Options{Lookup: cat.lookup, TLS: cs.server})
	for _, o := range []nbd.Options{{Address: addr, Export: "d"}, {Address: addr, Export: "d", CAPEM: cs.caPEM}} {
		c := dial(t, o)
		buf := make([]byte, len(data))
		if n, err := c.ReadAt(buf, 0); err != nil || n != len(data) || !slices.Equal(buf, data) || c.Info().TLS != (o.CAPEM != nil) {
			t.Fatalf("TLS %v: read %d, %v", c.Info().TLS, n, err)
		}
	}
	_, plain := serve(t, nbdserver.Options{Lookup: cat.lookup})
	if _, err := nbd.Dial(testCtx(t), nbd.Options{Address: plain, Export: "d", CAPEM: cs.caPEM}); !errors.Is(err, nbd.ErrTLSUnavailable) {
		t.Errorf("TLS client of a server without TLS: %v", err)
	}
}

// TestForcedTLSProtocol: before TLS every option but STARTTLS and ABORT is
// refused and NBD_OPT_EXPORT_NAME ends the connection; a second STARTTLS
// is invalid; after TLS the negotiation goes on encrypted.
func TestForcedTLSProtocol(t *testing.T) {
	cs := newCerts(t, "nbdserver")
	data := randomData(8192, 6)
	_, addr := serve(t, nbdserver.Options{Lookup: newCatalog(memExport("d", data)).lookup, TLS: cs.server, RequireTLS: true,
		List: func(context.Context) []string { return []string{"d"} }})

	r := dialRaw(t, addr, 3)
	r.expectReply(3, nil, tlsReqd)         // NBD_OPT_LIST
	r.expectReply(8, nil, tlsReqd)         // NBD_OPT_STRUCTURED_REPLY
	r.expectReply(99, nil, tlsReqd)        // an unknown option
	r.expectReply(6, goData("d"), tlsReqd) // NBD_OPT_INFO
	r.expectReply(7, goData("d"), tlsReqd) // NBD_OPT_GO
	r.expectReply(2, nil, 1)               // NBD_OPT_ABORT is acknowledged
	r.expectClosed()

	r = dialRaw(t, addr, 3)
	r.option(1, []byte("d")) // NBD_OPT_EXPORT_NAME before TLS
	r.expectClosed()

	r = dialRaw(t, addr, 3)
	r.startTLS(cs.caPEM)
	r.expectReply(5, nil, invalid) // STARTTLS again
	r.expectReply(8, nil, unsup)   // no structured replies
	r.expectReply(3, nil, 2)       // NBD_REP_SERVER "d"
	if typ, _ := r.reply(3); typ != 1 {
		t.Fatalf("LIST ends with %d", typ)
	}
	r.goExport("d")
	r.request(0, 9, 100, 50, nil)
	if errno, cookie := r.simpleReply(); errno != 0 || cookie != 9 {
		t.Fatalf("read over TLS: errno %d cookie %d", errno, cookie)
	}
	got := make([]byte, 50)
	r.read(got)
	if !slices.Equal(got, data[100:150]) {
		t.Fatal("data differs")
	}
	r.request(2, 10, 0, 0, nil) // NBD_CMD_DISC
	r.expectClosed()
}

// Option reply errors, as the tests spell them.
const (
	unsup   = 1<<31 + 1
	policy  = 1<<31 + 2
	invalid = 1<<31 + 3
	tlsReqd = 1<<31 + 5
	unknown = 1<<31 + 6
	tooBig  = 1<<31 + 9
)

// TestHandshakeOptions: the options a raw client can send, and what each
// gets.
func TestHandshakeOptions(t *testing.T) {
	data := randomData(5000, 7)
	e := memExport("d", data)
	e.Description = "disk 0 of vm-7"
	cat := newCatalog(e, nbdserver.Export{Size: 0, Data: strings.NewReader("")})
	_, addr := serve(t, nbdserver.Options{Lookup: cat.lookup})

	r := dialRaw(t, addr, 3)
	r.expectReply(3, nil, policy)                        // no List
	r.expectReply(5, nil, policy)                        // no TLS
	r.expectReply(8, nil, unsup)                         // structured replies
	r.expectReply(10, goData("d"), unsup)                // metadata contexts
	r.expectReply(7, []byte{0, 0, 0, 9, 'd'}, invalid)   // a truncated NBD_OPT_GO
	r.expectReply(7, append(goData("d", 3), 0), invalid) // a trailing byte
	if _, typ := r.info(6, "nope"); typ != unknown {
		t.Fatalf("INFO of an unknown export: %d", typ)
	}
	long := strings.Repeat("x", 4097)
	if _, typ := r.info(6, long); typ != invalid {
		t.Fatalf("INFO of a 4097-byte name: %d", typ)
	}
	infos, typ := r.info(6, "d", 1, 2, 3, 3, 4242)
	if typ != 1 {
		t.Fatalf("INFO: %d", typ)
	}
	want := map[uint16]string{
		0: "\x00\x00\x00\x00\x00\x00\x13\x88\x01\x03",
		1: "d",
		2: "disk 0 of vm-7",
		3: "\x00\x00\x00\x01\x00\x00\x10\x00\x02\x00\x00\x00",
	}
	if len(infos) != len(want) {
		t.Fatalf("INFO replies %v", infos)
	}
	for k, v := range want {
		if string(infos[k]) != v {
			t.Errorf("NBD_INFO %d: %q, want %q", k, infos[k], v)
		}
	}
	// The default export (empty name) has no name or description to
	// send; only NBD_INFO_EXPORT comes unasked.
	if infos, typ := r.info(7, "", 1, 2); typ != 1 || len(infos) != 1 || string(infos[0]) != "\x00\x00\x00\x00\x00\x00\x00\x00\x01\x03" {
		t.Fatalf("GO of the empty export: %v, %d", infos, typ)
	}
	r.expectErrno(0, 0, 0, 0)
	r.expectErrno(0, 0, 1, 22)

	// NBD_OPT_EXPORT_NAME, with the 124 zeroes of a client that did not
	// ask to skip them.
	r = dialRaw(t, addr, 1)
	r.option(1, []byte("d"))
	b := make([]byte, 134)
	r.read(b)
	if string(b[:10]) != "\x00\x00\x00\x00\x00\x00\x13\x88\x01\x03" || strings.Trim(string(b[10:]), "\x00") != "" {
		t.Fatalf("EXPORT_NAME reply %x", b)
	}
	r.expectErrno(0, 4990, 10, 0)
	got := make([]byte, 10)
	r.read(got)
	if !slices.Equal(got, data[4990:]) {
		t.Fatal("data differs")
	}

	// Options too long, and clients the server does not serve.
	r = dialRaw(t, addr, 3)
	r.option(7, make([]byte, 64<<10+1))
	if typ, _ := r.reply(7); typ != tooBig {
		t.Fatalf("long option: %d", typ)
	}
	r.expectClosed()
	r = dialRaw(t, addr, 0) // not fixed newstyle
	r.expectClosed()
	r = dialRaw(t, addr, 7) // an unknown client flag
	r.expectClosed()
	r = dialRaw(t, addr, 3)
	r.write([]byte("IHAVEOPX\x00\x00\x00\x03\x00\x00\x00\x00"))
	r.expectClosed()
}

// TestList: NBD_OPT_LIST announces what List returns.
func TestList(t *testing.T) {
	names := []string{"disk-0", xenName, strings.Repeat("y", 4097), ""}
	_, addr := serve(t, nbdserver.Options{Lookup: newCatalog().lookup, List: func(context.Context) []string { return names }})
	r := dialRaw(t, addr, 3)
	r.expectReply(3, []byte("x"), invalid)
	r.option(3, nil)
	var got []string
	for {
		typ, data := r.reply(3)
		if typ == 1 {
			break
		}
		if typ != 2 || len(data) < 4 || int(data[3])+int(data[2])<<8 != len(data)-4 {
			t.Fatalf("LIST reply %d %q", typ, data)
		}
		got = append(got, string(data[4:]))
	}
	if want := []string{"disk-0", xenName, ""}; !slices.Equal(got, want) {
		t.Fatalf("LIST: %q, want %q", got, want)
	}
}

// TestTransmission: writes are refused (their payload skipped), commands
// not advertised are invalid, several requests may be in flight, and
// NBD_CMD_DISC answers them all before the server hangs up.
func TestTransmission(t *testing.T) {
	data := randomData(1<<20, 8)
	_, addr := serve(t, nbdserver.Options{Lookup: newCatalog(memExport("d", data)).lookup})
	r := dialRaw(t, addr, 3)
	r.goExport("d")
	r.request(1, 77, 0, 4096, make([]byte, 4096)) // NBD_CMD_WRITE
	if errno, cookie := r.simpleReply(); errno != 1 || cookie != 77 {
		t.Fatalf("write: errno %d cookie %d", errno, cookie)
	}
	r.expectErrno(4, 0, 4096, 1)  // NBD_CMD_TRIM
	r.expectErrno(6, 0, 4096, 1)  // NBD_CMD_WRITE_ZEROES
	r.expectErrno(3, 0, 0, 22)    // NBD_CMD_FLUSH
	r.expectErrno(5, 0, 4096, 22) // NBD_CMD_CACHE
	r.expectErrno(7, 0, 4096, 22) // NBD_CMD_BLOCK_STATUS
	r.expectErrno(200, 0, 0, 22)  // unknown

	// 40 reads in flight, then NBD_CMD_DISC: all are answered.
	const k = 40
	for i := range k {
		r.request(0, uint64(1000+i), uint64(i*7919), uint32(1+i*1000), nil)
	}
	r.request(2, 1, 0, 0, nil)
	seen := map[uint64]bool{}
	for range k {
		errno, cookie := r.simpleReply()
		i := int(cookie) - 1000
		if errno != 0 || i < 0 || i >= k || seen[cookie] {
			t.Fatalf("reply errno %d cookie %d", errno, cookie)
		}
		seen[cookie] = true
		got := make([]byte, 1+i*1000)
		r.read(got)
		if !slices.Equal(got, data[i*7919:i*7919+len(got)]) {
			t.Fatalf("read %d: data differs", i)
		}
	}
	r.expectClosed()

	// A write too long to skip, and a bad magic, end the connection.
	r = dialRaw(t, addr, 3)
	r.goExport("d")
	r.request(1, 1, 0, 32<<20+1, nil)
	r.expectClosed()
	r = dialRaw(t, addr, 3)
	r.goExport("d")
	r.write(make([]byte, 28))
	r.expectClosed()
}

// TestCloseWaits: Close ends connections, lets a read under way finish
// first, and refuses new connections; a client in transmission sees its
// connection lost.
func TestCloseWaits(t *testing.T) {
	data := randomData(1<<20, 9)
	entered, release := make(chan struct{}), make(chan struct{})
	var done atomic.Bool
	var once sync.Once
	slow := readerFunc(func(p []byte, off int64) (int, error) {
		if off == 4096 {
			once.Do(func() { close(entered) })
			<-release
			done.Store(true)
		}
		return copy(p, data[off:]), nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := nbdserver.Serve(context.Background(), ln, nbdserver.Options{Lookup: newCatalog(nbdserver.Export{Name: "d", Size: int64(len(data)), Data: slow}).lookup})
	addr := ln.Addr().String()
	c := dial(t, nbd.Options{Address: addr, Export: "d"})
	readErr := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(make([]byte, 100), 4096)
		readErr <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !done.Load() {
		t.Fatal("Close returned before the read under way ended")
	}
	if err := <-readErr; err != nil && !errors.Is(err, nbd.ErrConnectionLost) {
		t.Fatalf("read during Close: %v", err)
	}
	if _, err := c.ReadAt(make([]byte, 10), 0); !errors.Is(err, nbd.ErrConnectionLost) {
		t.Fatalf("read after Close: %v", err)
	}
	if _, err := nbd.Dial(testCtx(t), nbd.Options{Address: addr, Export: "d"}); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestContextEnds: the end of Serve's context closes the connections.
func TestContextEnds(t *testing.T) {
	data := randomData(1<<16, 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := nbdserver.Serve(ctx, ln, nbdserver.Options{Lookup: newCatalog(memExport("d", data)).lookup})
	defer srv.Close()
	c := dial(t, nbd.Options{Address: ln.Addr().String(), Export: "d"})
	if _, err := c.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	// The server closes the connection soon; reads succeed until then.
	tctx := testCtx(t)
	for err == nil {
		_, err = c.ReadAtContext(tctx, make([]byte, 10), 0)
	}
	if !errors.Is(err, nbd.ErrConnectionLost) {
		t.Fatalf("read after the context ended: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOptionsValidate: every problem at once; Serve with bad options
// serves nothing and says why.
func TestOptionsValidate(t *testing.T) {
	o := nbdserver.Options{RequireTLS: true, HandshakeTimeout: -1}
	err := o.Validate()
	for _, want := range []string{"Lookup", "RequireTLS", "HandshakeTimeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %s", err, want)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := nbdserver.Serve(context.Background(), ln, o)
	if srv.Err() == nil {
		t.Fatal("Serve accepted invalid options")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still open")
	}
	if err := srv.Close(); err == nil {
		t.Error("Close: nil")
	}
}
