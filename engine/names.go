package engine

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxVMNameChars is the longest VM name, in characters (Unicode code
// points): Prism's own limit for a VM name, so every AHV VM can be backed up
// under its name.
const MaxVMNameChars = 256

// The range of restore-point times. The catalog keys a restore point by its
// time as unsigned Unix nanoseconds (docs/FORMAT.md), which hold
// 1970-01-01 to 2262-04-11; the range stops at the end of the last whole
// year so that it is easy to state.
var (
	MinTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2261, 12, 31, 23, 59, 59, 0, time.UTC)
)

// ValidateVMName checks a VM name against the rules of docs/FORMAT.md
// ("Names"): valid UTF-8, 1 to MaxVMNameChars characters, no control
// characters, not "." or "..". Every other character is allowed, '/' and
// '@' included: a restore point's name VM@TIME is split at its last '@',
// and the mount escapes '/'. The error wraps ErrInvalid.
func ValidateVMName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("VM name %s: %w: %s", quoteShort(name), ErrInvalid, why)
	}
	switch {
	case name == "":
		return fmt.Errorf("VM name: %w: it is empty", ErrInvalid)
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case name == "." || name == "..":
		return bad(`"." and ".." are not VM names`)
	}
	n := 0
	for _, r := range name {
		if unicode.IsControl(r) {
			return bad(fmt.Sprintf("control character %U at character %d", r, n+1))
		}
		n++
	}
	if n > MaxVMNameChars {
		return bad(fmt.Sprintf("%d characters, at most %d", n, MaxVMNameChars))
	}
	return nil
}

// CheckTime checks that t lies in [MinTime, MaxTime] (after truncation to
// whole seconds, as restore points store it). The error wraps ErrInvalid.
func CheckTime(t time.Time) error {
	t = t.UTC().Truncate(time.Second)
	if t.Before(MinTime) || t.After(MaxTime) {
		return fmt.Errorf("time %s: %w: restore point times lie between %s and %s",
			t.Format(time.RFC3339), ErrInvalid, FormatTime(MinTime), FormatTime(MaxTime))
	}
	return nil
}

// ParseTime parses the TIME of a restore point name or a time flag:
// RFC 3339, in [MinTime, MaxTime]. The error wraps ErrInvalid.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %s: %w: want RFC 3339, like 2026-11-22T01:30:00Z", quoteShort(s), ErrInvalid)
	}
	if err := CheckTime(t); err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// ValidateName checks a restore point name, VM@TIME, VM@latest or VM, as
// Resolve reads it: the VM part is a valid VM name and TIME a valid time.
func ValidateName(name string) error {
	vm, when, err := ParseName(name)
	if err != nil {
		return fmt.Errorf("%w: want VM@TIME or VM@latest", ErrInvalid)
	}
	if err := ValidateVMName(vm); err != nil {
		return err
	}
	if when == "latest" {
		return nil
	}
	if _, err := ParseTime(when); err != nil {
		return fmt.Errorf("%w (or latest)", err)
	}
	return nil
}

// quoteShort quotes s for an error message, shortened to keep the message
// on one readable line.
func quoteShort(s string) string {
	const max = 60
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
