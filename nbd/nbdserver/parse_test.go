package nbdserver

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ahvfs/ahvfs/nbd/internal/wire"
)

// FuzzParse: the decoders of request headers and of NBD_OPT_GO/INFO data
// never panic, and what they accept encodes back to the same bytes.
func FuzzParse(f *testing.F) {
	rq := binary.BigEndian.AppendUint32(nil, wire.MagicRequest)
	rq = append(rq, make([]byte, 24)...)
	binary.BigEndian.PutUint32(rq[24:], 4096)
	f.Add(rq)
	g := binary.BigEndian.AppendUint32(nil, 6)
	g = append(g, "disk-0"...)
	g = binary.BigEndian.AppendUint16(g, 2)
	g = binary.BigEndian.AppendUint16(g, wire.InfoBlockSize)
	g = binary.BigEndian.AppendUint16(g, wire.InfoDescription)
	f.Add(g)
	f.Add(g[:len(g)-1])
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseRequest(b); err == nil {
			out := binary.BigEndian.AppendUint32(nil, wire.MagicRequest)
			out = binary.BigEndian.AppendUint16(out, r.flags)
			out = binary.BigEndian.AppendUint16(out, r.typ)
			out = binary.BigEndian.AppendUint64(out, r.cookie)
			out = binary.BigEndian.AppendUint64(out, r.offset)
			out = binary.BigEndian.AppendUint32(out, r.length)
			if !bytes.Equal(out, b) {
				t.Fatalf("request %x decodes to %+v, which encodes to %x", b, r, out)
			}
		}
		if name, infos, err := parseGo(b); err == nil {
			out := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
			out = append(out, name...)
			out = binary.BigEndian.AppendUint16(out, uint16(len(infos)))
			for _, i := range infos {
				out = binary.BigEndian.AppendUint16(out, i)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("option data %x decodes to %q %v, which encodes to %x", b, name, infos, out)
			}
		}
	})
}
