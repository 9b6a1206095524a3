// Package retention is the arithmetic of retention policies: given one VM's
// restore points and a Policy, it decides which points a prune keeps and
// why. It does no I/O and knows nothing of the repository; the caller
// groups points by VM, calls Apply once per VM and removes what is not
// kept. Any restore point may be removed: every restore point in ahvfs is
// self-contained (its manifests name every page it needs, the pages it
// shares with its parent included), so removing a parent never breaks a
// child.
//
// # Rules
//
// Apply orders the points newest first. Points with the same instant (in
// whatever zones they are written) are ordered by ID, ascending: among
// them, the smallest ID counts as the newest. IDs are expected to be
// unique. The order of the input does not matter.
//
// Each rule of a Policy keeps some points; the union is kept:
//   - Last N: the N newest points.
//   - Hourly, Daily, Weekly, Monthly, Yearly N: walking the points newest
//     first, a point whose bucket differs from the last bucket the rule
//     used starts a new bucket and is kept, until N buckets are used. So
//     the rule keeps the newest point of each of the N most recent buckets
//     that hold a point; buckets without points are skipped, not counted.
//     The buckets are the hour, the day, the ISO 8601 week (Monday to
//     Sunday, numbered as time.ISOWeek numbers them: a week that spans a
//     new year is one bucket, and 2020-W53 runs from 2020-12-28 to
//     2021-01-03), the calendar month and the calendar year of the point's
//     time in UTC. Yearly counts calendar years, not ISO week years.
//   - Within S: every point whose time is not before S.Before(newest),
//     the newest point's time minus the span S in calendar terms (see
//     Span.Before: AddDate normalisation applies, so one month before
//     2024-03-31 is 2024-03-02, not 2024-02-29).
//   - Locked points are always kept, and so are held ones (a hold keeps a
//     point while something reads from it). They take part in the bucket
//     rules like any other point: a locked point can be the newest point
//     of a bucket and so use it.
//
// A count of zero (or less) and a zero Span (or one with a negative
// field; Policy.Validate reports those) are no rule. A Policy with no rule
// at all is Empty, and Apply with it keeps only the locked points: callers
// should refuse to prune with an empty policy.
//
// Every kept point carries its reasons, in the order last, hourly, daily,
// weekly, monthly, yearly, within, locked, held: "last 2" (the second newest),
// "daily 3" (the newest point of the third most recent day that has one),
// "within 7d", "locked", "held".
package retention
