package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestFakeExportNameFallback(t *testing.T) {
	for _, zeroes := range []bool{false, true} {
		s := startFake(t, fakeConfig{size: 1 << 20, noGo: true, zeroes: zeroes, serve: serveSimple})
		c := dialFake(t, s, Options{Export: "x"})
		if info := c.Info(); !info.ExportNameFallback || info.Size != 1<<20 || info.StructuredReplies {
			t.Fatalf("info %+v", info)
		}
		buf := make([]byte, 100000)
		if _, err := c.ReadAt(buf, 777); err != nil {
			t.Fatal(err)
		}
		checkPattern(t, buf, 777)
		want := []uint32{optStructuredReply, optGo, optExportName}
		if got := s.options()[0]; !slices.Equal(got, want) {
			t.Fatalf("options %v, want %v", got, want)
		}
	}
}

func TestFakeNotFixedNewstyle(t *testing.T) {
	s := startFake(t, fakeConfig{size: 4096, notFixed: true, zeroes: true, serve: serveSimple})
	c := dialFake(t, s, Options{})
	if !c.Info().ExportNameFallback {
		t.Fatal("not a fallback")
	}
	if got := s.options()[0]; !slices.Equal(got, []uint32{optExportName}) {
		t.Fatalf("options %v", got)
	}
	if _, err := Dial(fakeCtx(t), Options{Address: s.addr, TLS: true, InsecureSkipVerify: true}); !errors.Is(err, ErrTLSUnavailable) {
		t.Fatalf("TLS with a non-fixed server: %v", err)
	}
}

func TestFakeOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		reply uint32
		want  error
	}{
		{repErrUnknown, ErrUnknownExport},
		{repErrTLSReqd, ErrTLSRequired},
		{repErrPolicy, ErrPolicy},
		{repErrShutdown, ErrShutdown},
		{repErrPlatform, ErrUnsupported},
		{repErrInvalid, nil},
		{repErrBlockSizeReqd, nil},
		{repFlagError | 99, nil},
	} {
		t.Run(repName(tc.reply), func(t *testing.T) {
			s := startFake(t, fakeConfig{size: 4096, structured: true, goErr: tc.reply, goErrMsg: "because\x01"})
			_, err := Dial(fakeCtx(t), Options{Address: s.addr, Export: "vdi"})
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Reply != tc.reply || oe.Option != optGo || oe.Message != "because?" {
				t.Fatalf("dial: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("dial: %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), `"vdi"`) || !strings.Contains(err.Error(), "because?") {
				t.Fatalf("error %q lacks the export or the message", err)
			}
		})
	}
}

func TestFakeStartTLSRefused(t *testing.T) {
	s := startFake(t, fakeConfig{size: 4096})
	_, err := Dial(fakeCtx(t), Options{Address: s.addr, TLS: true})
	if !errors.Is(err, ErrTLSUnavailable) || !errors.Is(err, ErrPolicy) {
		t.Fatalf("dial: %v", err)
	}
	s.waitConn(0)
	if got := s.options()[0]; !slices.Equal(got, []uint32{optStartTLS, optAbort}) {
		t.Fatalf("options %v: want STARTTLS then a soft disconnect", got)
	}
}

func TestFakeNotNBD(t *testing.T) {
	s := startFake(t, fakeConfig{oldstyle: true})
	if _, err := Dial(fakeCtx(t), Options{Address: s.addr}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("oldstyle: %v", err)
	}
	// Something that is not an NBD server at all.
	ln := startRaw(t, func(c io.ReadWriter) { _, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) })
	if _, err := Dial(fakeCtx(t), Options{Address: ln}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("HTTP server: %v", err)
	}
	// A server that hangs up at once.
	ln = startRaw(t, func(io.ReadWriter) {})
	if _, err := Dial(fakeCtx(t), Options{Address: ln}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("server hanging up: %v", err)
	}
}

func TestFakeHandshakeCancelled(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	accepted := make(chan struct{}, 2)
	ln := startRaw(t, func(io.ReadWriter) { accepted <- struct{}{}; <-block }) // never greets
	ctx, cancel := context.WithCancel(fakeCtx(t))
	go func() { <-accepted; cancel() }()
	if _, err := Dial(ctx, Options{Address: ln}); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial cancelled: %v", err)
	}
	if _, err := Dial(fakeCtx(t), Options{Address: ln, HandshakeTimeout: 100 * time.Millisecond}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial timed out: %v", err)
	}
}

