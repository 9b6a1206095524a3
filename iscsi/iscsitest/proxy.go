package iscsitest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections from a loopback port to a target address
// and can cut them, to test how an initiator survives a dropped
// connection.
type Proxy struct {
	Addr   string // where initiators connect
	target string
	ln     net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]bool
	cutAfter int64 // cut every connection once this many bytes flowed back; 0 = never
	accepted atomic.Int64
	cuts     atomic.Int64
}

// NewProxy starts a proxy on 127.0.0.1 to target; it stops when the test
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// CutOnceAfter makes the proxy cut the next connection that carries n
// bytes from the target, once.
func (p *Proxy) CutOnceAfter(n int64) {
	p.mu.Lock()
	p.cutAfter = n
	p.mu.Unlock()
}

// Accepted counts the connections accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Cuts counts the connections the proxy cut.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		p.conns[c] = true
	}
	p.mu.Unlock()
}

func (p *Proxy) handle(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, server)
	cut := func() {
		client.Close()
		server.Close()
	}
	go func() {
		_, _ = io.Copy(server, client)
		cut()
	}()
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := server.Read(buf)
		if n > 0 {
			total += int64(n)
			p.mu.Lock()
			limit := p.cutAfter
			if limit > 0 && total >= limit {
				p.cutAfter = 0
			}
			p.mu.Unlock()
			if limit > 0 && total >= limit {
				// Forward part of the block so the initiator is mid-PDU.
				_, _ = client.Write(buf[:n/2])
				p.cuts.Add(1)
				cut()
				return
			}
			if _, err := client.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	cut()
}
