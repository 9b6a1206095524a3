package nbd_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/nbd"
	"github.com/ahvfs/ahvfs/nbd/nbdtest"
)

const imageSize = 64 << 20

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, o nbd.Options) *nbd.Client {
	t.Helper()
	c, err := nbd.Dial(testCtx(t), o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readAll reads the export in one ReadAt and compares it with want.
func readAll(t *testing.T, c *nbd.Client, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	n, err := c.ReadAtContext(testCtx(t), got, 0)
	if err != nil || n != len(want) {
		t.Fatalf("read all: %d bytes, %v", n, err)
	}
	compare(t, got, want, 0)
}

func compare(t *testing.T, got, want []byte, off int64) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("data of [%d, +%d) differs first at offset %d", off, len(want), off+int64(i))
	}
}

// readConcurrently reads the export in chunks from several goroutines at
// once, in a random order.
func readConcurrently(t *testing.T, c *nbd.Client, want []byte, chunk int) {
	t.Helper()
	ctx := testCtx(t)
	offs := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			buf := make([]byte, chunk)
			for off := range offs {
				n, err := c.ReadAtContext(ctx, buf, int64(off))
				if err != nil && !(err == io.EOF && off+n == len(want)) {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], want[off:off+n]) {
					errs <- errors.New("data differs")
					return
				}
			}
		})
	}
	perm := rand.Perm((len(want) + chunk - 1) / chunk)
	for _, i := range perm {
		offs <- i * chunk
	}
	close(offs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// oddReads reads ranges at odd offsets and of odd lengths, across holes
// and the end of the export.
func oddReads(t *testing.T, c *nbd.Client, want []byte) {
	t.Helper()
	ctx := testCtx(t)
	size := int64(len(want))
	rng := rand.New(rand.NewPCG(7, 8))
	type rd struct{ off, n int64 }
	cases := []rd{{0, 1}, {1, 1}, {511, 2}, {4095, 4097}, {size - 1, 1}, {size - 3, 10}, {size - 1<<20 - 7, 1<<20 + 100}, {123457, 3 << 20}}
	for range 40 {
		cases = append(cases, rd{rng.Int64N(size), rng.Int64N(300000) + 1})
	}
	for _, tc := range cases {
		buf := make([]byte, tc.n)
		n, err := c.ReadAtContext(ctx, buf, tc.off)
		wantN := min(tc.n, size-tc.off)
		if int64(n) != wantN || (wantN < tc.n) != (err == io.EOF) || (err != nil && err != io.EOF) {
			t.Fatalf("read [%d, +%d): %d bytes, %v; want %d bytes", tc.off, tc.n, n, err, wantN)
		}
		compare(t, buf[:n], want[tc.off:tc.off+int64(n)], tc.off)
	}
	if n, err := c.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v; want 0, EOF", n, err)
	}
	if _, err := c.ReadAt(make([]byte, 10), -1); err == nil {
		t.Fatal("read at a negative offset succeeded")
	}
}

// checkBlockStatus walks the export's allocation map and checks it
// against the image: never-written regions are holes reading as zeroes,
// and whatever is reported as zero reads as zero.
func checkBlockStatus(t *testing.T, c *nbd.Client, img *nbdtest.Image) {
	t.Helper()
	ctx := testCtx(t)
	size := c.Size()
	inHole := make([]bool, size>>16)
	for _, h := range img.Holes {
		for o := h[0]; o < h[0]+h[1]; o += 64 << 10 {
			inHole[o>>16] = true
		}
	}
	var holes int64
	for off := int64(0); off < size; {
		exts, err := c.BlockStatus(ctx, off, size-off)
		if err != nil {
			t.Fatalf("block status at %d: %v", off, err)
		}
		for _, e := range exts {
			if e.Offset != off || e.Length <= 0 || e.Offset+e.Length > size {
				t.Fatalf("extent %+v at %d", e, off)
			}
			if e.Zero() && !bytes.Equal(img.Data[e.Offset:e.Offset+e.Length], make([]byte, e.Length)) {
				t.Fatalf("extent %+v reported zero holds data", e)
			}
			if e.Hole() {
				holes += e.Length
			}
			for o := e.Offset &^ (64<<10 - 1); o < e.Offset+e.Length; o += 64 << 10 {
				if inHole[o>>16] && o >= e.Offset && o+64<<10 <= e.Offset+e.Length && !(e.Hole() && e.Zero()) {
					t.Fatalf("never-written block at %d reported as %+v", o, e)
				}
			}
			off += e.Length
		}
	}
	if len(img.Holes) > 0 && holes == 0 {
		t.Fatal("no hole reported")
	}
	// Part of a range, unaligned.
	exts, err := c.BlockStatus(ctx, 12345, 100)
	if err != nil || len(exts) == 0 || exts[0].Offset != 12345 || exts[len(exts)-1].Offset+exts[len(exts)-1].Length > 12445 {
		t.Fatalf("block status of [12345, +100): %+v, %v", exts, err)
	}
}