// TestFakeStructured answers batches of reads out of order, each in
// several chunks in reverse order, data and holes mixed.
func TestFakeStructured(t *testing.T) {
	s := startFake(t, fakeConfig{size: 1 << 20, structured: true, meta: true, name: "canonical", serve: func(fc *fakeConn) {
		for {
			var batch []fakeReq
			for len(batch) < 4 {
				r, ok := fc.readReq()
				if !ok || r.cmd == cmdDisc {
					return
				}
				batch = append(batch, r)
			}
			for _, r := range slices.Backward(batch) {
				var out []byte
				third := r.length / 3
				if third > 0 {
					out = append(out, dataChunk(r.cookie, 0, r.off+uint64(2*third), pattern(r.off+uint64(2*third), r.length-2*third))...)
					out = append(out, holeChunk(r.cookie, 0, r.off+uint64(third), third)...)
					out = append(out, dataChunk(r.cookie, 0, r.off, pattern(r.off, third))...)
				} else {
					out = append(out, dataChunk(r.cookie, 0, r.off, pattern(r.off, r.length))...)
				}
				fc.write(append(out, noneChunk(r.cookie)...))
			}
		}
	}})
	c := dialFake(t, s, Options{MaxRequest: 4096, QueueDepth: 4})
	if info := c.Info(); info.Export != "canonical" || !info.StructuredReplies || !info.BlockStatus {
		t.Fatalf("info %+v", info)
	}
	buf := bytes.Repeat([]byte{0xee}, 4*4096)
	if _, err := c.ReadAt(buf, 8192); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		p := buf[i*4096:]
		want := pattern(8192+uint64(i*4096), 4096)
		clear(want[1365:2730]) // the hole
		if !bytes.Equal(p[:4096], want) {
			t.Fatalf("piece %d differs", i)
		}
	}
}

// TestFakeQueueDepth checks that no more than QueueDepth requests are in
// flight, and that the client does fill the queue.
func TestFakeQueueDepth(t *testing.T) {
	const depth, total = 3, 10
	var mu sync.Mutex
	maxOut := 0
	s := startFake(t, fakeConfig{size: 1 << 20, serve: func(fc *fakeConn) {
		var out []fakeReq
		received := 0
		for {
			if len(out) == depth || (received == total && len(out) > 0) {
				r := out[0]
				out = out[1:]
				fc.write(simpleReply(r.cookie, 0, pattern(r.off, r.length)))
				continue
			}
			r, ok := fc.readReq()
			if !ok || r.cmd == cmdDisc {
				return
			}
			received++
			out = append(out, r)
			mu.Lock()
			maxOut = max(maxOut, len(out))
			mu.Unlock()
		}
	}})
	c := dialFake(t, s, Options{MaxRequest: 512, QueueDepth: depth})
	buf := make([]byte, total*512)
	if _, err := c.ReadAtContext(fakeCtx(t), buf, 0); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, buf, 0)
	mu.Lock()
	defer mu.Unlock()
	if maxOut != depth {
		t.Fatalf("at most %d requests in flight, want %d", maxOut, depth)
	}
}

