package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Role is what a user is trusted with: a fixed set of actions.
type Role string

// The roles.
const (
	// RoleAdmin may do everything, including managing users and the
	// configuration.
	RoleAdmin Role = "admin"
	// RoleOperator runs the backup service: views, browses and downloads,
	// backs up now and restores; it cannot lock or forget restore points
	// or change the configuration.
	RoleOperator Role = "operator"
	// RoleRestoreFiles is for help desks and application owners: views,
	// browses guest files and downloads them; nothing else.
	RoleRestoreFiles Role = "restore-files"
)

// Action is what a console request does. Each handler is guarded by one.
type Action string

// The actions.
const (
	// ActionView: the dashboard, VMs, restore points, jobs, repository
	// health.
	ActionView Action = "view"
	// ActionBrowse: list the files of a guest filesystem.
	ActionBrowse Action = "browse"
	// ActionDownload: download guest files or disks.
	ActionDownload Action = "download"
	// ActionBackup: back up now.
	ActionBackup Action = "backup"
	// ActionRestore: restore, instant restore, export.
	ActionRestore Action = "restore"
	// ActionLock: retention locks on restore points.
	ActionLock Action = "lock"
	// ActionForget: remove restore points.
	ActionForget Action = "forget"
	// ActionAdmin: users and configuration.
	ActionAdmin Action = "admin"
)

// Actions lists every action, from the least to the most powerful.
func Actions() []Action {
	return []Action{ActionView, ActionBrowse, ActionDownload, ActionBackup, ActionRestore, ActionLock, ActionForget, ActionAdmin}
}

// permissions is the table of what each role may do.
var permissions = map[Role][]Action{
	RoleAdmin:        Actions(),
	RoleOperator:     {ActionView, ActionBrowse, ActionDownload, ActionBackup, ActionRestore},
	RoleRestoreFiles: {ActionView, ActionBrowse, ActionDownload},
}

// Roles lists the roles, from the most to the least powerful.
func Roles() []Role { return []Role{RoleAdmin, RoleOperator, RoleRestoreFiles} }

// ParseRole returns the role named s, or an error naming the roles.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if _, ok := permissions[r]; !ok {
		names := make([]string, 0, len(permissions))
		for _, r := range Roles() {
			names = append(names, string(r))
		}
		return "", fmt.Errorf("unknown role %q: want %s", s, strings.Join(names, ", "))
	}
	return r, nil
}

// Allowed reports whether role may perform action. An unknown role may do
// nothing.
func Allowed(role Role, action Action) bool {
	return slices.Contains(permissions[role], action)
}
