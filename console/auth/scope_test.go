package auth_test

import (
	"testing"

	"github.com/ahvfs/ahvfs/console/auth"
)

var (
	web01 = auth.VMRef{Name: "web01", UUID: "0a1b2c3d-0000-4000-8000-000000000001", Categories: map[string][]string{"Env": {"prod"}, "App": {"shop", "web"}}}
	db01  = auth.VMRef{Name: "db01", UUID: "0a1b2c3d-0000-4000-8000-000000000002", Categories: map[string][]string{"Env": {"test"}}}
	bare  = auth.VMRef{Name: "tmp:web"}
)

// TestScopes: each kind of selector, what it matches, and how it is
// written back.
func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		in, canon string
		matches   []auth.VMRef
	}{
		{"web*", "name:web*", []auth.VMRef{web01}},
		{"name:web*", "name:web*", []auth.VMRef{web01}},
		{"name:*", "name:*", []auth.VMRef{web01, db01, bare}},
		{"name:db0?", "name:db0?", []auth.VMRef{db01}},
		{"WEB*", "name:WEB*", nil}, // names are case-sensitive
		{"name:tmp:*", "name:tmp:*", []auth.VMRef{bare}},
		{"Tmp:*", "name:Tmp:*", nil}, // not a kind: a bare glob
		{"uuid:0A1B2C3D-0000-4000-8000-000000000002", "uuid:0a1b2c3d-0000-4000-8000-000000000002", []auth.VMRef{db01}},
		{"category:Env:prod", "category:Env:prod", []auth.VMRef{web01}},
		{"category: App : web ", "category:App:web", []auth.VMRef{web01}},
		{"category:Env:Prod", "category:Env:Prod", nil},
		{"category:App:a:b", "category:App:a:b", nil},
	} {
		s, err := auth.ParseScope(tc.in)
		if err != nil {
			t.Errorf("ParseScope(%q): %v", tc.in, err)
			continue
		}
		if s.String() != tc.canon {
			t.Errorf("ParseScope(%q).String() = %q, want %q", tc.in, s.String(), tc.canon)
		}
		if again, err := auth.ParseScope(s.String()); err != nil || again != s {
			t.Errorf("%q does not read back: %v %v", s.String(), again, err)
		}
		for _, vm := range []auth.VMRef{web01, db01, bare} {
			want := false
			for _, m := range tc.matches {
				want = want || m.Name == vm.Name
			}
			if got := s.Matches(vm); got != want {
				t.Errorf("%s matches %s: %v, want %v", tc.in, vm.Name, got, want)
			}
		}
	}
	for _, bad := range []string{"", "name:", "name:[", "[", "uuid:", "uuid:123", "uuid:0a1b2c3d00004000800000000000000001xx",
		"category:", "category:Env", "category::prod", "category:Env:", "vm:web01", "tag:x", "web\x00"} {
		if s, err := auth.ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) = %v, want an error", bad, s)
		}
	}
	var zero auth.Selector
	if zero.Matches(web01) {
		t.Error("the zero Selector matches")
	}
}

// TestUserSees: no scope sees everything; with scopes, a VM any selector
// matches.
func TestUserSees(t *testing.T) {
	all := testUser(t, "a", auth.RoleAdmin)
	some := testUser(t, "b", auth.RoleRestoreFiles, "db*", "category:App:web")
	byUUID := testUser(t, "c", auth.RoleOperator, "uuid:0a1b2c3d-0000-4000-8000-000000000002")
	for _, tc := range []struct {
		u    auth.User
		vm   auth.VMRef
		want bool
	}{
		{all, web01, true}, {all, db01, true}, {all, bare, true}, {all, auth.VMRef{}, true},
		{some, web01, true}, {some, db01, true}, {some, bare, false},
		{byUUID, db01, true}, {byUUID, web01, false}, {byUUID, auth.VMRef{Name: "db01"}, false},
	} {
		if got := tc.u.Sees(tc.vm); got != tc.want {
			t.Errorf("%s sees %s: %v, want %v", tc.u.Name, tc.vm.Name, got, tc.want)
		}
	}
}

// FuzzParseScope: the selector parser never panics and what it accepts
// reads back as itself.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"web*", "name:db0?", "uuid:0A1B2C3D-0000-4000-8000-000000000002", "category:Env:prod", "category: a : b:c", "name:[", "x:y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := auth.ParseScope(in)
		if err != nil {
			return
		}
		again, err := auth.ParseScope(s.String())
		if err != nil || again != s || again.String() != s.String() {
			t.Fatalf("%q → %q → %v, %v", in, s.String(), again, err)
		}
	})
}
