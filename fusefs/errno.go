package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"syscall"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/guestfs"
	"github.com/ahvfs/ahvfs/rptree"
)

// toErrno maps an error of the tree to the errno FUSE returns: the one
// place where errors become errnos. Damaged data (engine.ErrCorrupt) is
// EIO and logged with the restore point rp it belongs to (when known; the
// path name says it too); so is anything unexpected. Expected answers (not
// found, not a directory) are not logged.
func toErrno(log *slog.Logger, err error, op, rp, name string) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, engine.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, rptree.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, rptree.ErrNotRegular):
		return syscall.EISDIR
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, engine.ErrCorrupt):
		log.Error("damaged data in the repository: read fails with EIO", "op", op, "path", name, "restore_point", rp, "err", err)
		return syscall.EIO
	case errors.Is(err, guestfs.ErrCorrupt), errors.Is(err, guestfs.ErrUnsupported):
		log.Warn("guest filesystem cannot be read here", "op", op, "path", name, "restore_point", rp, "err", err)
		return syscall.EIO
	}
	log.Error("I/O error", "op", op, "path", name, "restore_point", rp, "err", err)
	return syscall.EIO
}
