package nfs

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
)

// go-nfs answers MOUNT's MNT, UMNT and NULL only; clients also ask EXPORT
// (libnfs and qemu list the exports before mounting; showmount -e), DUMP
// and UMNTALL, and go-nfs's "procedure unavailable" reply is one libnfs
// cannot decode. rpcConn sits between the connection and go-nfs: it reads
// each request record whole, answers those three procedures itself, and
// passes every other request on as one fragment (go-nfs does not join
// fragments). Its replies go out between go-nfs's, never inside one.

const (
	mountDump    = 2
	mountUmntAll = 4
	mountExport  = 5

	// maxRequest bounds a request record: a read-only server is sent
	// small requests (NFS WRITE is refused anyway).
	maxRequest = 4 << 20
)

// rpcConn is a connection to go-nfs with the missing MOUNT procedures
// and our own READ.
type rpcConn struct {
	net.Conn
	in      *bufio.Reader
	pending []byte // a request record for go-nfs, being read
	exports []string
	reads   *reads        // nil: go-nfs answers READ
	sem     chan struct{} // bounds the reads in flight

	// The outgoing stream, tracked so that a reply of ours starts only
	// where one of go-nfs's has ended.
	mu        sync.Mutex
	idle      *sync.Cond // signalled when left reaches 0 at a last fragment
	left      int        // bytes left of the fragment go-nfs is writing
	hdr       []byte     // a fragment header being written, in pieces
	inLast    bool       // the fragment being written is its record's last
	midRecord bool
}

func newRPCConn(c net.Conn, exports []string, r *reads) *rpcConn {
	rc := &rpcConn{Conn: c, in: bufio.NewReaderSize(c, 64<<10), exports: exports, reads: r, sem: make(chan struct{}, readsInFlight)}
	rc.idle = sync.NewCond(&rc.mu)
	return rc
}

// Read gives go-nfs the requests it serves, one fragment each.
func (c *rpcConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		rec, err := readRecordLimit(c.in, maxRequest)
		if err != nil {
			return 0, err
		}
		if c.reads != nil && isRead(rec) {
			c.sem <- struct{}{}
			go func() {
				defer func() { <-c.sem }()
				c.reads.serve(rec, c.inject) // a failed send: the client is gone; go-nfs sees it next
			}()
			continue
		}
		if reply := c.answer(rec); reply != nil {
			if err := c.inject(reply); err != nil {
				return 0, err
			}
			continue
		}
		c.pending = binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(rec)), 1<<31|uint32(len(rec)))
		c.pending = append(c.pending, rec...)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// answer returns our reply to a request go-nfs cannot answer, or nil.
func (c *rpcConn) answer(rec []byte) []byte {
	d := xdrReader{b: rec}
	xid, typ, rpcvers, prog, vers, proc := d.uint32(), d.uint32(), d.uint32(), d.uint32(), d.uint32(), d.uint32()
	if d.err != nil || typ != msgCall || rpcvers != 2 || prog != progMount || vers < 1 || vers > 3 {
		return nil
	}
	switch proc {
	case mountExport:
		// exportnode: dirpath, groups (none: every client the server
		// admits), next.
		out := accepted(xid, acceptSuccess)
		for _, e := range c.exports {
			out = binary.BigEndian.AppendUint32(out, 1)
			out = appendXDRString(out, e)
			out = binary.BigEndian.AppendUint32(out, 0)
		}
		return binary.BigEndian.AppendUint32(out, 0)
	case mountDump:
		return binary.BigEndian.AppendUint32(accepted(xid, acceptSuccess), 0) // no mount list kept
	case mountUmntAll:
		return accepted(xid, acceptSuccess)
	}
	return nil
}

// appendXDRString appends s as an XDR string (length, bytes, padding).
func appendXDRString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	b = append(b, s...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// inject writes parts as one record once go-nfs's writes are at a record
// boundary (a writev when the connection offers it).
func (c *rpcConn) inject(parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	bufs := append(net.Buffers{binary.BigEndian.AppendUint32(nil, 1<<31|uint32(n))}, parts...)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.midRecord {
		c.idle.Wait()
	}
	_, err := bufs.WriteTo(c.Conn)
	return err
}

// Write passes go-nfs's bytes on, following its record marks.
func (c *rpcConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.track(p[:n])
	return n, err
}

// track follows the record marks of the outgoing bytes b (c.mu held).
func (c *rpcConn) track(b []byte) {
	for len(b) > 0 {
		if c.left == 0 {
			k := min(4-len(c.hdr), len(b))
			c.hdr = append(c.hdr, b[:k]...)
			b = b[k:]
			c.midRecord = true
			if len(c.hdr) < 4 {
				continue
			}
			h := binary.BigEndian.Uint32(c.hdr)
			c.hdr = c.hdr[:0]
			c.left, c.inLast = int(h&^(1<<31)), h&(1<<31) != 0
		} else {
			k := min(c.left, len(b))
			c.left -= k
			b = b[k:]
		}
		if c.left == 0 && len(c.hdr) == 0 && c.inLast {
			c.midRecord = false
			c.idle.Broadcast()
		}
	}
}

// readRecordLimit is readRecord with a bound on the record's size.
func readRecordLimit(r io.Reader, limit int) ([]byte, error) {
	var rec []byte
	for {
		var h [4]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(h[:])
		size := int(n &^ (1 << 31))
		if len(rec)+size > limit {
			return nil, fmt.Errorf("an RPC request of more than %d bytes", limit)
		}
		rec = append(rec, make([]byte, size)...)
		if _, err := io.ReadFull(r, rec[len(rec)-size:]); err != nil {
			return nil, err
		}
		if n&(1<<31) != 0 {
			return rec, nil
		}
	}
}
