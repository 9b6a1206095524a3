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
