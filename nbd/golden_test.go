package nbd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/wire")

// TestWireGolden pins the bytes this client sends: the handshakes and the
// request headers (regenerate with -update after a deliberate change).
func TestWireGolden(t *testing.T) {
	handshake := func(server []byte, o Options) []byte {
		var sent bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(server), &sent}
		upgrade := func() (io.ReadWriter, error) { return nil, errors.New("stop here") }
		_, _ = negotiate(rw, &o, upgrade)
		return sent.Bytes()
	}
	seeds := seedHandshakes()
	startTLS := append(seeds[0][:18:18], appendOptReply(nil, optStartTLS, repAck, nil)...)
	request := func(cmd, flags uint16, cookie, off uint64, length uint32) []byte {
		b := make([]byte, requestLen)
		putRequest(b, cmd, flags, cookie, off, length)
		return b
	}
	cases := map[string][]byte{
		"handshake-go":          handshake(seeds[0], Options{Export: "disk"}),
		"handshake-export-name": handshake(seeds[1], Options{Export: "vm-disk-0"}),
		"handshake-not-fixed":   handshake(seeds[2], Options{}),
		"handshake-starttls":    handshake(startTLS, Options{Export: "disk", TLS: true}),
		"request-read":          request(cmdRead, 0, 0x0102030405060708, 1<<40+512, 32<<20),
		"request-block-status":  request(cmdBlockStatus, 0, 9, 4096, maxStatusRequest),
		"request-disc":          request(cmdDisc, 0, 10, 0, 0),
	}
	for name, b := range cases {
		got := fmt.Sprintf("# %s: %d bytes sent by the client\n%s", name, len(b), hex.Dump(b))
		path := filepath.Join("testdata", "wire", name+".golden")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("%s: wire bytes differ from %s:\n%s", name, path, got)
		}
	}
}

func appendOptReply(b []byte, opt, typ uint32, data []byte) []byte {
	b = append(b, 0, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9)
	b = append(b, byte(opt>>24), byte(opt>>16), byte(opt>>8), byte(opt))
	b = append(b, byte(typ>>24), byte(typ>>16), byte(typ>>8), byte(typ))
	n := uint32(len(data))
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, data...)
}
