package iscsi

import (
	"bufio"
	"bytes"
	"slices"
	"testing"
)

// seedPDUs are well-formed target PDUs for the fuzz corpus.
func seedPDUs() [][]byte {
	var out [][]byte
	add := func(h bhs, data []byte, hd, dd bool) {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writePDU(w, &h, data, hd, dd); err != nil {
			panic(err)
		}
		w.Flush()
		out = append(out, b.Bytes())
	}
	var h bhs
	h[0] = opLoginResp
	h[1] = flagFinal | 1<<2 | 3
	h.setU32(24, 7)
	add(h, encodeText([]keyValue{{"HeaderDigest", "None"}, {"MaxRecvDataSegmentLength", "8192"}}), false, false)
	h = bhs{}
	h[0] = opDataIn
	h[1] = flagFinal | flagStatus
	h.setU32(16, 5)
	h.setU32(40, 0)
	add(h, bytes.Repeat([]byte{0xab}, 1001), true, true)
	h = bhs{}
	h[0] = opSCSIResp
	h[1] = flagFinal
	h[3] = statusCheckCondition
	sense := []byte{0, 18, 0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0}
	add(h, sense, false, true)
	h = bhs{}
	h[0] = opR2T
	h[1] = flagFinal
	h.setU32(40, 8192)
	h.setU32(44, 65536)
	add(h, nil, true, false)
	return out
}

// FuzzReadPDU feeds arbitrary bytes to the PDU reader and to the decoders
// of what target PDUs carry. Nothing may panic, and a PDU that decodes
// must encode back to the same bytes.
func FuzzReadPDU(f *testing.F) {
	for i, p := range seedPDUs() {
		f.Add(p, i%2 == 1, i%3 == 1)
	}
	f.Fuzz(func(t *testing.T, b []byte, hd, dd bool) {
		pr := pduReader{r: bufio.NewReader(bytes.NewReader(b)), headerDigest: hd, dataDigest: dd, maxData: 4096}
		var h bhs
		data, err := pr.readPDU(&h)
		if err != nil {
			return
		}
		_ = opName(h.opcode())
		_ = h.hasSN()
		_ = parseSense("fuzz", data)
		if len(data) >= 2 {
			_ = parseSense("fuzz", data[2:])
		}
		_, _ = parseInquiry(data)
		_, _ = parseDeviceID(data)
		_ = decodeLUN(h[8:16])
		if kvs, err := parseText(data); err == nil {
			p := defaultParams()
			o := Options{}.withDefaults()
			_ = p.applyAnswer(&o, kvs)
		}
		if h.totalAHSLen() != 0 {
			return
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		h2 := h
		if err := writePDU(w, &h2, data, hd, dd); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if h2 != h {
			t.Fatalf("header changed by a round trip")
		}
		// Padding bytes need not be zero on the wire; compare the rest.
		consumed := bhsLen + len(data) + pad4(len(data))
		if hd {
			consumed += 4
		}
		if dd && len(data) > 0 {
			consumed += 4
		}
		if out.Len() != consumed {
			t.Fatalf("re-encoded %d bytes, consumed %d", out.Len(), consumed)
		}
		pr2 := pduReader{r: bufio.NewReader(&out), headerDigest: hd, dataDigest: dd, maxData: 4096}
		var h3 bhs
		data2, err := pr2.readPDU(&h3)
		if err != nil || h3 != h || !bytes.Equal(data, data2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseText checks the key=value parser: no panics, and what parses
// encodes and parses back to the same pairs. The negotiation code must
// cope with any parsed answer.
func FuzzParseText(f *testing.F) {
	f.Add([]byte("TargetName=iqn.2024-01.x:y\x00TargetAddress=127.0.0.1:3260,1\x00"))
	f.Add([]byte("CHAP_A=5\x00CHAP_I=17\x00CHAP_C=0x0123456789abcdef\x00"))
	f.Add([]byte("MaxBurstLength=262144\x00FirstBurstLength=65536\x00ImmediateData=Yes\x00InitialR2T=No\x00"))
	f.Add([]byte("HeaderDigest=CRC32C\x00DataDigest=None\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := parseText(b)
		if err != nil {
			return
		}
		again, err := parseText(encodeText(kvs))
		if err != nil || !slices.Equal(kvs, again) {
			t.Fatalf("round trip of %q: %v", b, err)
		}
		m := textMap(kvs)
		_, _ = chapAnswer(&CHAP{User: "u", Secret: "s"}, m)
		mc := &mutualChallenge{id: 1, challenge: []byte{1, 2, 3}}
		_ = mc.verify(&CHAP{TargetUser: "t", TargetSecret: "x"}, m)
		for _, hd := range []bool{false, true} {
			o := Options{HeaderDigest: hd, DataDigest: !hd}.withDefaults()
			p := defaultParams()
			if err := p.applyAnswer(&o, kvs); err == nil {
				if p.firstBurst > p.maxBurst || p.maxBurst > o.MaxBurstLength || p.maxXmitData < 512 {
					t.Fatalf("accepted inconsistent parameters %+v from %q", p, b)
				}
			}
		}
	})
}
