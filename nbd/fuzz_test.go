package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"testing"
)

// Requests in flight for FuzzReply, by cookie.
func fuzzRequests() map[uint64]*request {
	rd := newRequest(cmdRead, 1000, 256, make([]byte, 256))
	small := newRequest(cmdRead, 0, 16, make([]byte, 16))
	bs := newRequest(cmdBlockStatus, 0, 1<<20, nil)
	flush := newRequest(cmdFlush, 0, 0, nil)
	m := map[uint64]*request{1: rd, 2: small, 3: bs, 4: flush}
	for c, r := range m {
		r.cookie = c
	}
	return m
}

// seedReplies are well-formed reply streams for the requests of
// fuzzRequests.
func seedReplies() [][]byte {
	ext := binary.BigEndian.AppendUint32(nil, 7)
	ext = binary.BigEndian.AppendUint32(ext, 4096)
	ext = binary.BigEndian.AppendUint32(ext, StateHole|StateZero)
	ext = binary.BigEndian.AppendUint32(ext, 1<<20)
	ext = binary.BigEndian.AppendUint32(ext, 0)
	at := uint64(1200)
	return [][]byte{
		simpleReply(2, 0, pattern(0, 16)),
		simpleReply(1, 5, nil),
		bytes.Join([][]byte{
			dataChunk(1, 0, 1100, pattern(1100, 156)),
			holeChunk(1, 0, 1000, 100),
			noneChunk(1),
			dataChunk(2, chunkFlagDone, 0, pattern(0, 16)),
		}, nil),
		bytes.Join([][]byte{
			chunk(3, chunkFlagDone, chunkBlockStatus, ext),
			errorChunk(1, 0, chunkErrorOffset, 5, "bad", &at),
			errorChunk(1, chunkFlagDone, chunkError, 22, "worse", nil),
			simpleReply(4, 0, nil),
		}, nil),
		errorChunk(2, chunkFlagDone, chunkFlagError|9, 1, "new kind", nil),
	}
}

// FuzzReply feeds arbitrary server bytes to the reply decoder, as the
// transmission phase would: nothing may panic, every read that succeeds
// was fully described, and every block status that succeeds has extents.
func FuzzReply(f *testing.F) {
	for i, s := range seedReplies() {
		f.Add(s, i != 0 && i != 1)
	}
	f.Fuzz(func(t *testing.T, b []byte, structured bool) {
		pending := fuzzRequests()
		rc := &receiver{
			r:          bufio.NewReader(bytes.NewReader(b)),
			structured: structured,
			haveMeta:   true,
			metaID:     7,
			lookup:     func(c uint64) *request { return pending[c] },
			scratch:    make([]byte, 100), // data arrives in several pieces
		}
		for range 1000 {
			req, done, err := rc.next()
			if err != nil {
				return
			}
			if req == nil {
				t.Fatal("no request and no error")
			}
			if !done {
				continue
			}
			delete(pending, req.cookie)
			if req.err != nil {
				continue
			}
			switch req.cmd {
			case cmdRead:
				if structured && req.covered.total() != uint64(req.length) {
					t.Fatalf("read of %d bytes succeeded with %d", req.length, req.covered.total())
				}
			case cmdBlockStatus:
				if len(req.status) == 0 {
					t.Fatal("block status succeeded without extents")
				}
			}
		}
	})
}

// FuzzOptionReply feeds arbitrary bytes to the option reply reader and
// the parsers of what option replies carry.
func FuzzOptionReply(f *testing.F) {
	reply := func(opt, typ uint32, data []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicOptReply)
		b = binary.BigEndian.AppendUint32(b, opt)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	exp := append([]byte{0, infoExport}, binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, 1<<30), 3)...)
	bsz := []byte{0, infoBlockSize, 0, 0, 2, 0, 0, 0, 16, 0, 2, 0, 0, 0}
	f.Add(bytes.Join([][]byte{reply(optGo, repInfo, exp), reply(optGo, repInfo, bsz), reply(optGo, repAck, nil)}, nil))
	f.Add(reply(optGo, repErrUnknown, []byte("export 'x' not present")))
	f.Add(reply(optGo, repInfo, append([]byte{0, infoName}, "disk"...)))
	f.Add(reply(optGo, repMetaContext, append([]byte{0, 0, 0, 7}, metaBaseAllocation...)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var info exportInfo
		for range 100 {
			rep, err := readOptReply(r, optGo)
			if err != nil {
				return
			}
			if len(rep.data) > maxOptionReplyLength {
				t.Fatalf("reply of %d bytes accepted", len(rep.data))
			}
			_ = rep.message()
			_, _, _ = parseMetaContext(rep.data)
			if err := info.parseInfo(rep.data); err != nil {
				continue
			}
			if info.size > math.MaxInt64 {
				t.Fatalf("export size %d accepted", info.size)
			}
			if info.haveBlockSize && (bits.OnesCount32(info.minBlock) != 1 || info.minBlock > maxMinBlock || info.maxPayload < info.minBlock) {
				t.Fatalf("block sizes %d/%d/%d accepted", info.minBlock, info.prefBlock, info.maxPayload)
			}
		}
	})
}

