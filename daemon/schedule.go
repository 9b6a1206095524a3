package daemon

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule says when a policy's job runs next.
type Schedule interface {
	// Next is the first run time strictly after t.
	Next(t time.Time) time.Time
	// Interval is the longest gap between two runs: the default RPO.
	Interval() time.Duration
	String() string
}

// parseSchedule reads an RPO ("4h", "every 30m", "1d") or a cron line
// (five fields, UTC unless it starts with CRON_TZ=Zone).
func parseSchedule(every, spec string) (Schedule, error) {
	if every != "" {
		d, err := parseDuration(every)
		if err != nil {
			return nil, fmt.Errorf("every: %w", err)
		}
		if d < time.Second {
			return nil, fmt.Errorf("every %q: want at least 1s", every)
		}
		return interval(d), nil
	}
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
		spec = "CRON_TZ=UTC " + spec
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w (want five fields: minute hour day-of-month month day-of-week)", spec, err)
	}
	return cronSchedule{s, spec}, nil
}

// interval runs every d after the previous run's start.
type interval time.Duration

func (d interval) Next(t time.Time) time.Time { return t.Add(time.Duration(d)) }
func (d interval) Interval() time.Duration    { return time.Duration(d) }
func (d interval) String() string             { return "every " + time.Duration(d).String() }

type cronSchedule struct {
	s    cron.Schedule
	spec string
}

func (c cronSchedule) Next(t time.Time) time.Time { return c.s.Next(t) }
func (c cronSchedule) String() string             { return "cron " + strings.TrimPrefix(c.spec, "CRON_TZ=UTC ") }

// Interval is the longest gap between runs: measured run by run over 35
// days (weekly patterns), and across a year between days with runs that
// have days without any between them (monthly and yearly patterns; the
// gap is then taken from first run to first run, a little long).
func (c cronSchedule) Interval() time.Duration {
	var longest time.Duration
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for t := c.s.Next(from); !t.IsZero() && t.Before(from.AddDate(0, 0, 35)); {
		n := c.s.Next(t)
		if n.IsZero() {
			break
		}
		longest = max(longest, n.Sub(t))
		t = n
	}
	var prev time.Time
	for day := from; day.Before(from.AddDate(1, 0, 35)); day = day.AddDate(0, 0, 1) {
		first := c.s.Next(day.Add(-time.Nanosecond))
		if first.IsZero() || !first.Before(day.AddDate(0, 0, 1)) {
			continue
		}
		if !prev.IsZero() && first.Sub(prev) > 36*time.Hour {
			longest = max(longest, first.Sub(prev))
		}
		prev = first
	}
	return longest
}

// window is a daily span of UTC clock time, [start, end) in minutes after
// midnight; end < start spans midnight.
type window struct{ start, end int }

func parseClock(s string) (int, error) {
	var h, m int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || h < 0 || h > 23 || m < 0 || m > 59 || len(s) != 5 {
		return 0, fmt.Errorf("%q: want HH:MM (UTC)", s)
	}
	return h*60 + m, nil
}

func parseWindow(s string) (window, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return window{}, fmt.Errorf("%q: want HH:MM-HH:MM (UTC)", s)
	}
	start, err := parseClock(strings.TrimSpace(a))
	if err != nil {
		return window{}, err
	}
	end, err := parseClock(strings.TrimSpace(b))
	if err != nil {
		return window{}, err
	}
	if start == end {
		return window{}, fmt.Errorf("%q: an empty window", s)
	}
	return window{start, end}, nil
}

func (w window) contains(t time.Time) bool {
	t = t.UTC()
	m := t.Hour()*60 + t.Minute()
	if w.start < w.end {
		return m >= w.start && m < w.end
	}
	return m >= w.start || m < w.end
}

// opens is the next start of the window at or after t.
func (w window) opens(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	s := day.Add(time.Duration(w.start) * time.Minute)
	if s.Before(t) {
		s = s.Add(24 * time.Hour)
	}
	return s
}

func (w window) length() time.Duration {
	n := w.end - w.start
	if n < 0 {
		n += 24 * 60
	}
	return time.Duration(n) * time.Minute
}

// windowed moves runs that fall outside the window to its next opening.
type windowed struct {
	Schedule
	w window
}

func (s windowed) Next(t time.Time) time.Time { return s.fit(s.Schedule.Next(t)) }

// fit moves t into the window.
func (s windowed) fit(t time.Time) time.Time {
	if s.w.contains(t) {
		return t
	}
	return s.w.opens(t)
}

func (s windowed) Interval() time.Duration {
	return s.Schedule.Interval() + 24*time.Hour - s.w.length()
}

func (s windowed) String() string {
	return fmt.Sprintf("%s within %02d:%02d-%02d:%02d UTC", s.Schedule, s.w.start/60, s.w.start%60, s.w.end/60, s.w.end%60)
}

// fitter is a schedule that confines run times (windowed).
type fitter interface{ fit(time.Time) time.Time }

// dueAt is when a job should run given its last run (zero: never):
// catchUp says whether a never-run job runs at once (interval schedules)
// rather than at its schedule's next time. A time already past means
// "now" (a missed run, run once).
func dueAt(s Schedule, last, now time.Time) time.Time {
	if last.IsZero() {
		if _, ok := base(s).(interval); ok {
			return fitNow(s, now)
		}
		return s.Next(now)
	}
	n := s.Next(last)
	if n.Before(now) {
		return fitNow(s, now)
	}
	return n
}

func base(s Schedule) Schedule {
	if w, ok := s.(windowed); ok {
		return w.Schedule
	}
	return s
}

func fitNow(s Schedule, now time.Time) time.Time {
	if f, ok := s.(fitter); ok {
		return f.fit(now)
	}
	return now
}
