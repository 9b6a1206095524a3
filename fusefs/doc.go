// Package fusefs serves a repository's restore points as files: a
// read-only tree (Tree, an io/fs.FS usable without FUSE, e.g. by
// "ahvfs restore-file" and testing/fstest) and its FUSE mount (Mount).
//
// # The tree
//
//	<vm>/                          a VM with restore points ('/' and '%' in names are %-encoded)
//	<vm>/latest                    symlink to the newest <time>
//	<vm>/<time>/                   one restore point; <time> is engine.FormatTime (RFC 3339 UTC)
//	<vm>/<time>/vm.json            the VM configuration and the restore point's facts
//	<vm>/<time>/disk-N.raw         the disk's bytes, a regular file the size of the disk
//	<vm>/<time>/disk-N/part-M/...  the guest's files (package guestfs), read-only
//
// Every FileInfo's Sys() is a *guestfs.Stat: guest owners, times, link
// targets; above the guest filesystems, owner root and the restore point's
// time. A filesystem that cannot be read shows a README.txt saying why
// (guestfs), so listing never fails because of one partition.
//
// # Guarantees
//
//   - Lazy: mounting reads nothing. The VM list, a VM's restore points and
//     a disk's partition table are read when first needed; opened disks
//     (engine reader plus decoded guest filesystems) are kept in an LRU
//     (Options.OpenDisks), so thousands of restore points hold no memory.
//   - Fresh: listing the root or a VM directory, or looking up a missing
//     name there, refreshes the repository (at most once per
//     Options.RefreshInterval), so new restore points appear without
//     remounting while backups run. Names and attributes above restore
//     points are cached by the kernel for 1s.
//   - Immutable: inside a restore point nothing changes, so the kernel keeps
//     page cache across opens (FOPEN_KEEP_CACHE) and attributes for
//     Options.AttrTimeout (1h). Requests are up to 1 MiB (MaxWrite and
//     max_read), the read-ahead window is Options.ReadAhead, and reads run
//     concurrently, straight into the FUSE buffer, through one shared
//     engine.DiskReader per disk (its chunk cache and read-ahead).
//   - Stable inode numbers: a path always has the same inode number.
//   - Damage is local: a damaged chunk fails the reads of its range with
//     EIO and one log line naming the restore point; everything else keeps
//     working. toErrno is the one place errors become errnos (not found:
//     ENOENT, damaged: EIO, interrupted: EINTR).
//   - Mount refuses a mountpoint that is missing, not a directory, not empty
//     or already mounted (ErrMountpoint). Unmount reports ErrBusy while
//     files are open; UnmountLazy detaches.
package fusefs
