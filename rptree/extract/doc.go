// Package extract copies files out of a restore-point tree (rptree) into a
// local directory: the job behind "ahvfs restore-file". It restores
// contents, modes, times and (when asked, usually as root) owners, and it
// is safe against what a guest filesystem may hold:
//
//   - Special bits: setuid, setgid and sticky bits are dropped unless
//     Options.PreserveSpecial; every file that lost one is reported. A
//     directory that loses its sticky bit also loses write permission for
//     group and others, so that dropping it never lets other users delete
//     each other's files.
//   - Symbolic links that leave the destination: a link whose target, read
//     on the host, resolves outside the destination directory (every
//     absolute target, "../../..", and targets with ".." after a name,
//     which cannot be checked without following links) is never written
//     without being reported. Options.Symlinks chooses what happens to it:
//     SymlinksRelative (the default) rewrites an absolute target that
//     points inside the copied tree (in the guest's view, from the root of
//     the link's filesystem) into a relative one and skips the others;
//     SymlinksSkip skips them all; SymlinksKeep writes them as they are.
//     Links that stay inside are written as they are.
//   - No writing through links: every directory below the destination is
//     opened relative to its parent with O_NOFOLLOW, and every file,
//     directory and link is created relative to its directory's descriptor
//     (O_EXCL, mkdirat, symlinkat), so a symbolic link already in the
//     destination (or planted there while the copy runs) is never
//     followed: without Options.Overwrite it is an error, with it the link
//     itself is replaced. The destination directory itself may be a link.
//   - Devices, FIFOs and sockets are never created; they are reported.
package extract
