package retention_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/retention"
)

// newer reports whether a counts as newer than b: the later instant, or
// at the same instant the smaller ID.
func newer(a, b retention.Point) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID < b.ID
}

// oracle is a second implementation of the rules, written differently
// from Apply: for each bucket rule it maps every point to its bucket's
// key, sorts the distinct keys newest first, takes the first n and keeps
// the newest point of each chosen bucket. Weeks are keyed by the date of
// their Monday rather than by time.ISOWeek, and the within cutoff is built
// with time.Date. It returns the reasons of every kept point by ID.
func oracle(points []retention.Point, p retention.Policy) map[string][]string {
	reasons := map[string][]string{}
	if len(points) == 0 {
		return reasons
	}
	byAge := slices.Clone(points)
	sort.Slice(byAge, func(i, j int) bool { return newer(byAge[i], byAge[j]) })
	for i := 0; i < p.Last && i < len(byAge); i++ {
		reasons[byAge[i].ID] = append(reasons[byAge[i].ID], fmt.Sprintf("last %d", i+1))
	}

	rules := []struct {
		name string
		n    int
		key  func(t time.Time) string // t in UTC; keys sort as their buckets do
	}{
		{"hourly", p.Hourly, func(t time.Time) string {
			return fmt.Sprintf("%04d-%02d-%02d %02d", t.Year(), t.Month(), t.Day(), t.Hour())
		}},
		{"daily", p.Daily, func(t time.Time) string {
			return fmt.Sprintf("%04d-%02d-%02d", t.Year(), t.Month(), t.Day())
		}},
		{"weekly", p.Weekly, func(t time.Time) string {
			back := (int(t.Weekday()) + 6) % 7 // days since Monday
			m := time.Date(t.Year(), t.Month(), t.Day()-back, 0, 0, 0, 0, time.UTC)
			return m.Format("2006-01-02")
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return fmt.Sprintf("%04d-%02d", t.Year(), t.Month()) }},
		{"yearly", p.Yearly, func(t time.Time) string { return fmt.Sprintf("%04d", t.Year()) }},
	}
	for _, r := range rules {
		best := map[string]retention.Point{}
		for _, pt := range points {
			k := r.key(pt.Time.In(time.UTC))
			if cur, ok := best[k]; !ok || newer(pt, cur) {
				best[k] = pt
			}
		}
		keys := slices.Sorted(maps.Keys(best))
		slices.Reverse(keys)
		for i, k := range keys {
			if i >= r.n {
				break
			}
			id := best[k].ID
			reasons[id] = append(reasons[id], fmt.Sprintf("%s %d", r.name, i+1))
		}
	}

	if w := p.Within; !w.IsZero() {
		n := byAge[0].Time.In(time.UTC)
		since := time.Date(n.Year()-w.Years, n.Month()-time.Month(w.Months), n.Day()-w.Days,
			n.Hour()-w.Hours, n.Minute(), n.Second(), n.Nanosecond(), time.UTC)
		for _, pt := range points {
			if !pt.Time.Before(since) {
				reasons[pt.ID] = append(reasons[pt.ID], "within "+w.String())
			}
		}
	}
	for _, pt := range points {
		if pt.Locked {
			reasons[pt.ID] = append(reasons[pt.ID], "locked")
		}
	}
	return reasons
}

