package auth_test

import (
	"testing"

	"github.com/ahvfs/ahvfs/console/auth"
)

// TestRoleTable: what each role may do, action by action.
func TestRoleTable(t *testing.T) {
	want := map[auth.Role]string{
		// view browse download backup restore lock forget admin
		auth.RoleAdmin:        "YYYYYYYY",
		auth.RoleOperator:     "YYYYY---",
		auth.RoleRestoreFiles: "YYY-----",
		auth.Role("root"):     "--------",
		auth.Role(""):         "--------",
	}
	acts := auth.Actions()
	if len(acts) != 8 {
		t.Fatalf("%d actions, want 8: %v", len(acts), acts)
	}
	for role, row := range want {
		for i, act := range acts {
			if got := auth.Allowed(role, act); got != (row[i] == 'Y') {
				t.Errorf("Allowed(%q, %s) = %v", role, act, got)
			}
		}
		if auth.Allowed(role, auth.Action("fly")) {
			t.Errorf("%q may do an unknown action", role)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range auth.Roles() {
		if got, err := auth.ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, bad := range []string{"", "Admin", "root", "restore_files", "operator "} {
		if _, err := auth.ParseRole(bad); err == nil {
			t.Errorf("ParseRole(%q) accepted", bad)
		}
	}
}
