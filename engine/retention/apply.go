package retention

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Point is one restore point of a VM, as far as retention cares.
type Point struct {
	ID     string    // unique among the VM's points; orders points of equal Time
	Time   time.Time // when the restore point was taken; any zone
	Locked bool      // a locked point is always kept
	Held   bool      // so is a held one (something reads from it now)
}

// Decision is what Apply decided for one point.
type Decision struct {
	Point
	Keep    bool
	Reasons []string // why it is kept, such as "last 1", "daily 3", "within 7d", "locked", "held"; nil when not kept
}

// bucket is a bucket rule: its name and the key of a UTC time's bucket.
type bucket struct {
	name string
	n    int
	key  func(t time.Time) string
}

func (p Policy) buckets() []bucket {
	return []bucket{
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02T15") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// Apply decides, for the restore points of ONE VM, which ones policy p
// keeps, and returns a Decision for every point, newest first (equal
// times by ID, ascending). The order of points does not matter; points is
// not modified. The rules are in the package documentation.
func Apply(points []Point, p Policy) []Decision {
	ds := make([]Decision, len(points))
	for i, pt := range points {
		ds[i].Point = pt
	}
	slices.SortFunc(ds, func(a, b Decision) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	keep := func(d *Decision, reason string) {
		d.Keep = true
		d.Reasons = append(d.Reasons, reason)
	}

	for i := 0; i < p.Last && i < len(ds); i++ {
		keep(&ds[i], fmt.Sprintf("last %d", i+1))
	}
	for _, b := range p.buckets() {
		used, prev := 0, "" // no key is empty
		for i := 0; i < len(ds) && used < b.n; i++ {
			// Newest first, so the keys only ever go back in time: a key
			// unlike the previous one is a bucket not seen yet.
			if k := b.key(ds[i].Time.UTC()); k != prev {
				used, prev = used+1, k
				keep(&ds[i], fmt.Sprintf("%s %d", b.name, used))
			}
		}
	}
	if p.Within.positive() && len(ds) > 0 {
		since := p.Within.Before(ds[0].Time)
		reason := "within " + p.Within.String()
		for i := 0; i < len(ds) && !ds[i].Time.Before(since); i++ {
			keep(&ds[i], reason)
		}
	}
	for i := range ds {
		if ds[i].Locked {
			keep(&ds[i], "locked")
		}
		if ds[i].Held {
			keep(&ds[i], "held")
		}
	}
	return ds
}