// history generates a VM's restore points over three years from start:
// several a day at irregular hours, with gaps of weeks and of months, in
// several zones, some at the same instant as another, some locked; in
// random order.
func history(seed uint64, vm string, start time.Time) []retention.Point {
	r := rand.New(rand.NewPCG(seed, 14))
	zones := []*time.Location{time.UTC, time.FixedZone("+02", 2*3600), time.FixedZone("-05", -5*3600), time.FixedZone("+0530", 5*3600+1800)}
	var pts []retention.Point
	end := start.AddDate(3, 0, 0)
	for t := start; t.Before(end); {
		switch x := r.IntN(100); {
		case x < 3: // a gap of weeks
			t = t.Add(time.Duration(7+r.IntN(21)) * 24 * time.Hour)
		case x < 4: // a gap of months
			t = t.AddDate(0, 1+r.IntN(3), r.IntN(10))
		case x < 40: // another today
			t = t.Add(time.Duration(1+r.IntN(6*3600)) * time.Second)
		default: // irregular hours
			t = t.Add(time.Duration(6*3600+r.IntN(60*3600)) * time.Second)
		}
		n := 1
		if r.IntN(25) == 0 {
			n = 2 + r.IntN(2) // the same instant again
		}
		for range n {
			pts = append(pts, retention.Point{
				ID:     fmt.Sprintf("%s-%08x", vm, r.Uint32()),
				Time:   t.In(zones[r.IntN(len(zones))]),
				Locked: r.IntN(40) == 0,
			})
		}
	}
	r.Shuffle(len(pts), func(i, j int) { pts[i], pts[j] = pts[j], pts[i] })
	return pts
}

func span(t *testing.T, s string) retention.Span {
	t.Helper()
	sp, err := retention.ParseSpan(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// checkDecisions checks that ds decides each of points once, newest first,
// and keeps exactly what want names, with those reasons.
func checkDecisions(t *testing.T, points []retention.Point, ds []retention.Decision, want map[string][]string) {
	t.Helper()
	if len(ds) != len(points) {
		t.Fatalf("%d decisions for %d points", len(ds), len(points))
	}
	in := map[string]retention.Point{}
	for _, pt := range points {
		in[pt.ID] = pt
	}
	for i, d := range ds {
		pt, ok := in[d.ID]
		if !ok {
			t.Fatalf("decision %d: %s is not an input point, or decided twice", i, d.ID)
		}
		delete(in, d.ID)
		if d.Point != pt {
			t.Errorf("decision %d: point %+v, input was %+v", i, d.Point, pt)
		}
		if i > 0 && !newer(ds[i-1].Point, d.Point) {
			t.Errorf("decision %d: %s (%s) comes after %s (%s): not newest first", i, d.ID, d.Time, ds[i-1].ID, ds[i-1].Time)
		}
		if d.Keep != (len(want[d.ID]) > 0) || !slices.Equal(d.Reasons, want[d.ID]) {
			t.Errorf("%s (%s): keep %v %q, want %v %q", d.ID, d.Time.UTC().Format(time.RFC3339), d.Keep, d.Reasons, len(want[d.ID]) > 0, want[d.ID])
		}
	}
}

// TestApplyMatchesOracle: on generated histories of several VMs, Apply
// agrees with the oracle for every rule alone and for combinations, and
// the order of the input does not matter.
func TestApplyMatchesOracle(t *testing.T) {
	vms := map[string][]retention.Point{}
	for i, vm := range []string{"db", "web", "mail"} {
		vms[vm] = history(uint64(i+1), vm, time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 40*i))
	}
	vms["one"] = history(9, "one", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC))[:1]
	vms["none"] = nil
	for vm, pts := range vms {
		if vm == "one" || vm == "none" {
			continue
		}
		first, last := pts[0].Time, pts[0].Time
		for _, pt := range pts {
			if pt.Time.Before(first) {
				first = pt.Time
			}
			if pt.Time.After(last) {
				last = pt.Time
			}
		}
		if len(pts) < 200 || last.Sub(first) < 3*360*24*time.Hour {
			t.Fatalf("history of %s: %d points from %s to %s; want at least 200 over three years", vm, len(pts), first, last)
		}
	}

	policies := []retention.Policy{
		{},
		{Last: 1},
		{Last: 10},
		{Last: 100000},
		{Hourly: 1},
		{Hourly: 24},
		{Hourly: 100000},
		{Daily: 7},
		{Daily: 30},
		{Daily: 100000},
		{Weekly: 4},
		{Weekly: 60},
		{Weekly: 100000},
		{Monthly: 6},
		{Monthly: 12},
		{Monthly: 100000},
		{Yearly: 1},
		{Yearly: 2},
		{Yearly: 100},
		{Within: span(t, "36h")},
		{Within: span(t, "7d")},
		{Within: span(t, "2w")},
		{Within: span(t, "1m")},
		{Within: span(t, "1y6m")},
		{Within: span(t, "1y2m3d4h")},
		{Within: span(t, "100y")},
		{Last: 3, Daily: 7, Weekly: 4, Monthly: 12, Yearly: 3},
		{Hourly: 48, Daily: 30, Within: span(t, "2w")},
		{Last: 2, Hourly: 6, Daily: 14, Weekly: 8, Monthly: 24, Yearly: 10, Within: span(t, "3d")},
		{Last: 1000, Hourly: 1000, Daily: 1000, Weekly: 1000, Monthly: 1000, Yearly: 1000, Within: span(t, "10y")},
	}
	for _, vm := range slices.Sorted(maps.Keys(vms)) {
		pts := vms[vm]
		for _, p := range policies {
			t.Run(vm+"/"+p.String(), func(t *testing.T) {
				ds := retention.Apply(pts, p)
				checkDecisions(t, pts, ds, oracle(pts, p))

				again := slices.Clone(pts)
				slices.Reverse(again)
				if got := retention.Apply(again, p); !reflect.DeepEqual(got, ds) {
					t.Errorf("Apply of the reversed input differs")
				}
			})
		}
	}
}

