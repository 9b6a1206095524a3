// Package fusefs serves a restore-point tree (package rptree) over FUSE:
// Mount, the nodes and file handles go-fuse calls, the translation of the
// tree's errors into errnos, and the checks of a mountpoint. It holds no
// tree logic; an NFS adapter serves the same tree.
//
// # Guarantees
//
//   - Lazy: mounting reads nothing; the tree reads what the kernel asks
//     for.
//   - Fresh: names and attributes above restore points are cached by the
//     kernel for 1s, so new restore points appear without remounting.
//   - Immutable: inside a restore point nothing changes
//     (rptree.Immutable), so the kernel keeps page cache across opens
//     (FOPEN_KEEP_CACHE) and attributes for Options.AttrTimeout (1h).
//     Requests are up to 1 MiB (MaxWrite and max_read), the read-ahead
//     window is Options.ReadAhead, and reads run concurrently: a disk's
//     bytes go to the kernel straight from the engine's chunk cache
//     (rptree.File.ReadSpan, one writev), other files are read into the
//     FUSE buffer. SEEK_DATA and SEEK_HOLE are answered from the manifest.
//   - Stable inode numbers: a path always has the same inode number
//     (rptree.Inode).
//   - Damage is local: a damaged chunk fails the reads of its range with
//     EIO and one log line naming the restore point; everything else keeps
//     working. toErrno is the one place errors become errnos (not found:
//     ENOENT, damaged: EIO, interrupted: EINTR).
//   - Mount refuses a mountpoint that is missing, not a directory, not empty
//     or already mounted (ErrMountpoint). Unmount reports ErrBusy while
//     files are open; UnmountLazy detaches.
package fusefs
