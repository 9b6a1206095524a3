package xapi_test

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/ahvfs/ahvfs/xapi"
)

// FuzzDecodeResponse: any answer decodes into a result or an error,
// never a panic; an *xapi.Error always has a code.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","result":{"OpaqueRef:a":{"uuid":"u","VCPUs_max":"2"}},"id":1}`))
	f.Add([]byte(`{"jsonrpc":"2.0","error":{"code":1,"message":"HANDLE_INVALID","data":["VM","OpaqueRef:x"]},"id":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var result any
		err := xapi.DecodeResponse(data, 1, &result)
		if xe := (*xapi.Error)(nil); errors.As(err, &xe) && xe.Code == "" {
			t.Fatalf("error without a code: %v", err)
		}
	})
}

// FuzzParseTaskResult: no panic; a string wrapped in <value> comes back.
func FuzzParseTaskResult(f *testing.F) {
	f.Add("<value>OpaqueRef:a</value>", "OpaqueRef:b")
	f.Add("<value><array><data><value>OpaqueRef:a</value></data></array></value>", "x&y<z>")
	f.Fuzz(func(t *testing.T, result, s string) {
		xapi.ParseTaskResult(result)
		var b strings.Builder
		if xml.EscapeText(&b, []byte(s)) != nil || !validXMLText(s) {
			return
		}
		got, err := xapi.ParseTaskResult("<value><string>" + b.String() + "</string></value>")
		if err != nil || len(got) != 1 || got[0] != s {
			t.Fatalf("round trip of %q: %q, %v", s, got, err)
		}
	})
}

// validXMLText rejects what XML cannot carry (or normalises away).
func validXMLText(s string) bool {
	for _, r := range s {
		if r == '\r' || r == 0xFFFD || r < 0x20 && r != '\t' && r != '\n' || r >= 0xD800 && r < 0xE000 || r == 0xFFFE || r == 0xFFFF {
			return false
		}
	}
	return true
}

// FuzzBitmap: Extents are ordered, coalesced, inside the disk, and cover
// exactly the changed blocks.
func FuzzBitmap(f *testing.F) {
	f.Add("gAE=", int64(16*xapi.CBTBlockSize))
	f.Add("/wD/", int64(3*xapi.CBTBlockSize+100))
	f.Fuzz(func(t *testing.T, s string, size int64) {
		b, err := xapi.DecodeBitmap(s)
		if err != nil {
			return
		}
		size = size % (int64(len(b))*8*xapi.CBTBlockSize + 3*xapi.CBTBlockSize)
		ext := b.Extents(size)
		var covered int64
		prevEnd := int64(-1)
		for _, e := range ext {
			if e.Len <= 0 || e.Off <= prevEnd || e.Off+e.Len > size || e.Off%xapi.CBTBlockSize != 0 {
				t.Fatalf("bad extent %+v after %d (size %d): %v", e, prevEnd, size, ext)
			}
			for off := e.Off; off < e.Off+e.Len; off += xapi.CBTBlockSize {
				if !b.Changed(off / xapi.CBTBlockSize) {
					t.Fatalf("extent %+v holds unchanged block %d", e, off/xapi.CBTBlockSize)
				}
				covered++
			}
			if b.Changed((e.Off+e.Len)/xapi.CBTBlockSize) && e.Off+e.Len < size {
				t.Fatalf("extent %+v not coalesced", e)
			}
			prevEnd = e.Off + e.Len
		}
		var want int64
		for i := int64(0); i*xapi.CBTBlockSize < size; i++ {
			if b.Changed(i) {
				want++
			}
		}
		if covered != want {
			t.Fatalf("extents cover %d blocks, %d changed", covered, want)
		}
	})
}