// at parses an RFC 3339 time, zone and all.
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func pt(id, when string) retention.Point { return retention.Point{ID: id, Time: at(when)} }

func locked(id, when string) retention.Point {
	return retention.Point{ID: id, Time: at(when), Locked: true}
}

// TestISOWeekAssumptions: the dates the cases below rely on.
func TestISOWeekAssumptions(t *testing.T) {
	for _, c := range []struct {
		date       string
		year, week int
	}{
		{"2020-12-27", 2020, 52}, {"2020-12-28", 2020, 53}, {"2021-01-03", 2020, 53}, {"2021-01-04", 2021, 1},
		{"2026-12-27", 2026, 52}, {"2026-12-28", 2026, 53}, {"2027-01-03", 2026, 53}, {"2027-01-04", 2027, 1},
		{"2024-12-29", 2024, 52}, {"2024-12-30", 2025, 1}, {"2025-01-05", 2025, 1},
	} {
		if y, w := at(c.date + "T12:00:00Z").ISOWeek(); y != c.year || w != c.week {
			t.Errorf("%s is %d-W%02d, want %d-W%02d", c.date, y, w, c.year, c.week)
		}
	}
}

// TestApplyCases: hand-checked cases, with what is kept written out.
func TestApplyCases(t *testing.T) {
	w53of2020 := []retention.Point{
		pt("w52-sun", "2020-12-27T12:00:00Z"),
		pt("w53-mon", "2020-12-28T00:00:00Z"),
		pt("w53-thu", "2020-12-31T23:00:00Z"),
		pt("w53-fri", "2021-01-01T08:00:00Z"),
		pt("w53-sun", "2021-01-03T23:59:59Z"),
		pt("w01-mon", "2021-01-04T00:00:00Z"),
	}
	w53of2026 := []retention.Point{
		pt("2026-12-27", "2026-12-27T18:00:00Z"),
		pt("2026-12-28", "2026-12-28T06:00:00Z"),
		pt("2027-01-01", "2027-01-01T12:00:00Z"),
		pt("2027-01-03", "2027-01-03T22:00:00Z"),
		pt("2027-01-04", "2027-01-04T01:00:00Z"),
	}
	newYearWeek := []retention.Point{
		pt("2024-12-29", "2024-12-29T10:00:00Z"),
		pt("2024-12-30", "2024-12-30T10:00:00Z"),
		pt("2024-12-31", "2024-12-31T23:30:00Z"),
		pt("2025-01-02", "2025-01-02T09:00:00Z"),
	}
	monthEnds := []retention.Point{
		pt("dec-31", "2023-12-31T00:00:00Z"),
		pt("jan-15", "2024-01-15T12:00:00Z"),
		pt("jan-31", "2024-01-31T23:59:59Z"),
		pt("feb-01", "2024-02-01T00:00:00Z"),
	}
	leap := []retention.Point{
		pt("feb-28", "2024-02-28T12:00:00Z"),
		pt("feb-29-early", "2024-02-29T01:00:00Z"),
		pt("feb-29-late", "2024-02-29T20:00:00Z"),
		pt("mar-01", "2024-03-01T00:30:00Z"),
	}
	// In UTC: d 06-01 01:00, c 06-01 00:30, a 05-31 23:00, b 05-31 10:00.
	zones := []retention.Point{
		pt("a", "2024-06-01T01:00:00+02:00"),
		pt("b", "2024-05-31T10:00:00Z"),
		pt("c", "2024-06-01T00:30:00Z"),
		pt("d", "2024-05-31T20:00:00-05:00"),
	}
	same := []retention.Point{
		pt("b", "2024-05-05T05:05:05Z"),
		pt("old", "2024-05-04T00:00:00Z"),
		pt("c", "2024-05-05T07:05:05+02:00"),
		pt("a", "2024-05-05T05:05:05Z"),
	}
	withinMonth := []retention.Point{
		pt("feb-29", "2024-02-29T12:00:00Z"),
		pt("mar-01", "2024-03-01T12:00:00Z"),
		pt("mar-02-before", "2024-03-02T11:59:59Z"),
		pt("mar-02-noon", "2024-03-02T12:00:00Z"),
		pt("mar-31", "2024-03-31T12:00:00Z"),
	}
	locks := []retention.Point{
		pt("today-late", "2024-06-10T20:00:00Z"),
		locked("today-early-locked", "2024-06-10T08:00:00Z"),
		locked("yesterday-locked", "2024-06-09T20:00:00Z"),
		pt("yesterday-early", "2024-06-09T10:00:00Z"),
		locked("last-year-locked", "2023-01-01T00:00:00Z"),
		pt("last-year", "2023-01-02T00:00:00Z"),
	}

	for _, c := range []struct {
		name   string
		points []retention.Point
		policy retention.Policy
		want   map[string][]string
	}{
		{"2020-W53 runs from 2020-12-28 to 2021-01-03", w53of2020, retention.Policy{Weekly: 3},
			map[string][]string{"w01-mon": {"weekly 1"}, "w53-sun": {"weekly 2"}, "w52-sun": {"weekly 3"}}},
		{"yearly counts calendar years, weekly ISO weeks", w53of2020, retention.Policy{Weekly: 2, Yearly: 2},
			map[string][]string{"w01-mon": {"weekly 1", "yearly 1"}, "w53-sun": {"weekly 2"}, "w53-thu": {"yearly 2"}}},
		{"2020-W53 across months", w53of2020, retention.Policy{Monthly: 2},
			map[string][]string{"w01-mon": {"monthly 1"}, "w53-thu": {"monthly 2"}}},
		{"2026-W53 runs from 2026-12-28 to 2027-01-03", w53of2026, retention.Policy{Weekly: 2},
			map[string][]string{"2027-01-04": {"weekly 1"}, "2027-01-03": {"weekly 2"}}},
		{"2026-W52 before it", w53of2026, retention.Policy{Weekly: 3},
			map[string][]string{"2027-01-04": {"weekly 1"}, "2027-01-03": {"weekly 2"}, "2026-12-27": {"weekly 3"}}},
		{"2025-W01 spans the new year and is one week", newYearWeek, retention.Policy{Weekly: 2, Yearly: 2},
			map[string][]string{"2025-01-02": {"weekly 1", "yearly 1"}, "2024-12-29": {"weekly 2"}, "2024-12-31": {"yearly 2"}}},
		{"month ends", monthEnds, retention.Policy{Daily: 1, Monthly: 3},
			map[string][]string{"feb-01": {"daily 1", "monthly 1"}, "jan-31": {"monthly 2"}, "dec-31": {"monthly 3"}}},
		{"month ends by the hour", monthEnds, retention.Policy{Hourly: 2, Yearly: 2},
			map[string][]string{"feb-01": {"hourly 1", "yearly 1"}, "jan-31": {"hourly 2"}, "dec-31": {"yearly 2"}}},
		{"leap day", leap, retention.Policy{Daily: 3, Monthly: 2},
			map[string][]string{"mar-01": {"daily 1", "monthly 1"}, "feb-29-late": {"daily 2", "monthly 2"}, "feb-28": {"daily 3"}}},
		{"the UTC day decides, not the zone's", zones, retention.Policy{Daily: 2, Monthly: 2},
			map[string][]string{"d": {"daily 1", "monthly 1"}, "a": {"daily 2", "monthly 2"}}},
		{"the UTC hour decides", zones, retention.Policy{Hourly: 3},
			map[string][]string{"d": {"hourly 1"}, "c": {"hourly 2"}, "a": {"hourly 3"}}},
		{"the UTC year decides", []retention.Point{
			pt("nye-new-york", "2023-12-31T20:00:00-05:00"),
			pt("dec-31", "2023-12-31T12:00:00Z"),
			pt("dec-30", "2023-12-30T12:00:00Z"),
		}, retention.Policy{Yearly: 2},
			map[string][]string{"nye-new-york": {"yearly 1"}, "dec-31": {"yearly 2"}}},
		{"a half-hour zone in the same UTC hour", []retention.Point{
			pt("w", "2024-01-01T03:59:59Z"),
			pt("x", "2024-01-01T10:15:00+05:30"),
			pt("y", "2024-01-01T04:59:00Z"),
			pt("z", "2024-01-01T04:10:00Z"),
		}, retention.Policy{Hourly: 2},
			map[string][]string{"y": {"hourly 1"}, "w": {"hourly 2"}}},
		{"identical instants: the smallest ID counts as newest", same, retention.Policy{Last: 2, Daily: 2},
			map[string][]string{"a": {"last 1", "daily 1"}, "b": {"last 2"}, "old": {"daily 2"}}},
		{"within 1m of 2024-03-31 is since 2024-03-02 (AddDate carries 2024-02-31)", withinMonth, retention.Policy{Within: span(t, "1m")},
			map[string][]string{"mar-31": {"within 1m"}, "mar-02-noon": {"within 1m"}}},
		{"within 1y of 2024-02-29 is since 2023-03-01", []retention.Point{
			pt("leap", "2024-02-29T00:00:00Z"),
			pt("mar-01", "2023-03-01T00:00:00Z"),
			pt("feb-28", "2023-02-28T23:59:59Z"),
		}, retention.Policy{Within: span(t, "1y")},
			map[string][]string{"leap": {"within 1y"}, "mar-01": {"within 1y"}}},
		{"within 36h across zones", []retention.Point{
			pt("newest", "2024-01-02T12:00:00+02:00"),
			pt("edge", "2024-01-01T00:00:00+02:00"),
			pt("out", "2023-12-31T21:59:59Z"),
		}, retention.Policy{Within: span(t, "36h")},
			map[string][]string{"newest": {"within 36h"}, "edge": {"within 36h"}}},
		{"within 2w is 14 days", []retention.Point{
			pt("newest", "2024-03-15T00:00:00Z"),
			pt("mar-01", "2024-03-01T00:00:00Z"),
			pt("feb-29", "2024-02-29T23:59:59Z"),
		}, retention.Policy{Within: span(t, "2w")},
			map[string][]string{"newest": {"within 14d"}, "mar-01": {"within 14d"}}},
		{"locked points are kept outside every rule and use their buckets", locks, retention.Policy{Last: 1, Daily: 2},
			map[string][]string{
				"today-late":         {"last 1", "daily 1"},
				"today-early-locked": {"locked"},
				"yesterday-locked":   {"daily 2", "locked"},
				"last-year-locked":   {"locked"},
			}},
		{"an empty policy keeps only the locked", locks, retention.Policy{},
			map[string][]string{"today-early-locked": {"locked"}, "yesterday-locked": {"locked"}, "last-year-locked": {"locked"}}},
		{"negative counts and spans are no rule", leap, retention.Policy{Last: -1, Daily: -2, Within: retention.Span{Days: -1}},
			map[string][]string{}},
		{"more buckets than points", leap, retention.Policy{Last: 9, Yearly: 9},
			map[string][]string{"mar-01": {"last 1", "yearly 1"}, "feb-29-late": {"last 2"}, "feb-29-early": {"last 3"}, "feb-28": {"last 4"}}},
		{"no points", nil, retention.Policy{Last: 3, Within: span(t, "7d")}, map[string][]string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := retention.Apply(c.points, c.policy)
			checkDecisions(t, c.points, ds, c.want)
			checkDecisions(t, c.points, ds, oracle(c.points, c.policy)) // the oracle agrees by hand too
		})
	}
}

