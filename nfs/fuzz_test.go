package nfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"
)

// call builds an RPC call message with AUTH_NULL credentials.
func call(xid, prog, vers, proc uint32, args ...uint32) []byte {
	b := []byte{}
	for _, v := range append([]uint32{xid, msgCall, 2, prog, vers, proc, 0, 0, 0, 0}, args...) {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

// FuzzPortmap: any request gets no reply or a reply to its transaction;
// never a panic. GETPORT of NFS over TCP answers the NFS port.
func FuzzPortmap(f *testing.F) {
	p := NewPortmap(2049, 111, nil)
	get := call(7, progPortmap, 2, pmapGetport, progNFS, 3, protoTCP, 0)
	if r := p.answer(get); len(r) != 28 || binary.BigEndian.Uint32(r[24:]) != 2049 {
		f.Fatalf("GETPORT NFS v3 TCP: %x", r)
	}
	if r := p.answer(call(8, progPortmap, 2, pmapGetport, progNFS, 3, protoUDP, 0)); binary.BigEndian.Uint32(r[24:]) != 0 {
		f.Fatalf("GETPORT NFS over UDP (not served): %x", r)
	}
	f.Add(get)
	f.Add(call(1, progPortmap, 2, pmapDump))
	f.Add(call(1, progPortmap, 4, 3))
	f.Add(call(1, progPortmap, 2, pmapGetport, 1)) // short arguments
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := p.answer(msg)
		if r == nil {
			return
		}
		if len(r) < 24 || !bytes.Equal(r[:4], msg[:4]) || binary.BigEndian.Uint32(r[4:]) != msgReply {
			t.Fatalf("reply %x to %x", r, msg)
		}
	})
}

// FuzzRPCConn: any byte stream from a client gives records (ours answered,
// the others passed on whole) or an error; never a panic.
func FuzzRPCConn(f *testing.F) {
	rec := func(msg []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, 1<<31|uint32(len(msg))), msg...)
	}
	f.Add(rec(call(1, progMount, 3, mountExport)))
	f.Add(rec(call(2, progNFS, 3, 1, 0)))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 4), append([]byte{0, 0, 0, 9}, rec([]byte{0, 0, 0, 0})...)...)) // two fragments
	f.Fuzz(func(t *testing.T, stream []byte) {
		c := &rpcConn{in: bufio.NewReader(bytes.NewReader(stream)), exports: []string{"/"}}
		for range 100 {
			r, err := readRecordLimit(c.in, 1<<16)
			if err != nil {
				return
			}
			if reply := c.answer(r); reply != nil && !bytes.Equal(reply[:4], r[:4]) {
				t.Fatalf("reply %x to %x", reply, r)
			}
		}
	})
}
