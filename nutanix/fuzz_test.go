package nutanix

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeError: any body decodes without panicking, keeps the status,
// and renders a single valid-UTF-8-safe line containing it.
func FuzzDecodeError(f *testing.F) {
	for _, s := range []string{
		`{"api_version":"3.1","code":404,"kind":"vm","state":"ERROR","message_list":[{"message":"m","reason":"ENTITY_NOT_FOUND"}]}`,
		`{"message":"Volume group not found","error_code":{"code":1202}}`,
		`{"data":{"error":[{"message":"x","code":"VMM-20005"}]}}`,
		`{"data":{"error":{"statusCode":400,"validationErrorMessages":[{"attributePath":"a","message":"b"}]}}}`,
		"invalid Nutanix credentials\n", "", "<html>", `{"error":"boom"}`, `{"data":[1,2]}`,
	} {
		f.Add(500, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := DecodeError("op", status, body)
		if e.Status != status {
			t.Fatalf("status %d became %d", status, e.Status)
		}
		msg := e.Error()
		if !strings.Contains(msg, "HTTP") {
			t.Fatalf("message %q", msg)
		}
		if utf8.Valid(body) && !utf8.ValidString(msg) {
			t.Fatalf("invalid UTF-8 from valid input: %q", msg)
		}
	})
}

// checkWalk feeds one decoded page to a walker over [start, end) and
// checks the ChangedRegions contract: ascending, non-overlapping, inside
// the window, positive lengths, known kinds.
func checkWalk(t *testing.T, p RegionPage, start, end int64) {
	var got []Region
	w := regionWalker{start: start, end: end, fn: func(r Region) error { got = append(got, r); return nil }}
	_, _ = w.take(p)
	prev := start
	for _, r := range got {
		if r.Length <= 0 || r.Offset < prev || (end > 0 && r.End() > end) {
			t.Fatalf("region %+v after %d (window %d-%d) from %+v", r, prev, start, end, p.Regions)
		}
		if r.Kind != RegionRegular && r.Kind != RegionZeroed {
			t.Fatalf("kind %q", r.Kind)
		}
		prev = r.End()
	}
}

func FuzzV3ChangedRegions(f *testing.F) {
	f.Add([]byte(`{"region_list":[{"offset":0,"length":1048576,"type":"REGULAR"},{"offset":1048576,"length":4194304,"type":"ZEROED"}],"next_offset":5242880,"file_size":107374182400}`), int64(0), int64(0))
	f.Add([]byte(`{"region_list":[],"file_size":10}`), int64(0), int64(10))
	f.Add([]byte(`{"region_list":[{"offset":10,"length":5,"type":"regular"},{"offset":0,"length":12,"type":"ZEROED"}]}`), int64(3), int64(14))
	f.Fuzz(func(t *testing.T, body []byte, start, length int64) {
		p, err := DecodeV3ChangedRegions(body)
		if err != nil {
			return
		}
		if start < 0 || length < 0 || start > 1<<50 || length > 1<<50 {
			return
		}
		end := int64(0)
		if length > 0 {
			end = start + length
		}
		checkWalk(t, p, start, end)
	})
}

func FuzzV4ChangedRegions(f *testing.F) {
	f.Add([]byte(`{"data":[{"$objectType":"dataprotection.v4.content.ChangedRegion","offset":0,"length":65536,"regionType":"REGULAR"}],"metadata":{"extraInfo":[{"name":"nextOffset","value":"1048576"},{"name":"fileSize","value":107374182400}]}}`), int64(0), int64(1<<20))
	f.Add([]byte(`{"data":[],"metadata":{}}`), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, body []byte, start, length int64) {
		p, err := DecodeV4ChangedRegions(body)
		if err != nil {
			return
		}
		if start < 0 || length < 0 || start > 1<<50 || length > 1<<50 {
			return
		}
		end := int64(0)
		if length > 0 {
			end = start + length
		}
		checkWalk(t, p, start, end)
	})
}

// FuzzCapacityStats: a v2.0 stats map and a v4 stats series decode
// without panicking; a value is never negative, and the share of memory
// in use never exceeds the memory.
func FuzzCapacityStats(f *testing.F) {
	f.Add([]byte(`{"hypervisor_memory_usage_ppm":"247726","storage.user_free_bytes":"-1"}`),
		[]byte(`[{"timestamp":"2026-12-03T10:00:00Z","value":260408},{"timestamp":"2026-12-03T09:59:30Z","value":1}]`), int64(404078198784))
	f.Add([]byte(`{"hypervisor_memory_usage_ppm":1000001}`), []byte(`[]`), int64(1))
	f.Fuzz(func(t *testing.T, stats, series []byte, memory int64) {
		var m map[string]json.RawMessage
		if json.Unmarshal(stats, &m) == nil {
			for k := range m {
				if n, ok := statInt(m, k); ok && n < 0 {
					t.Fatalf("%s: %d", k, n)
				}
			}
			if ppm, ok := statInt(m, "hypervisor_memory_usage_ppm"); ok && memory >= 0 {
				if used := ppmOf(memory, ppm); used < 0 || used > memory {
					t.Fatalf("%d ppm of %d is %d", ppm, memory, used)
				}
			}
		}
		var s v4Series
		if json.Unmarshal(series, &s) == nil {
			if v, ok := s.last(); ok && v < 0 {
				t.Fatalf("series value %d", v)
			}
		}
	})
}