// TestApplyOrderOfEqualTimes: points at one instant come out by ID.
func TestApplyOrderOfEqualTimes(t *testing.T) {
	in := []retention.Point{
		pt("b", "2024-05-05T05:05:05Z"),
		pt("old", "2024-05-04T00:00:00Z"),
		pt("c", "2024-05-05T07:05:05+02:00"),
		pt("a", "2024-05-05T05:05:05Z"),
	}
	var got []string
	for _, d := range retention.Apply(in, retention.Policy{}) {
		got = append(got, d.ID)
	}
	if want := []string{"a", "b", "c", "old"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if in[0].ID != "b" {
		t.Errorf("Apply reordered its input")
	}
}

func TestPolicyEmpty(t *testing.T) {
	for _, c := range []struct {
		p     retention.Policy
		empty bool
	}{
		{retention.Policy{}, true},
		{retention.Policy{Last: -1, Weekly: -1, Within: retention.Span{Days: -1}}, true},
		{retention.Policy{Within: retention.Span{Days: 7, Hours: -1}}, true},
		{retention.Policy{Last: 1}, false},
		{retention.Policy{Hourly: 1}, false},
		{retention.Policy{Daily: 1}, false},
		{retention.Policy{Weekly: 1}, false},
		{retention.Policy{Monthly: 1}, false},
		{retention.Policy{Yearly: 1}, false},
		{retention.Policy{Within: retention.Span{Hours: 1}}, false},
	} {
		if got := c.p.Empty(); got != c.empty {
			t.Errorf("%+v.Empty() = %v, want %v", c.p, got, c.empty)
		}
	}
}

func TestPolicyString(t *testing.T) {
	for _, c := range []struct {
		p    retention.Policy
		want string
	}{
		{retention.Policy{}, "no rule"},
		{retention.Policy{Last: 3, Daily: 7, Within: retention.Span{Years: 1, Months: 6}}, "last 3, daily 7, within 1y6m"},
		{retention.Policy{Last: 1, Hourly: 2, Daily: 3, Weekly: 4, Monthly: 5, Yearly: 6, Within: retention.Span{Days: 14}},
			"last 1, hourly 2, daily 3, weekly 4, monthly 5, yearly 6, within 14d"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.p, got, c.want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	good := retention.Policy{Last: 1, Within: retention.Span{Days: 1}}
	if err := good.Validate(); err != nil {
		t.Errorf("%v.Validate() = %v", good, err)
	}
	bad := retention.Policy{Last: -1, Monthly: -2, Within: retention.Span{Hours: -3}}
	err := bad.Validate()
	if err == nil {
		t.Fatalf("%v.Validate() = nil", bad)
	}
	for _, want := range []string{"keep last -1", "keep monthly -2", "keep within -3h"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, does not report %q", err, want)
		}
	}
}
