package iscsi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestParseTextErrors(t *testing.T) {
	for _, in := range []string{
		"NoEquals\x00",
		"=value\x00",
		"Bad Key=1\x00",
		"MaxBurstLength=1\x00MaxBurstLength=2\x00",
		strings.Repeat("K", 64) + "=1\x00",
		"CHAP_C=0x" + strings.Repeat("ab", 4100) + "\x00",
	} {
		if _, err := parseText([]byte(in)); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseText(%.40q) = %v, want ErrProtocol", in, err)
		}
	}
	kvs, err := parseText([]byte("TargetName=a\x00TargetAddress=x\x00TargetName=b\x00TargetAddress=y\x00\x00\x00"))
	if err != nil || len(kvs) != 4 || kvs[2].Value != "b" {
		t.Fatalf("SendTargets answer: %v %v", kvs, err)
	}
}

func TestNegotiation(t *testing.T) {
	o := Options{HeaderDigest: true}.withDefaults()
	p := defaultParams()
	err := p.applyAnswer(&o, []keyValue{
		{"HeaderDigest", "CRC32C"}, {"DataDigest", "None"}, {"MaxRecvDataSegmentLength", "65536"},
		{"MaxBurstLength", "262144"}, {"FirstBurstLength", "65536"}, {"ImmediateData", "No"}, {"InitialR2T", "Yes"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := params{headerDigest: true, maxRecvData: 8192, maxXmitData: 65536, maxBurst: 262144, firstBurst: 65536,
		immediateData: false, initialR2T: true, maxOutstandingR2T: 1}
	if p != want {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
	for _, bad := range [][]keyValue{
		{{"HeaderDigest", "None"}},                                 // we required CRC32C
		{{"MaxBurstLength", "99999999"}},                           // above what we offered
		{{"MaxRecvDataSegmentLength", "12"}},                       // below the minimum
		{{"ErrorRecoveryLevel", "2"}},                              // we offered 0
		{{"DataPDUInOrder", "No"}},                                 // we need ordered data
		{{"MaxBurstLength", "1024"}, {"FirstBurstLength", "4096"}}, // first > max
	} {
		p := defaultParams()
		if err := p.applyAnswer(&o, bad); err == nil {
			t.Errorf("answer %v accepted", bad)
		}
	}
}

func TestCHAPExchange(t *testing.T) {
	c := &CHAP{User: "u", Secret: "s", TargetUser: "tgt", TargetSecret: "ts"}
	kv, err := chapAnswer(c, map[string]string{"CHAP_A": "5", "CHAP_I": "7", "CHAP_C": "0x0102"})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := decodeBinary(kv[1].Value)
	if kv[0].Value != "u" || !bytes.Equal(r, chapResponse(7, "s", []byte{1, 2})) {
		t.Fatalf("answer %v", kv)
	}
	// Base64 challenges give the same response.
	kv2, err := chapAnswer(c, map[string]string{"CHAP_A": "5", "CHAP_I": "7", "CHAP_C": "0bAQI="})
	if err != nil || kv2[1] != kv[1] {
		t.Fatalf("base64 challenge: %v %v", kv2, err)
	}
	if _, err := chapAnswer(c, map[string]string{"CHAP_A": "7", "CHAP_I": "1", "CHAP_C": "0x01"}); err == nil {
		t.Fatal("SHA algorithms are not implemented and must be refused")
	}
	mc := &mutualChallenge{id: 9, challenge: []byte("challenge")}
	good := map[string]string{"CHAP_N": "tgt", "CHAP_R": encodeHex(chapResponse(9, "ts", []byte("challenge")))}
	if err := mc.verify(c, good); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{"CHAP_N": "tgt", "CHAP_R": encodeHex(chapResponse(9, "other", []byte("challenge")))}
	if err := mc.verify(c, bad); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong target secret: %v", err)
	}
}

func TestParseSense(t *testing.T) {
	fixed := []byte{0xf0, 0, 0x03, 0, 0, 0x10, 0x00, 10, 0, 0, 0, 0, 0x11, 0x00, 0, 0, 0, 0}
	e := parseSense("READ(16)", fixed)
	if e.Key != SenseMediumError || e.ASC != 0x11 || e.ASCQ != 0 || !e.Valid || e.Info != 0x1000 {
		t.Fatalf("fixed: %+v", e)
	}
	if !strings.Contains(e.Error(), "MEDIUM ERROR") || !strings.Contains(e.Error(), "unrecovered read error") {
		t.Fatalf("message %q", e.Error())
	}
	desc := []byte{0x72, 0x05, 0x24, 0x00, 0, 0, 0, 12, 0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 42}
	e = parseSense("WRITE(16)", desc)
	if e.Key != SenseIllegalRequest || e.ASC != 0x24 || !e.Valid || e.Info != 42 {
		t.Fatalf("descriptor: %+v", e)
	}
	for _, b := range [][]byte{nil, {0x70}, {0x72, 1}, {0x72, 1, 2, 3, 4, 5, 6, 200, 0, 50}} {
		_ = parseSense("x", b).Error() // must not panic
	}
}

func TestLUNField(t *testing.T) {
	for _, n := range []uint64{0, 1, 255, 256, 1000, 16383} {
		f, err := encodeLUN(n)
		if err != nil || decodeLUN(f[:]) != n {
			t.Errorf("LUN %d: %x %v", n, f, err)
		}
	}
	if _, err := encodeLUN(16384); err == nil {
		t.Error("LUN 16384 encoded")
	}
}

func TestSerialNumbers(t *testing.T) {
	if !snLess(0xfffffff0, 5) || snLess(5, 0xfffffff0) || !snLessEq(3, 3) || snLess(3, 3) {
		t.Fatal("serial arithmetic does not wrap")
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{CHAP: CHAP{Secret: "x"}, MaxBurstLength: 100, QueueDepth: -1}
	err := o.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"Portal is required", "CHAP.Secret", "MaxBurstLength", "QueueDepth"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (&Options{Portal: "10.0.0.1"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPDUDigests(t *testing.T) {
	var h bhs
	h[0] = opDataIn
	h.setU32(16, 3)
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	data := []byte("hello, world!") // 13 bytes: padded to 16
	if err := writePDU(w, &h, data, true, true); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if b.Len() != 48+4+16+4 {
		t.Fatalf("PDU is %d bytes", b.Len())
	}
	wire := b.Bytes()
	for _, i := range []int{10, 49, 55} { // header, header digest, data
		bad := bytes.Clone(wire)
		bad[i] ^= 1
		pr := pduReader{r: bufio.NewReader(bytes.NewReader(bad)), headerDigest: true, dataDigest: true, maxData: 1 << 20}
		var h2 bhs
		if _, err := pr.readPDU(&h2); !errors.Is(err, ErrProtocol) {
			t.Errorf("flipped byte %d: %v, want a digest error", i, err)
		}
	}
	pr := pduReader{r: bufio.NewReader(bytes.NewReader(wire)), headerDigest: true, dataDigest: true, maxData: 8}
	if _, err := pr.readPDU(&h); !errors.Is(err, ErrProtocol) {
		t.Errorf("oversized segment: %v", err)
	}
}

// TestRetryLogin pins down which failed logins session recovery retries
// (a target that may take the login later) and which end it at once.
func TestRetryLogin(t *testing.T) {
	refused := func(status uint16) error {
		return &LoginError{Target: "iqn.2024-01.io.ahvfs:t", Portal: "127.0.0.1:3260", Class: uint8(status >> 8), Detail: uint8(status)}
	}
	cases := []struct {
		name  string
		err   error
		retry bool
	}{
		{"initiator error 0x0200", refused(0x0200), false},
		{"authentication failure 0x0201", refused(0x0201), false},
		{"authorization failure 0x0202", refused(0x0202), false},
		{"target not found 0x0203", refused(0x0203), true},
		{"target removed 0x0204", refused(0x0204), true},
		{"unsupported version 0x0205", refused(0x0205), false},
		{"too many connections 0x0206", refused(0x0206), false},
		{"missing parameter 0x0207", refused(0x0207), false},
		{"cannot include in session 0x0208", refused(0x0208), false},
		{"session type not supported 0x0209", refused(0x0209), false},
		{"session does not exist 0x020a", refused(0x020a), false},
		{"invalid request during login 0x020b", refused(0x020b), false},
		{"target error 0x0300", refused(0x0300), true},
		{"service unavailable 0x0301", refused(0x0301), true},
		{"out of resources 0x0302", refused(0x0302), true},
		{"unknown target error 0x0377", refused(0x0377), true},
		{"unknown class 0x0400", refused(0x0400), false},
		{"wrapped target not found", fmt.Errorf("dial: %w", refused(0x0203)), true},
		{"wrapped authentication failure", fmt.Errorf("dial: %w", refused(0x0201)), false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset during login", fmt.Errorf("read login response: %w", io.ErrUnexpectedEOF), true},
		{"protocol error", fmt.Errorf("%w: got NOP-In during login", ErrProtocol), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryLogin(tc.err); got != tc.retry {
				t.Fatalf("retryLogin(%v) = %v, want %v", tc.err, got, tc.retry)
			}
			var le *LoginError
			if !errors.As(tc.err, &le) {
				return
			}
			if le.Transient() != tc.retry {
				t.Errorf("Transient() = %v, want %v", le.Transient(), tc.retry)
			}
			if errors.Is(tc.err, ErrAuth) && tc.retry {
				t.Error("a refused authentication is retried")
			}
			if msg := le.Error(); !strings.Contains(msg, le.Target) || !strings.Contains(msg, le.Portal) ||
				!strings.Contains(msg, fmt.Sprintf("0x%02x%02x", le.Class, le.Detail)) {
				t.Errorf("message %q does not name the target, the portal and the status", msg)
			}
		})
	}
}
