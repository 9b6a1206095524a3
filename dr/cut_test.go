package dr

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/enginetest"
)

// cutProxy forwards TCP connections to target and cuts every connection
// once budget bytes (both directions, all connections) have passed.
type cutProxy struct {
	ln     net.Listener
	target string
	budget atomic.Int64
	moved  atomic.Int64
	mu     sync.Mutex
	conns  []net.Conn
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.budget.Store(1 << 62)
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

func (p *cutProxy) handle(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, s)
	p.mu.Unlock()
	go p.pipe(s, c)
	p.pipe(c, s)
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.moved.Add(int64(n)) > p.budget.Load() {
				p.cut()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			return
		}
	}
}

// cut closes every connection.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// arm lets budget more bytes through, then cuts.
func (p *cutProxy) arm(budget int64) {
	p.budget.Store(p.moved.Load() + budget)
}

// TestSyncSurvivesCutConnections: a connection cut at a random byte of a
// push over TLS (20 trials, each to a fresh target; blobs as stored, and
// again re-encoded) leaves the target with whole restore points or none;
// running the sync again completes it, and the target verifies.
func TestSyncSurvivesCutConnections(t *testing.T) {
	ctx := context.Background()
	src := enginetest.Init(t, engine.InitOptions{ChunkSize: 64 << 10, PageEntries: 64})
	sr := openW(t, src, nil)
	disk := enginetest.DataDisk(t, 24<<20, 5)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var names []string
	for i := range 3 {
		if i > 0 {
			overwrite(t, disk, int64(i)<<20, 1<<20, byte(i))
		}
		rp, err := enginetest.ImportFiles(ctx, sr, "vm", t0.Add(time.Duration(i)*time.Hour), disk)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, rp.Name())
	}
	for _, reencode := range []bool{false, true} {
		name := "blobs"
		if reencode {
			name = "re-encoded"
		}
		t.Run(name, func(t *testing.T) { cutTrials(t, sr, names, reencode) })
	}
}

// cutTrials runs the trials of TestSyncSurvivesCutConnections, to
// targets that share sr's parameters or, with reencode, have chunks of
// another size (each point then goes as one stream of decoded data).
func cutTrials(t *testing.T, sr *engine.Repository, names []string, reencode bool) {
	ctx := context.Background()
	// The bytes a whole sync moves, to place the cuts.
	var total int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for trial := range 20 {
		o := engine.InitOptions{CopyFrom: sr}
		if reencode {
			o = engine.InitOptions{ChunkSize: 128 << 10}
		}
		dst := enginetest.Init(t, o)
		srv := startServer(t, dst, nil, false)
		proxy := startCutProxy(t, strings.TrimPrefix(srv.url, "https://"))
		url := "https://" + proxy.ln.Addr().String()
		if trial == 0 {
			if _, err := Sync(ctx, &Local{R: sr}, dial(t, url, srv.client), Options{}); err != nil {
				t.Fatal(err)
			}
			total = proxy.moved.Load()
			continue
		}
		proxy.arm(rng.Int64N(total))
		rep, err := Sync(ctx, &Local{R: sr}, dial(t, url, srv.client), Options{})
		if err == nil {
			t.Logf("trial %d: the sync finished before the cut", trial)
		}
		// Whatever the target shows is whole.
		direct := dial(t, srv.url, srv.client)
		ps, perr := direct.Points(ctx)
		if perr != nil {
			t.Fatal(perr)
		}
		if rep != nil && len(ps) < rep.RestorePoints {
			t.Fatalf("trial %d: the report counts %d points, the target shows %d", trial, rep.RestorePoints, len(ps))
		}
		proxy.arm(1 << 62)
		rep, err = Sync(ctx, &Local{R: sr}, dial(t, url, srv.client), Options{})
		if err != nil {
			t.Fatalf("trial %d: the rerun failed: %v", trial, err)
		}
		if rep.RestorePoints+len(rep.AlreadyThere) != 3 {
			t.Fatalf("trial %d: rerun: %+v", trial, rep)
		}
		srv.close()
		dr := openW(t, dst, nil)
		sameData(t, sr, dr, !reencode, names...)
		verifyData(t, dr)
		dr.Close()
	}
}
