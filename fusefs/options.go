package fusefs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ahvfs/ahvfs/guestfs"
)

// Options tunes a Tree and its mount. The zero value uses the defaults.
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
	// Logger receives a line for every damaged range read and every
	// unexpected error (default: discard).
	Logger *slog.Logger

	// The fields below apply to Mount only.

	// AllowOther lets users other than the one who mounted read the tree
	// (FUSE allow_other; default false).
	AllowOther bool
	// AttrTimeout is how long the kernel caches attributes and names of
	// files inside a restore point, which never change (default 1h). The
	// root, VM directories and the names of restore points use 1s, so new
	// restore points appear at once.
	AttrTimeout time.Duration
	// MaxBackground bounds the asynchronous requests (read-ahead) the
	// kernel keeps in flight (default 32).
	MaxBackground int
	// ReadAhead is the kernel's read-ahead window on the mount (the FUSE
	// connection's bdi read_ahead_kb, set when root; default 4 MiB): a
	// sequential reader then has a few 1 MiB requests in flight, while the
	// engine's own read-ahead decodes further chunks in parallel. Larger
	// windows cost more kernel time than they save (16 MiB: +20% for a
	// streaming cat, 32 MiB: +50%). Negative leaves the kernel's default.
	ReadAhead int
	// Debug logs every FUSE request to Logger (default false).
	Debug bool
}

// Validate reports every invalid field at once.
func (o Options) Validate() error {
	var errs []error
	if o.OpenDisks < 0 {
		errs = append(errs, fmt.Errorf("OpenDisks %d < 0", o.OpenDisks))
	}
	if o.AttrTimeout < 0 {
		errs = append(errs, fmt.Errorf("AttrTimeout %v < 0", o.AttrTimeout))
	}
	if o.MaxBackground < 0 {
		errs = append(errs, fmt.Errorf("MaxBackground %d < 0", o.MaxBackground))
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
	if o.AttrTimeout == 0 {
		o.AttrTimeout = time.Hour
	}
	if o.ReadAhead == 0 {
		o.ReadAhead = 4 << 20
	}
	if o.MaxBackground == 0 {
		o.MaxBackground = 32
	}
	return o
}
