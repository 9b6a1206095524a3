package retention_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/retention"
)

func TestParseSpan(t *testing.T) {
	for _, c := range []struct {
		in   string
		want retention.Span
		str  string
	}{
		{"7d", retention.Span{Days: 7}, "7d"},
		{"2w", retention.Span{Days: 14}, "14d"},
		{"1w2d", retention.Span{Days: 9}, "9d"},
		{"1y6m", retention.Span{Years: 1, Months: 6}, "1y6m"},
		{"36h", retention.Span{Hours: 36}, "36h"},
		{"1y2m3d4h", retention.Span{Years: 1, Months: 2, Days: 3, Hours: 4}, "1y2m3d4h"},
		{"1y2m1w3d4h", retention.Span{Years: 1, Months: 2, Days: 10, Hours: 4}, "1y2m10d4h"},
		{"18m", retention.Span{Months: 18}, "18m"},
		{"1y1h", retention.Span{Years: 1, Hours: 1}, "1y1h"},
		{"007d", retention.Span{Days: 7}, "7d"},
		{"1000000h", retention.Span{Hours: 1000000}, "1000000h"},
		{"142857w1d", retention.Span{Days: 1000000}, "1000000d"},
	} {
		got, err := retention.ParseSpan(c.in)
		if err != nil {
			t.Errorf("ParseSpan(%q): %v", c.in, err)
			continue
		}
		if got != c.want || got.String() != c.str {
			t.Errorf("ParseSpan(%q) = %+v (%s), want %+v (%s)", c.in, got, got, c.want, c.str)
		}
	}
}

func TestParseSpanErrors(t *testing.T) {
	for _, c := range []struct {
		in, why string
	}{
		{"", "empty"},
		{"d", "want a number before 'd'"},
		{"7", "7 has no unit"},
		{"1y6", "6 has no unit"},
		{"0d", "0d is not positive"},
		{"1y0m", "0m is not positive"},
		{"-1d", "want a number before '-'"},
		{"+1d", "want a number before '+'"},
		{"7x", "unknown unit 'x'"},
		{"7D", "unknown unit 'D'"},
		{"7é", "unknown unit 'é'"},
		{"1.5d", "unknown unit '.'"},
		{" 7d", "want a number before ' '"},
		{"7d ", "want a number before ' '"},
		{"1d1d", "unit d repeated or out of order"},
		{"1d1y", "unit y repeated or out of order"},
		{"1h1d", "unit d repeated or out of order"},
		{"1m1y", "unit y repeated or out of order"},
		{"1d1w", "unit w repeated or out of order"},
		{"2w1w", "unit w repeated or out of order"},
		{"1000001d", "too long"},
		{"142858w", "too long"},
		{"142857w2d", "1000001 days is too long"},
		{"99999999999999999999999h", "too long"},
	} {
		_, err := retention.ParseSpan(c.in)
		if err == nil {
			t.Errorf("ParseSpan(%q): no error, want %q", c.in, c.why)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.why) || !strings.Contains(msg, strconv.Quote(c.in)) {
			t.Errorf("ParseSpan(%q) = %q, want it to name the input and say %q", c.in, msg, c.why)
		}
	}
}

func TestSpanString(t *testing.T) {
	if got := (retention.Span{}).String(); got != "0h" {
		t.Errorf("zero Span = %q, want 0h", got)
	}
	if !(retention.Span{}).IsZero() || (retention.Span{Hours: 1}).IsZero() {
		t.Errorf("IsZero is wrong")
	}
}

// TestSpanBefore: calendar arithmetic, with AddDate's normalisation of
// days a month does not have, in UTC whatever t's zone.
func TestSpanBefore(t *testing.T) {
	for _, c := range []struct {
		span, from, want string
	}{
		{"1m", "2024-03-31T12:00:00Z", "2024-03-02T12:00:00Z"}, // 2024-02-31 carried into March
		{"1m", "2025-03-31T00:00:00Z", "2025-03-03T00:00:00Z"}, // 2025-02-31
		{"1m", "2024-05-31T00:00:00Z", "2024-05-01T00:00:00Z"}, // 2024-04-31
		{"1m", "2024-03-15T00:00:00Z", "2024-02-15T00:00:00Z"},
		{"1y", "2024-02-29T00:00:00Z", "2023-03-01T00:00:00Z"}, // 2023-02-29
		{"4y", "2024-02-29T00:00:00Z", "2020-02-29T00:00:00Z"},
		{"1y6m", "2024-08-31T00:00:00Z", "2023-03-03T00:00:00Z"}, // 2023-02-31
		{"7d", "2024-03-03T00:00:00Z", "2024-02-25T00:00:00Z"},
		{"2w", "2024-03-15T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"36h", "2024-01-02T12:00:00+02:00", "2023-12-31T22:00:00Z"},
		{"1d", "2024-06-01T01:00:00+02:00", "2024-05-30T23:00:00Z"},
		{"1y2m3d4h", "2024-03-04T05:00:00Z", "2023-01-01T01:00:00Z"},
		{"1m", "2024-03-31T01:00:00+02:00", "2024-03-01T23:00:00Z"}, // from 2024-03-30T23:00Z
	} {
		sp, err := retention.ParseSpan(c.span)
		if err != nil {
			t.Fatal(err)
		}
		got := sp.Before(at(c.from))
		if !got.Equal(at(c.want)) || got.Location() != time.UTC {
			t.Errorf("%s before %s = %s, want %s", c.span, c.from, got, c.want)
		}
	}
}

func TestSpanAfter(t *testing.T) {
	for _, c := range []struct {
		span, from, want string
	}{
		{"30d", "2026-12-01T10:00:00Z", "2026-12-31T10:00:00Z"},
		{"1m", "2024-01-31T00:00:00Z", "2024-03-02T00:00:00Z"}, // 2024-02-31 carried into March
		{"1y", "2024-02-29T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"2w", "2026-12-25T00:00:00+02:00", "2027-01-07T22:00:00Z"},
		{"1y2m3d4h", "2023-01-01T01:00:00Z", "2024-03-04T05:00:00Z"},
	} {
		sp, err := retention.ParseSpan(c.span)
		if err != nil {
			t.Fatal(err)
		}
		got := sp.After(at(c.from))
		if !got.Equal(at(c.want)) || got.Location() != time.UTC {
			t.Errorf("%s after %s = %s, want %s", c.span, c.from, got, c.want)
		}
	}
}

// FuzzParseSpan: ParseSpan never panics, and a parsed span is positive,
// its String parses back to it, and Before works on it.
func FuzzParseSpan(f *testing.F) {
	for _, s := range []string{"7d", "2w", "1y6m", "36h", "1y2m3d4h", "1y2m1w3d4h", "142857w1d", "0d", "1d1y", "", "-1h", "99999999999999999999d", "1e3d", "７d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := retention.ParseSpan(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Errorf("ParseSpan(%q) = %q: does not name the input", s, err)
			}
			return
		}
		if sp.IsZero() || sp.Years < 0 || sp.Months < 0 || sp.Days < 0 || sp.Hours < 0 {
			t.Fatalf("ParseSpan(%q) = %+v: not positive", s, sp)
		}
		again, err := retention.ParseSpan(sp.String())
		if err != nil || again != sp {
			t.Fatalf("ParseSpan(%q) = %+v, its String %q parses to %+v, %v", s, sp, sp.String(), again, err)
		}
		now := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
		if b := sp.Before(now); !b.Before(now) {
			t.Fatalf("%s before %s = %s, not earlier", sp, now, b)
		}
	})
}
