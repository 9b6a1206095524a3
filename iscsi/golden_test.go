package iscsi

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/pdu")

// TestPDUGolden pins the wire bytes of the PDUs this initiator builds
// (regenerate with -update after a deliberate change).
func TestPDUGolden(t *testing.T) {
	lun, _ := encodeLUN(1)
	p := params{maxXmitData: 8, firstBurst: 16, maxBurst: 64, immediateData: true, initialR2T: false}
	write := &task{lun: lun, cdb: cdbRW16(scsiWrite16, 0x1234, 1), buf: []byte("0123456789abcdefghijklmnopqrstuv"), itt: 7, cmdSN: 42}
	read := &task{lun: lun, cdb: cdbRW16(scsiRead16, 0x10, 8), read: true, buf: make([]byte, 4096), itt: 8, cmdSN: 43}
	o := Options{HeaderDigest: true}.withDefaults()

	cases := map[string]struct {
		pdus   []outPDU
		hd, dd bool
	}{
		"read16":                {pdus: appendCommandPDUs(nil, read, &p)},
		"write16-imm-unsol":     {pdus: appendCommandPDUs(nil, write, &p)},
		"data-out-r2t":          {pdus: appendDataOut(nil, write, 0xabcd, 16, 16, 8)},
		"read16-digests":        {pdus: appendCommandPDUs(nil, read, &p), hd: true, dd: true},
		"operational-offer-txt": {pdus: []outPDU{{h: bhs{0: opLoginReq | flagImm, 1: flagFinal | 1<<2 | 3}, data: encodeText(o.offer())}}},
	}
	for name, tc := range cases {
		var b bytes.Buffer
		for i, pd := range tc.pdus {
			var wire bytes.Buffer
			w := bufio.NewWriter(&wire)
			h := pd.h
			h.setU32(28, 99) // ExpStatSN, as the sender stamps it
			if err := writePDU(w, &h, pd.data, tc.hd, tc.dd); err != nil {
				t.Fatal(err)
			}
			w.Flush()
			fmt.Fprintf(&b, "# PDU %d: %s\n%s", i, opName(h.opcode()), hex.Dump(wire.Bytes()))
		}
		path := filepath.Join("testdata", "pdu", name+".golden")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s: wire bytes differ from %s:\n%s", name, path, b.String())
		}
	}
}
