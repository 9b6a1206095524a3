package engine

import "testing"

// TestVMGlobsMatchSlashes: VM names are no paths; '*' and '?' match '/'.
func TestVMGlobsMatchSlashes(t *testing.T) {
	for _, c := range []struct {
		glob, name string
		want       bool
	}{
		{"*", "db/prod", true},
		{"db/*", "db/prod/01", true},
		{"db?prod", "db/prod", true},
		{"web*", "db/prod", false},
		{"db/prod", "db/prod", true},
		{"db/prod", "db-prod", false},
		{"[a-c]*", "b/x", true},
	} {
		if got := matchesAny([]string{c.glob}, c.name); got != c.want {
			t.Errorf("glob %q on %q: %v, want %v", c.glob, c.name, got, c.want)
		}
	}
	if !matchesAny(nil, "any/thing") {
		t.Error("no globs must match every VM")
	}
}

// TestExactVMs: a name full of glob characters matches itself only.
func TestExactVMs(t *testing.T) {
	names := []string{"a*b", "x[1]", `c\d`, "q?", "db/prod"}
	globs := ExactVMs(names)
	for i, n := range names {
		if !matchesAny(globs[i:i+1], n) {
			t.Errorf("%q (from %q) does not match its name", globs[i], n)
		}
	}
	for _, other := range []string{"aXb", "x1", "cd", "qz", "db-prod"} {
		if matchesAny(globs, other) {
			t.Errorf("%q matches %v", other, globs)
		}
	}
}
