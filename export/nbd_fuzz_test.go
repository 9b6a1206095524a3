package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"testing"
)

// FuzzNBDRequest: the request decoder never panics and round-trips what it
// accepts.
func FuzzNBDRequest(f *testing.F) {
	ok := make([]byte, 28)
	binary.BigEndian.PutUint32(ok, nbdRequestMagic)
	binary.BigEndian.PutUint32(ok[24:], 4096)
	f.Add(ok)
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rq, err := parseNBDRequest(b)
		if err != nil {
			return
		}
		out := make([]byte, 28)
		binary.BigEndian.PutUint32(out, nbdRequestMagic)
		binary.BigEndian.PutUint16(out[4:], rq.Flags)
		binary.BigEndian.PutUint16(out[6:], rq.Type)
		binary.BigEndian.PutUint64(out[8:], rq.Handle)
		binary.BigEndian.PutUint64(out[16:], rq.Offset)
		binary.BigEndian.PutUint32(out[24:], rq.Length)
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip %x != %x", out, b)
		}
	})
}

// FuzzNBDSession feeds arbitrary client bytes (handshake, options and
// requests) to a server: it must neither panic nor read outside the export.
func FuzzNBDSession(f *testing.F) {
	var seed []byte
	seed = binary.BigEndian.AppendUint32(seed, nbdFlagFixedNewstyle|nbdFlagNoZeroes)
	opt := func(o uint32, data []byte) {
		seed = binary.BigEndian.AppendUint64(seed, nbdOptMagic)
		seed = binary.BigEndian.AppendUint32(seed, o)
		seed = binary.BigEndian.AppendUint32(seed, uint32(len(data)))
		seed = append(seed, data...)
	}
	opt(10, nil) // structured reply: unsupported
	opt(nbdOptList, nil)
	gob := binary.BigEndian.AppendUint32(nil, 1)
	gob = append(gob, 'x')
	gob = binary.BigEndian.AppendUint16(gob, 1)
	gob = binary.BigEndian.AppendUint16(gob, nbdInfoBlockSize)
	opt(nbdOptGo, gob)
	rq := func(typ uint16, off uint64, n uint32) {
		seed = binary.BigEndian.AppendUint32(seed, nbdRequestMagic)
		seed = binary.BigEndian.AppendUint16(seed, 0)
		seed = binary.BigEndian.AppendUint16(seed, typ)
		seed = binary.BigEndian.AppendUint64(seed, 42)
		seed = binary.BigEndian.AppendUint64(seed, off)
		seed = binary.BigEndian.AppendUint32(seed, n)
	}
	rq(nbdCmdRead, 0, 512)
	rq(nbdCmdRead, 4000, 200)
	rq(nbdCmdDisc, 0, 0)
	f.Add(seed)
	f.Add(seed[:20])
	const size = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &nbdServer{exports: map[string]nbdExport{}}
		s.ctx = context.Background()
		e := nbdExport{Name: "x", Size: size, ReadAt: func(_ context.Context, p []byte, off int64) error {
			if off < 0 || off+int64(len(p)) > size {
				t.Fatalf("read [%d,+%d) outside the export", off, len(p))
			}
			return nil
		}}
		s.exports["x"], s.exports[""] = e, e
		s.serveConn(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), io.Discard})
	})
}

func TestParseNBDGo(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, 6)
	b = append(b, "disk-0"...)
	b = binary.BigEndian.AppendUint16(b, 2)
	b = binary.BigEndian.AppendUint16(b, 3)
	b = binary.BigEndian.AppendUint16(b, 1)
	name, infos, err := parseNBDGo(b)
	if err != nil || name != "disk-0" || len(infos) != 2 || infos[0] != 3 {
		t.Fatalf("%q %v %v", name, infos, err)
	}
	if _, _, err := parseNBDGo(b[:len(b)-1]); err == nil {
		t.Fatal("truncated NBD_OPT_GO accepted")
	}
}