// TestFakeViolations feeds replies that break the protocol: each must fail
// the read with ErrProtocol, never hang or panic.
func TestFakeViolations(t *testing.T) {
	off := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name string
		// reply answers a read of 4096 bytes at 8192
		reply func(r fakeReq) []byte
		// dropped: the violation breaks the framing, so the connection
		// is dropped; otherwise only the request fails.
		dropped bool
	}{
		{"bad-magic", func(r fakeReq) []byte { return []byte("\x12\x34\x56\x78garbage-garbage-garbage") }, true},
		{"unknown-cookie", func(r fakeReq) []byte { return noneChunk(r.cookie + 1000) }, true},
		{"data-before-request", func(r fakeReq) []byte { return dataChunk(r.cookie, chunkFlagDone, r.off-1, make([]byte, 10)) }, true},
		{"data-after-request", func(r fakeReq) []byte { return dataChunk(r.cookie, chunkFlagDone, r.off+4000, make([]byte, 97)) }, true},
		{"data-too-long", func(r fakeReq) []byte { return dataChunk(r.cookie, chunkFlagDone, r.off, make([]byte, 4097)) }, true},
		{"data-empty", func(r fakeReq) []byte { return dataChunk(r.cookie, chunkFlagDone, r.off, nil) }, true},
		{"overlap", func(r fakeReq) []byte {
			return append(dataChunk(r.cookie, 0, r.off, pattern(r.off, 2048)), holeChunk(r.cookie, chunkFlagDone, r.off+2047, 2049)...)
		}, true},
		{"hole-bad-length", func(r fakeReq) []byte { return chunk(r.cookie, chunkFlagDone, chunkOffsetHole, make([]byte, 11)) }, true},
		{"hole-empty", func(r fakeReq) []byte { return holeChunk(r.cookie, chunkFlagDone, r.off, 0) }, true},
		{"none-not-done", func(r fakeReq) []byte { return chunk(r.cookie, 0, chunkNone, nil) }, true},
		{"none-with-payload", func(r fakeReq) []byte { return chunk(r.cookie, chunkFlagDone, chunkNone, []byte{1}) }, true},
		{"unknown-type", func(r fakeReq) []byte { return chunk(r.cookie, chunkFlagDone, 77, []byte{1, 2, 3}) }, true},
		{"status-to-read", func(r fakeReq) []byte { return chunk(r.cookie, chunkFlagDone, chunkBlockStatus, make([]byte, 12)) }, true},
		{"error-message-too-long", func(r fakeReq) []byte {
			return chunk(r.cookie, chunkFlagDone, chunkError, []byte{0, 0, 0, 5, 0, 10, 'x'})
		}, true},
		{"error-zero", func(r fakeReq) []byte { return errorChunk(r.cookie, chunkFlagDone, chunkError, 0, "", nil) }, true},
		{"error-offset-outside", func(r fakeReq) []byte {
			return errorChunk(r.cookie, chunkFlagDone, chunkErrorOffset, 5, "", off(r.off+4096))
		}, true},
		{"simple-with-data", func(r fakeReq) []byte { return simpleReply(r.cookie, 0, pattern(r.off, r.length)) }, true},
		{"extended-header", func(r fakeReq) []byte { return []byte{0x6e, 0x8a, 0x27, 0x8c, 0, 0, 0, 0} }, true},
		{"truncated-header", func(r fakeReq) []byte { return chunk(r.cookie, chunkFlagDone, chunkNone, nil)[:10] }, true},
		{"truncated-data", func(r fakeReq) []byte { return dataChunk(r.cookie, chunkFlagDone, r.off, pattern(r.off, 4096))[:1000] }, true},
		{"short-of-data", func(r fakeReq) []byte {
			return append(dataChunk(r.cookie, 0, r.off, pattern(r.off, 4000)), noneChunk(r.cookie)...)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startFake(t, fakeConfig{size: 1 << 20, structured: true, serve: func(fc *fakeConn) {
				for {
					r, ok := fc.readReq()
					if !ok || r.cmd == cmdDisc {
						return
					}
					if r.off != 8192 {
						fc.write(append(dataChunk(r.cookie, 0, r.off, pattern(r.off, r.length)), noneChunk(r.cookie)...))
						continue
					}
					fc.write(tc.reply(r))
					if strings.HasPrefix(tc.name, "truncated") {
						fc.c.Close()
					}
				}
			}})
			c := dialFake(t, s, Options{})
			buf := make([]byte, 4096)
			_, err := c.ReadAtContext(fakeCtx(t), buf, 8192)
			if err == nil {
				t.Fatal("read succeeded")
			}
			if strings.HasPrefix(tc.name, "truncated") {
				if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrConnectionLost) {
					t.Fatalf("read: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrProtocol) || errors.Is(err, ErrConnectionLost) != tc.dropped {
				t.Fatalf("read: %v", err)
			}
			t.Logf("%v", err)
			_, err = c.ReadAtContext(fakeCtx(t), buf, 0)
			if tc.dropped != (err != nil) {
				t.Fatalf("read after the violation: %v", err)
			}
		})
	}
}

