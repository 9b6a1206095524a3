package rptree

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
)

// Options tunes a Tree. The zero value uses the defaults.
type Options struct {
	// RefreshInterval is the least time between two checks for new restore
	// points (repo.Refresh), which happen when the root or a VM directory
	// is listed, or a name is not found there (default 1s; negative: never
	// refresh).
	RefreshInterval time.Duration
	// OpenDisks is how many disks (engine reader plus decoded guest
	// filesystems) stay open when nothing uses them (default 32). Disks in
	// use by an open file are never closed.
	OpenDisks int
	// Guest tunes the guest-filesystem reader (default: guestfs defaults).
	Guest guestfs.Options
	// Logger receives a line when a refresh of the repository fails
	// (default: discard).
	Logger *slog.Logger
}

// Validate reports every invalid field at once.
func (o Options) Validate() error {
	var errs []error
	if o.OpenDisks < 0 {
		errs = append(errs, fmt.Errorf("OpenDisks %d < 0", o.OpenDisks))
	}
	if err := o.Guest.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Guest: %w", err))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.RefreshInterval == 0 {
		o.RefreshInterval = time.Second
	}
	if o.OpenDisks == 0 {
		o.OpenDisks = 32
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}