func TestQemuNBD(t *testing.T) {
	testenv.Commands(t, "qemu-nbd")
	t.Parallel()
	img := nbdtest.NewImage(t, t.TempDir(), imageSize, 1)
	srv := nbdtest.StartQemuNBD(t, img.Path, nbdtest.QemuOptions{})

	t.Run("structured", func(t *testing.T) {
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, MaxRequest: 1 << 20})
		info := c.Info()
		if info.Size != imageSize || !info.StructuredReplies || !info.BlockStatus || info.TLS || info.ExportNameFallback ||
			info.Flags&nbd.FlagReadOnly == 0 || info.MaxRequest != 1<<20 {
			t.Fatalf("info %+v", info)
		}
		readAll(t, c, img.Data)
		readConcurrently(t, c, img.Data, 3<<20+17)
		oddReads(t, c, img.Data)
		checkBlockStatus(t, c, img)
	})
	t.Run("simple-replies", func(t *testing.T) {
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, NoStructuredReplies: true, QueueDepth: 3})
		if info := c.Info(); info.StructuredReplies || info.BlockStatus {
			t.Fatalf("info %+v", info)
		}
		readAll(t, c, img.Data)
		oddReads(t, c, img.Data)
		if _, err := c.BlockStatus(testCtx(t), 0, 1); !errors.Is(err, nbd.ErrUnsupported) {
			t.Fatalf("block status without structured replies: %v", err)
		}
	})
	t.Run("uri", func(t *testing.T) {
		o, err := nbd.ParseURI("nbd://" + srv.Addr + "/" + srv.Export)
		if err != nil {
			t.Fatal(err)
		}
		c := dial(t, o)
		buf := make([]byte, 1000)
		if _, err := c.ReadAt(buf, 5000); err != nil {
			t.Fatal(err)
		}
		compare(t, buf, img.Data[5000:6000], 5000)
	})
	t.Run("unknown-export", func(t *testing.T) {
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: "no-such-disk"})
		if !errors.Is(err, nbd.ErrUnknownExport) {
			t.Fatalf("dial an unknown export: %v", err)
		}
		t.Logf("unknown export: %v", err)
	})
	t.Run("close", func(t *testing.T) {
		c, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: srv.Export})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		if _, err := c.ReadAt(make([]byte, 1), 0); !errors.Is(err, nbd.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export})
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		if _, err := c.ReadAtContext(ctx, make([]byte, 1<<20), 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("read with a cancelled context: %v", err)
		}
		readAll(t, c, img.Data) // the connection is still good
	})
	t.Run("cut", func(t *testing.T) {
		// One connection is cut before the read, one in the middle of it.
		p := nbdtest.NewProxy(t, srv.Addr)
		c := dial(t, nbd.Options{Address: p.Addr, Export: srv.Export, MaxRequest: 256 << 10})
		p.CutAll()
		p.CutAfter(10 << 20)
		c2 := dial(t, nbd.Options{Address: p.Addr, Export: srv.Export, MaxRequest: 256 << 10})
		for _, c := range []*nbd.Client{c, c2} {
			buf := make([]byte, imageSize)
			n, err := c.ReadAtContext(testCtx(t), buf, 0)
			if !errors.Is(err, nbd.ErrConnectionLost) || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("read through a cut connection: %d bytes, %v", n, err)
			}
			compare(t, buf[:n], img.Data[:n], 0)
			t.Logf("cut after %d bytes: %v", n, err)
			if _, err2 := c.ReadAt(buf[:10], 0); !errors.Is(err2, nbd.ErrConnectionLost) {
				t.Fatalf("read after the cut: %v", err2)
			}
		}
	})
}