// TestFakeCommandErrors checks error chunks and simple error replies: the
// request fails with a CommandError, the connection goes on.
func TestFakeCommandErrors(t *testing.T) {
	at := uint64(8192 + 100)
	s := startFake(t, fakeConfig{size: 1 << 20, structured: true, serve: func(fc *fakeConn) {
		n := 0
		for {
			r, ok := fc.readReq()
			if !ok || r.cmd == cmdDisc {
				return
			}
			n++
			switch n {
			case 1: // data, then an error at an offset, then more data
				fc.write(dataChunk(r.cookie, 0, r.off, pattern(r.off, 200)))
				fc.write(errorChunk(r.cookie, 0, chunkErrorOffset, 5, "bad sector", &at))
				fc.write(dataChunk(r.cookie, 0, r.off+200, pattern(r.off+200, r.length-200)))
				fc.write(noneChunk(r.cookie))
			case 2: // an error type this client does not know
				fc.write(errorChunk(r.cookie, chunkFlagDone, chunkFlagError|42, 28, "full", nil))
			case 3: // a simple error reply is allowed when there is no data
				fc.write(simpleReply(r.cookie, 108, nil))
			case 4:
				fc.write(errorChunk(r.cookie, chunkFlagDone, chunkError, 1234, "odd", nil))
			default:
				fc.write(append(dataChunk(r.cookie, 0, r.off, pattern(r.off, r.length)), noneChunk(r.cookie)...))
			}
		}
	}})
	c := dialFake(t, s, Options{})
	buf := make([]byte, 4096)
	for i, want := range []struct {
		errno  syscall.Errno
		msg    string
		errOff int64
		is     error
	}{
		{syscall.EIO, "bad sector", int64(at), nil},
		{syscall.ENOSPC, "full (reply chunk type 0x802a)", -1, nil},
		{syscall.ESHUTDOWN, "", -1, ErrShutdown},
		{syscall.EINVAL, "odd", -1, nil},
	} {
		_, err := c.ReadAtContext(fakeCtx(t), buf, 8192)
		var ce *CommandError
		if !errors.As(err, &ce) || !errors.Is(err, want.errno) || ce.Message != want.msg || ce.ErrorOffset != want.errOff ||
			ce.Offset != 8192 || ce.Length != 4096 || errors.Is(err, ErrConnectionLost) || want.is != nil && !errors.Is(err, want.is) {
			t.Fatalf("read %d: %v (%+v)", i, err, ce)
		}
		t.Logf("%v", err)
	}
	if _, err := c.ReadAtContext(fakeCtx(t), buf, 8192); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, buf, 8192)
}

// TestFakeCancel cancels a read the server holds back, then lets the
// server answer: the late data must not land in the caller's buffer.
func TestFakeCancel(t *testing.T) {
	release := make(chan struct{})
	s := startFake(t, fakeConfig{size: 1 << 20, structured: true, serve: func(fc *fakeConn) {
		for {
			r, ok := fc.readReq()
			if !ok || r.cmd == cmdDisc {
				return
			}
			if r.off == 0 {
				<-release
			}
			fc.write(append(dataChunk(r.cookie, 0, r.off, pattern(r.off, r.length)), noneChunk(r.cookie)...))
		}
	}})
	c := dialFake(t, s, Options{})
	buf := make([]byte, 1<<20)
	ctx, cancel := context.WithCancel(fakeCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadAtContext(ctx, buf, 0)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	for i := range buf {
		buf[i] = 0xaa
	}
	close(release)
	// The next reply comes after the late one on the same connection.
	other := make([]byte, 100)
	if _, err := c.ReadAtContext(fakeCtx(t), other, 4096); err != nil {
		t.Fatal(err)
	}
	checkPattern(t, other, 4096)
	if bytes.Count(buf, []byte{0xaa}) != len(buf) {
		t.Fatal("a cancelled read's buffer was written after it returned")
	}
}

func TestFakeIOTimeout(t *testing.T) {
	s := startFake(t, fakeConfig{size: 1 << 20, serve: func(fc *fakeConn) {
		for {
			if _, ok := fc.readReq(); !ok {
				return
			}
		}
	}})
	c := dialFake(t, s, Options{IOTimeout: 200 * time.Millisecond})
	_, err := c.ReadAtContext(fakeCtx(t), make([]byte, 10), 0)
	if !errors.Is(err, ErrConnectionLost) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a silent server: %v", err)
	}
}

// TestFakeHangUp: the server closes with requests in flight; every read
// fails, none hangs.
func TestFakeHangUp(t *testing.T) {
	s := startFake(t, fakeConfig{size: 1 << 20, serve: func(fc *fakeConn) {
		for range 5 {
			if _, ok := fc.readReq(); !ok {
				return
			}
		}
	}})
	c := dialFake(t, s, Options{MaxRequest: 4096, QueueDepth: 5})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			_, err := c.ReadAtContext(fakeCtx(t), make([]byte, 3*4096), int64(i)*65536)
			if !errors.Is(err, ErrConnectionLost) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if !errors.Is(c.Err(), ErrConnectionLost) {
		t.Fatalf("Err() = %v", c.Err())
	}
}

// TestFakeClose: Close lets a request in flight finish and sends DISC.
func TestFakeClose(t *testing.T) {
	got := make(chan fakeReq, 1)
	inFlight := make(chan struct{})
	s := startFake(t, fakeConfig{size: 1 << 20, serve: func(fc *fakeConn) {
		r, _ := fc.readReq()
		close(inFlight)
		d, _ := fc.readReq()
		got <- d
		fc.write(simpleReply(r.cookie, 0, pattern(r.off, r.length)))
	}})
	c := dialFake(t, s, Options{})
	buf := make([]byte, 1000)
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(buf, 50)
		errc <- err
	}()
	<-inFlight
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("read in flight during close: %v", err)
	}
	checkPattern(t, buf, 50)
	if d := <-got; d.cmd != cmdDisc || d.off != 0 || d.length != 0 {
		t.Fatalf("last request %+v, want NBD_CMD_DISC", d)
	}
}

