package auth

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// VMRef is what a scope is matched against: a VM as the caller knows it.
type VMRef struct {
	Name string
	UUID string
	// Categories maps a category key to the values the VM carries
	// (Prism categories: Env → [prod]).
	Categories map[string][]string
}

// selectorKind says what a Selector compares.
type selectorKind uint8

const (
	selectName     selectorKind = iota + 1 // a glob on the VM's name
	selectUUID                             // the VM's UUID
	selectCategory                         // a category KEY:VALUE the VM carries
)

// Selector is one scope entry: which VMs a user may see. The zero value
// matches nothing. It is written in the users file as its String.
type Selector struct {
	kind  selectorKind
	glob  string // selectName
	uuid  string // selectUUID, lower case
	key   string // selectCategory
	value string // selectCategory
}

// ParseScope reads a selector:
//
//   - name:GLOB, or a bare GLOB: VMs whose name matches the glob (path.Match
//     syntax, case-sensitive, as `ahvfs backup --vm`);
//   - uuid:UUID: the VM with that UUID (any case);
//   - category:KEY:VALUE: VMs that carry the Prism category KEY:VALUE (the
//     key ends at the first colon after "category:"; the value may hold
//     more).
//
// Any other "word:" prefix is an error, so that a mistyped kind is not
// taken for a name; a VM name with a colon is written name:GLOB.
func ParseScope(s string) (Selector, error) {
	bad := func(format string, args ...any) (Selector, error) {
		return Selector{}, fmt.Errorf("scope %q: %s", s, fmt.Sprintf(format, args...))
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return bad("holds control characters or invalid UTF-8")
	}
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || !isWord(kind) {
		kind, rest = "name", s
	}
	switch kind {
	case "name":
		if rest == "" {
			return bad("the name glob is empty")
		}
		if _, err := path.Match(rest, ""); err != nil {
			return bad("bad glob: %v", err)
		}
		return Selector{kind: selectName, glob: rest}, nil
	case "uuid":
		if !isUUID(rest) {
			return bad("want uuid:UUID (8-4-4-4-12 hexadecimal digits)")
		}
		return Selector{kind: selectUUID, uuid: strings.ToLower(rest)}, nil
	case "category":
		k, v, ok := strings.Cut(rest, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return bad("want category:KEY:VALUE, e.g. category:Env:prod")
		}
		return Selector{kind: selectCategory, key: k, value: v}, nil
	}
	return bad("unknown kind %q: want name:GLOB, uuid:UUID or category:KEY:VALUE", kind)
}

// isWord reports whether s is a run of lower-case ASCII letters (a
// selector kind, known or not).
func isWord(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 'a' || r > 'z' })
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// String is the selector as ParseScope reads it back: name:GLOB,
// uuid:UUID or category:KEY:VALUE.
func (s Selector) String() string {
	switch s.kind {
	case selectName:
		return "name:" + s.glob
	case selectUUID:
		return "uuid:" + s.uuid
	case selectCategory:
		return "category:" + s.key + ":" + s.value
	}
	return ""
}

// MarshalText writes the selector as its String.
func (s Selector) MarshalText() ([]byte, error) {
	if s.kind == 0 {
		return nil, fmt.Errorf("empty scope selector")
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a selector with ParseScope.
func (s *Selector) UnmarshalText(b []byte) error {
	v, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Matches reports whether the selector selects vm.
func (s Selector) Matches(vm VMRef) bool {
	switch s.kind {
	case selectName:
		ok, _ := path.Match(s.glob, vm.Name)
		return ok
	case selectUUID:
		return vm.UUID != "" && strings.EqualFold(s.uuid, vm.UUID)
	case selectCategory:
		return slices.Contains(vm.Categories[s.key], s.value)
	}
	return false
}

// Sees reports whether u may see vm: always without scopes, else when any
// of u's selectors matches it.
func (u *User) Sees(vm VMRef) bool {
	if len(u.Scopes) == 0 {
		return true
	}
	for _, s := range u.Scopes {
		if s.Matches(vm) {
			return true
		}
	}
	return false
}