func TestQemuNBDKilledMidRead(t *testing.T) {
	testenv.Commands(t, "qemu-nbd")
	t.Parallel()
	img := nbdtest.NewImage(t, t.TempDir(), 16<<20, 2)
	srv := nbdtest.StartQemuNBD(t, img.Path, nbdtest.QemuOptions{})
	c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, MaxRequest: 64 << 10, QueueDepth: 8})
	ctx := testCtx(t)
	first := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		buf := make([]byte, len(img.Data))
		for i := 0; ; i++ {
			if _, err := c.ReadAtContext(ctx, buf, 0); err != nil {
				res <- err
				return
			}
			if i == 0 {
				close(first)
			}
		}
	}()
	<-first
	srv.Kill()
	err := <-res
	if !errors.Is(err, nbd.ErrConnectionLost) {
		t.Fatalf("read while the server died: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the read only ended with the test's context: %v", err)
	}
	if _, err := c.ReadAtContext(ctx, make([]byte, 4096), 0); !errors.Is(err, nbd.ErrConnectionLost) {
		t.Fatalf("read after the server died: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Logf("close after the server died: %v", err)
	}
}

func TestQemuNBDUnixSocket(t *testing.T) {
	testenv.Commands(t, "qemu-nbd")
	t.Parallel()
	img := nbdtest.NewImage(t, t.TempDir(), 4<<20, 3)
	srv := nbdtest.StartQemuNBD(t, img.Path, nbdtest.QemuOptions{Common: nbdtest.Common{Unix: true, Export: "unixdisk"}})
	c := dial(t, nbd.Options{Address: srv.Addr, Export: "unixdisk"})
	readAll(t, c, img.Data)
}

func TestQemuNBDTLS(t *testing.T) {
	testenv.Commands(t, "qemu-nbd")
	t.Parallel()
	img := nbdtest.NewImage(t, t.TempDir(), 8<<20, 4)
	certs := nbdtest.NewTLSDir(t, "qemu")
	srv := nbdtest.StartQemuNBD(t, img.Path, nbdtest.QemuOptions{Common: nbdtest.Common{TLSDir: certs.Dir}})
	testTLS(t, srv, img, certs)
}

// testTLS checks a TLS server: a verified TLS read works, a client
// without TLS is told TLS is required, and a client trusting another CA
// fails verification.
func testTLS(t *testing.T, srv *nbdtest.Server, img *nbdtest.Image, certs *nbdtest.TLSDir) {
	t.Run("verified", func(t *testing.T) {
		c := dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, CAFile: certs.CAFile})
		if !c.Info().TLS {
			t.Fatal("Info().TLS is false")
		}
		readAll(t, c, img.Data)
	})
	t.Run("unknown-export", func(t *testing.T) {
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: "nope", CAFile: certs.CAFile})
		if !errors.Is(err, nbd.ErrUnknownExport) {
			t.Fatalf("dial an unknown export over TLS: %v", err)
		}
		// The soft disconnect went over TLS: the server still serves.
		readAll(t, dial(t, nbd.Options{Address: srv.Addr, Export: srv.Export, CAFile: certs.CAFile}), img.Data)
	})
	t.Run("no-tls", func(t *testing.T) {
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: srv.Export})
		if !errors.Is(err, nbd.ErrTLSRequired) {
			t.Fatalf("dial without TLS: %v", err)
		}
		t.Logf("without TLS: %v", err)
	})
	t.Run("wrong-ca", func(t *testing.T) {
		other := nbdtest.NewTLSDir(t, "other")
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: srv.Export, CAFile: other.CAFile})
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) {
			t.Fatalf("dial trusting another CA: %v", err)
		}
		t.Logf("wrong CA: %v", err)
	})
	t.Run("system-roots", func(t *testing.T) {
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: srv.Export, TLS: true})
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) {
			t.Fatalf("dial trusting the system's roots: %v", err)
		}
	})
	t.Run("wrong-name", func(t *testing.T) {
		_, err := nbd.Dial(testCtx(t), nbd.Options{Address: srv.Addr, Export: srv.Export, CAFile: certs.CAFile, ServerName: "elsewhere.example"})
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Fatalf("dial expecting another server name: %v", err)
		}
	})
}