func TestFakeBlockStatus(t *testing.T) {
	ext := func(pairs ...uint32) []byte {
		b := []byte{0, 0, 0, 7}
		for _, v := range pairs {
			b = append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		return b
	}
	var mu sync.Mutex
	var reply func(r fakeReq) []byte
	s := startFake(t, fakeConfig{size: 1 << 20, structured: true, meta: true, blockSize: [3]uint32{512, 4096, 1 << 20}, serve: func(fc *fakeConn) {
		for {
			r, ok := fc.readReq()
			if !ok || r.cmd == cmdDisc {
				return
			}
			if r.off%512 != 0 || r.length%512 != 0 {
				t.Errorf("unaligned request %+v", r)
			}
			mu.Lock()
			fc.write(reply(r))
			mu.Unlock()
		}
	}})
	set := func(f func(r fakeReq) []byte) {
		mu.Lock()
		reply = f
		mu.Unlock()
	}
	c := dialFake(t, s, Options{})
	set(func(r fakeReq) []byte {
		if r.off != 512 || r.length != 2048 {
			t.Errorf("block status request %+v", r)
		}
		return chunk(r.cookie, chunkFlagDone, chunkBlockStatus, ext(1024, StateHole|StateZero, 512, 0, 4096, StateZero))
	})
	exts, err := c.BlockStatus(fakeCtx(t), 700, 1800)
	want := []Extent{{700, 836, StateHole | StateZero}, {1536, 512, 0}, {2048, 452, StateZero}}
	if err != nil || !slices.Equal(exts, want) {
		t.Fatalf("block status: %+v, %v; want %+v", exts, err, want)
	}
	for name, f := range map[string]func(r fakeReq) []byte{
		"past-the-request": func(r fakeReq) []byte {
			return chunk(r.cookie, chunkFlagDone, chunkBlockStatus, ext(r.length, 0, 512, 0))
		},
		"empty-extent": func(r fakeReq) []byte {
			return chunk(r.cookie, chunkFlagDone, chunkBlockStatus, ext(0, 0))
		},
		"other-context": func(r fakeReq) []byte {
			b := ext(512, 0)
			b[3] = 8
			return chunk(r.cookie, chunkFlagDone, chunkBlockStatus, b)
		},
		"bad-length": func(r fakeReq) []byte {
			return chunk(r.cookie, chunkFlagDone, chunkBlockStatus, ext(512, 0)[:11])
		},
		"no-status": func(r fakeReq) []byte { return noneChunk(r.cookie) },
	} {
		c := dialFake(t, s, Options{})
		set(f)
		if _, err := c.BlockStatus(fakeCtx(t), 0, 4096); !errors.Is(err, ErrProtocol) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestFakeMinBlockReads(t *testing.T) {
	s := startFake(t, fakeConfig{size: 1<<20 - 512, blockSize: [3]uint32{512, 4096, 8192}, serve: func(fc *fakeConn) {
		for {
			r, ok := fc.readReq()
			if !ok || r.cmd == cmdDisc {
				return
			}
			if r.off%512 != 0 || r.length%512 != 0 || r.length > 8192 {
				t.Errorf("request %+v breaks the size constraints", r)
				fc.write(simpleReply(r.cookie, 22, nil))
				continue
			}
			fc.write(simpleReply(r.cookie, 0, pattern(r.off, r.length)))
		}
	}})
	c := dialFake(t, s, Options{})
	if c.Info().MaxRequest != 8192 {
		t.Fatalf("MaxRequest %d", c.Info().MaxRequest)
	}
	for _, r := range [][2]int64{{1, 1}, {511, 2}, {100, 100}, {1000, 30000}, {512, 512}, {1<<20 - 1000, 488}, {1<<20 - 1000, 1000}} {
		buf := make([]byte, r[1])
		n, err := c.ReadAtContext(fakeCtx(t), buf, r[0])
		if err != nil && err != io.EOF {
			t.Fatalf("read %v: %v", r, err)
		}
		checkPattern(t, buf[:n], uint64(r[0]))
	}
}

// startRaw serves each connection with fn, raw bytes, no NBD.
func startRaw(t *testing.T, fn func(io.ReadWriter)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				fn(c)
			})
		}
	})
	return ln.Addr().String()
}
