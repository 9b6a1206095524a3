package retention

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Span is a length of time in calendar terms: a month is a calendar month,
// not 30 days. The zero Span is no span at all.
type Span struct {
	Years, Months, Days, Hours int
}

// maxSpanField bounds each field of a parsed span (and so the days of
// weeks and days together), which keeps every sum and Before far from
// overflowing.
const maxSpanField = 1_000_000

// spanUnits are the units of a span string, in the order they must come.
const spanUnits = "ymwdh"

// ParseSpan parses a span such as 7d, 2w, 1y6m, 36h or 1y2m3d4h: positive
// decimal integers, each followed by a unit — y (years), m (months),
// w (weeks, 7 days each), d (days), h (hours) — each unit at most once and
// in that order. Weeks and days add up to Days: 2w is {Days: 14} and
// 1w2d is {Days: 9}. No field may exceed 1000000.
func ParseSpan(s string) (Span, error) {
	if s == "" {
		return Span{}, fmt.Errorf("span %q: empty; want numbers with units y, m, w, d, h, such as 7d, 2w, 1y6m or 36h", s)
	}
	var sp Span
	rest := s
	next := 0 // index in spanUnits of the first unit still allowed
	for rest != "" {
		i := 0
		for i < len(rest) && '0' <= rest[i] && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			r, _ := utf8.DecodeRuneInString(rest)
			return Span{}, fmt.Errorf("span %q: want a number before %q", s, r)
		}
		if i == len(rest) {
			return Span{}, fmt.Errorf("span %q: %s has no unit (y, m, w, d or h)", s, rest)
		}
		digits := rest[:i]
		u := strings.IndexByte(spanUnits, rest[i])
		if u < 0 {
			r, _ := utf8.DecodeRuneInString(rest[i:])
			return Span{}, fmt.Errorf("span %q: unknown unit %q after %s; want y, m, w, d or h", s, r, digits)
		}
		if u < next {
			return Span{}, fmt.Errorf("span %q: unit %c repeated or out of order; units come in the order y, m, w, d, h, each at most once", s, spanUnits[u])
		}
		n, err := strconv.Atoi(digits)
		if err != nil || n > maxSpanField {
			return Span{}, fmt.Errorf("span %q: %s%c is too long (at most %d of a unit)", s, digits, spanUnits[u], maxSpanField)
		}
		if n == 0 {
			return Span{}, fmt.Errorf("span %q: %s%c is not positive", s, digits, spanUnits[u])
		}
		switch spanUnits[u] {
		case 'y':
			sp.Years = n
		case 'm':
			sp.Months = n
		case 'w':
			if n > maxSpanField/7 {
				return Span{}, fmt.Errorf("span %q: %dw is too long (at most %d days)", s, n, maxSpanField)
			}
			sp.Days = 7 * n
		case 'd':
			if sp.Days+n > maxSpanField {
				return Span{}, fmt.Errorf("span %q: %d days is too long (at most %d)", s, sp.Days+n, maxSpanField)
			}
			sp.Days += n
		case 'h':
			sp.Hours = n
		}
		next = u + 1
		rest = rest[i+1:]
	}
	return sp, nil
}

// String returns the span in ParseSpan's form, without weeks (2w is
// "14d"), so the String of a parsed span parses back to it. The zero Span
// is "0h", which ParseSpan refuses.
func (s Span) String() string {
	var b strings.Builder
	for _, f := range []struct {
		n    int
		unit byte
	}{{s.Years, 'y'}, {s.Months, 'm'}, {s.Days, 'd'}, {s.Hours, 'h'}} {
		if f.n != 0 {
			b.WriteString(strconv.Itoa(f.n))
			b.WriteByte(f.unit)
		}
	}
	if b.Len() == 0 {
		return "0h"
	}
	return b.String()
}

// IsZero reports whether s is the zero Span.
func (s Span) IsZero() bool { return s == Span{} }

// positive reports whether s is a usable rule: no field negative, not zero.
func (s Span) positive() bool {
	return s.Years >= 0 && s.Months >= 0 && s.Days >= 0 && s.Hours >= 0 && !s.IsZero()
}

// Before returns t minus the span, in UTC: t.UTC().AddDate(-Years,
// -Months, -Days), then minus Hours hours. AddDate normalises a day the
// target month does not have by carrying it into the next month, so one
// month before 2024-03-31 is 2024-03-02 (from "2024-02-31"), and one year
// before 2024-02-29 is 2023-03-01. Working in UTC keeps daylight-saving
// changes of t's zone out of the result.
func (s Span) Before(t time.Time) time.Time {
	return t.UTC().AddDate(-s.Years, -s.Months, -s.Days).Add(-time.Duration(s.Hours) * time.Hour)
}

// After returns t plus the span, in UTC, the way Before subtracts it: the
// end of a retention lock given as a length ("--lock-for 30d").
func (s Span) After(t time.Time) time.Time {
	return t.UTC().AddDate(s.Years, s.Months, s.Days).Add(time.Duration(s.Hours) * time.Hour)
}
