package backend

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest name in bytes (S3's limit for a key).
const MaxNameLen = 1024

// CheckName reports whether name is a valid object name, and why not:
//   - 1 to MaxNameLen bytes of valid UTF-8, without control characters
//     (U+0000–U+001F, U+007F);
//   - elements separated by single slashes: no leading or trailing slash,
//     no empty element;
//   - no element starting with a dot, so no "." or ".." and no hidden
//     names (Local keeps its temporary files under hidden names).
//
// The error satisfies errors.Is(err, ErrInvalidName).
func CheckName(name string) error {
	if why := nameProblem(name); why != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, why)
	}
	return nil
}

func nameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > MaxNameLen:
		return fmt.Sprintf("%d bytes, more than %d", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return "not valid UTF-8"
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f {
			return fmt.Sprintf("control character %#02x", c)
		}
	}
	for el := range strings.SplitSeq(name, "/") {
		switch {
		case el == "":
			return "empty path element (leading, trailing or double slash)"
		case el[0] == '.':
			return fmt.Sprintf("element %q starts with a dot", el)
		}
	}
	return ""
}

// checkPrefix reports whether prefix can start a valid name (the empty
// prefix can).
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if why := nameProblem(prefix + "x"); why != "" {
		return fmt.Errorf("%w: prefix %q: %s", ErrInvalidName, prefix, why)
	}
	return nil
}

// checkCall is the common start of a call on name: a valid name and a live
// context. It returns the error to report, already naming op and name.
func checkCall(ctxErr error, op, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if ctxErr != nil {
		return fmt.Errorf("%s %s: %w", op, name, ctxErr)
	}
	return nil
}
