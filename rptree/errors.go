package rptree

import (
	"errors"

	"github.com/ahvfs/ahvfs/internal/rofile"
)

// Errors of the tree. Every error of a Tree or File is an *fs.PathError
// naming the tree path; its Err wraps one of:
//
//   - fs.ErrNotExist: no such VM, restore point, disk or guest file
//     (engine.ErrNotFound is turned into it);
//   - fs.ErrInvalid: an invalid path (fs.ValidPath), a negative offset,
//     ReadLink of something that is not a link, a symbolic-link loop;
//   - ErrNotDir, ErrNotRegular: the wrong kind of file for the operation;
//   - engine.ErrCorrupt: damaged data in the repository (only the reads of
//     the damaged range fail);
//   - guestfs.ErrCorrupt, guestfs.ErrUnsupported: a guest filesystem that
//     cannot be read here;
//   - context.Canceled, context.DeadlineExceeded: the caller gave up;
//   - anything else: an I/O error of the repository.
var (
	// ErrNotDir: listing something that is not a directory.
	ErrNotDir = errors.New("not a directory")
	// ErrNotRegular: reading a directory or a symbolic link.
	ErrNotRegular = rofile.ErrNotRegular
)