// seedHandshakes are server sides of whole handshakes for FuzzHandshake.
func seedHandshakes() [][]byte {
	var out [][]byte
	greet := func(flags uint16) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicInit)
		b = binary.BigEndian.AppendUint64(b, magicOpt)
		return binary.BigEndian.AppendUint16(b, flags)
	}
	reply := func(opt, typ uint32, data []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, magicOptReply)
		b = binary.BigEndian.AppendUint32(b, opt)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	exp := append([]byte{0, infoExport}, binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, 1<<30), 1)...)
	bsz := []byte{0, infoBlockSize, 0, 0, 2, 0, 0, 0, 16, 0, 2, 0, 0, 0}
	// Structured replies, base:allocation, GO.
	out = append(out, bytes.Join([][]byte{
		greet(flagFixedNewstyle | flagNoZeroes),
		reply(optStructuredReply, repAck, nil),
		reply(optSetMetaContext, repMetaContext, append([]byte{0, 0, 0, 1}, metaBaseAllocation...)),
		reply(optSetMetaContext, repAck, nil),
		reply(optGo, repInfo, exp), reply(optGo, repInfo, bsz), reply(optGo, repAck, nil),
	}, nil))
	// No structured replies, no GO: EXPORT_NAME with zeroes.
	out = append(out, bytes.Join([][]byte{
		greet(flagFixedNewstyle),
		reply(optStructuredReply, repErrUnsup, nil),
		reply(optGo, repErrUnsup, nil),
		binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, 4096), 1), make([]byte, 124),
	}, nil))
	// Non-fixed newstyle.
	out = append(out, bytes.Join([][]byte{greet(0), binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, 512), 1), make([]byte, 124)}, nil))
	// Refusals.
	out = append(out, append(greet(flagFixedNewstyle|flagNoZeroes), reply(optStructuredReply, repErrTLSReqd, []byte("TLS first"))...))
	return out
}

// FuzzHandshake runs the client's side of the handshake against arbitrary
// server bytes: nothing may panic, and a handshake that succeeds has a
// valid export size and size constraints.
func FuzzHandshake(f *testing.F) {
	for _, s := range seedHandshakes() {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, noSR bool) {
		o := Options{Export: "disk", NoStructuredReplies: noSR}
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(b), io.Discard}
		n, err := negotiate(rw, &o, nil)
		if err != nil {
			return
		}
		if !n.info.haveExport || n.info.size > math.MaxInt64 {
			t.Fatalf("handshake succeeded with export info %+v", n.info)
		}
		if n.info.haveBlockSize && (n.info.minBlock == 0 || n.info.maxPayload < n.info.minBlock) {
			t.Fatalf("handshake accepted block sizes %+v", n.info)
		}
		if n.haveMeta && !n.structured {
			t.Fatal("metadata context without structured replies")
		}
	})
}

// TestFuzzSeeds checks that the seeds are what they claim: well-formed
// streams the decoders accept, so the fuzzers start from good inputs.
func TestFuzzSeeds(t *testing.T) {
	for i, s := range seedReplies() {
		pending := fuzzRequests()
		rc := &receiver{r: bufio.NewReader(bytes.NewReader(s)), structured: i >= 2, haveMeta: true, metaID: 7,
			lookup: func(c uint64) *request { return pending[c] }}
		for {
			req, done, err := rc.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("seed %d: %v", i, err)
			}
			if done {
				if _, isErr := req.err.(*CommandError); req.err != nil && !isErr {
					t.Fatalf("seed %d: request %d: %v", i, req.cookie, req.err)
				}
				delete(pending, req.cookie)
			}
		}
	}
	for i, s := range seedHandshakes() {
		o := Options{Export: "disk"}
		_, err := negotiate(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(s), io.Discard}, &o, nil)
		if (err == nil) != (i < 3) {
			t.Fatalf("handshake seed %d: %v", i, err)
		}
	}
}
