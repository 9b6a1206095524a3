package retention

import (
	"errors"
	"fmt"
	"strings"
)

// Policy says which restore points of a VM a prune keeps: the union of
// its rules (see the package documentation). A count of zero is no rule,
// as is a zero Within.
type Policy struct {
	Last    int  // the Last newest points
	Hourly  int  // the newest point of each of the Hourly most recent hours that have one
	Daily   int  // … days
	Weekly  int  // … ISO weeks
	Monthly int  // … months
	Yearly  int  // … years
	Within  Span // every point within Within of the newest
}

// counts returns the policy's counted rules by name, in the order of the
// reasons: last first, then the buckets from the smallest.
func (p Policy) counts() []struct {
	name string
	n    int
} {
	return []struct {
		name string
		n    int
	}{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly}}
}

// Empty reports whether p has no rule that keeps anything: every count is
// zero (or negative) and Within is zero (or has a negative field). Apply
// with an empty policy keeps only the locked points, so a caller should
// refuse to prune with one.
func (p Policy) Empty() bool {
	for _, c := range p.counts() {
		if c.n > 0 {
			return false
		}
	}
	return !p.Within.positive()
}

// Validate reports every negative count and a Within with a negative
// field, all at once. Apply treats them as no rule.
func (p Policy) Validate() error {
	var errs []error
	for _, c := range p.counts() {
		if c.n < 0 {
			errs = append(errs, fmt.Errorf("keep %s %d: a count must not be negative", c.name, c.n))
		}
	}
	w := p.Within
	if w.Years < 0 || w.Months < 0 || w.Days < 0 || w.Hours < 0 {
		errs = append(errs, fmt.Errorf("keep within %s: a span must not be negative", w))
	}
	return errors.Join(errs...)
}

// String lists the rules for a report, as "last 3, daily 7, within 1y6m",
// leaving out the rules that are not set; an empty policy is "no rule".
func (p Policy) String() string {
	var parts []string
	for _, c := range p.counts() {
		if c.n != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c.name, c.n))
		}
	}
	if !p.Within.IsZero() {
		parts = append(parts, "within "+p.Within.String())
	}
	if len(parts) == 0 {
		return "no rule"
	}
	return strings.Join(parts, ", ")
}
