package main

import (
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Names and times given on the command line obey the engine's rules
// (docs/FORMAT.md, "Names"); they are checked here, before any work, so
// that a bad one is a usage error (exit 2).

// parseTimeFlag parses the value of a time flag (--time, --since, --until):
// RFC 3339, between 1970 and 2261.
func parseTimeFlag(flag, s string) (time.Time, error) {
	t, err := engine.ParseTime(s)
	if err != nil {
		return time.Time{}, usagef("--%s: %v", flag, err)
	}
	return t, nil
}

// checkRestorePointArg checks a VM@TIME (VM@latest, VM) argument.
func checkRestorePointArg(s string) error {
	if err := engine.ValidateName(s); err != nil {
		return usagef("restore point argument: %v", err)
	}
	return nil
}
