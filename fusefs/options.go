package fusefs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Options tunes a mount. The zero value uses the defaults. The tree it
// serves has its own options (rptree.Options).
type Options struct {
	// AllowOther lets users other than the one who mounted read the tree
	// (FUSE allow_other; default false).
	AllowOther bool
	// AttrTimeout is how long the kernel caches attributes and names of
	// files inside a restore point, which never change (rptree.Immutable;
	// default 1h). The root, VM directories and the names of restore
	// points use 1s, so new restore points appear at once.
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
	// Logger receives a line for every damaged range read and every
	// unexpected error (default: discard).
	Logger *slog.Logger
	// Debug logs every FUSE request to Logger (default false).
	Debug bool
	// OthersOnly says that this process never touches the mount itself:
	// other programs read it (ahvfs mount, QEMU under verify-boot). Mount
	// then skips go-fuse's poll of a file on its own mount. A request
	// from the process to its own mount is fatal under kill -9: the
	// thread waiting for the answer cannot be interrupted, and the
	// answer would come from the process being killed, so it never ends.
	// Leave it false when the process opens files on its mount (tests):
	// the poll teaches the kernel that the mount does not poll, before
	// Go's runtime polls a file it opened there.
	OthersOnly bool
}

// Validate reports every invalid field at once.
func (o Options) Validate() error {
	var errs []error
	if o.AttrTimeout < 0 {
		errs = append(errs, fmt.Errorf("AttrTimeout %v < 0", o.AttrTimeout))
	}
	if o.MaxBackground < 0 {
		errs = append(errs, fmt.Errorf("MaxBackground %d < 0", o.MaxBackground))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
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
