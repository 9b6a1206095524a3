// Package rptree shows a repository's restore points as a read-only file
// tree, an io/fs.FS independent of any file server: "ahvfs restore-file"
// copies from it, testing/fstest checks it, and the adapters serve it
// (fusefs over FUSE, later nfs over NFSv3).
//
// # The tree
//
//	<vm>/                          a VM with restore points (VMDirName: '/', '%' and control characters %-encoded)
//	<vm>/latest                    symlink to the newest <time>
//	<vm>/<time>/                   one restore point; <time> is engine.FormatTime (RFC 3339 UTC)
//	<vm>/<time>/vm.json            the VM configuration and the restore point's facts
//	<vm>/<time>/disk-N.raw         the disk's bytes, a regular file the size of the disk
//	<vm>/<time>/disk-N/part-M/...  the guest's files (package guestfs), read-only
//
// A restore point named VM@TIME (engine.RestorePoint.Name, as "ahvfs
// list" prints it) lives at RestorePointDir: VMDirName(VM)/TIME. Every VM
// name gets a directory name of at most MaxNameLen bytes that no other VM
// name gets; ParseVMDirName maps it back, except for a name too long to
// show whole (cut and suffixed with a hash), which the Tree resolves by
// listing the VMs.
//
// Every FileInfo's Sys() is a *guestfs.Stat: guest owners, times, link
// targets; above the guest filesystems, owner root and the restore point's
// time. A filesystem that cannot be read shows a README.txt saying why
// (guestfs), so listing never fails because of one partition.
//
// # For servers
//
// Everything a file server needs is here, so adapters hold no tree logic:
//
//   - Paths are the identity of files: Inode gives a stable inode number
//     for a path (the same across mounts and servers), ChildPath builds
//     paths, Immutable says which paths never change (inside a restore
//     point, not through "latest"), so their attributes, names and pages
//     may be cached for long.
//   - StatContext, LstatContext, ReadLinkContext, ReadDirContext and
//     OpenFile take the request's context; Open and Stat follow symbolic
//     links ("latest", and guest links inside their filesystem), Lstat,
//     ReadLink and ReadDir do not follow a final one.
//   - A *File reads concurrently: ReadAtContext into the caller's buffer,
//     or ReadSpan straight from the engine's chunk cache for disks (no
//     copy); SeekData and SeekHole answer from a disk's manifest.
//     BlockSize is the preferred I/O size.
//   - Errors are *fs.PathError wrapping a few sentinels (see ErrNotDir):
//     one function in each adapter turns them into errnos or status codes.
//
// # Guarantees
//
//   - Lazy: New reads nothing. The VM list, a VM's restore points and a
//     disk's partition table are read when first needed; opened disks
//     (engine reader plus decoded guest filesystems) are kept in an LRU
//     (Options.OpenDisks), so thousands of restore points hold no memory.
//     Every file of one disk reads through one shared engine.DiskReader,
//     so its chunk cache and read-ahead see one stream.
//   - Fresh: listing the root or a VM directory, or looking up a missing
//     name there, refreshes the repository (at most once per
//     Options.RefreshInterval), so new restore points appear while backups
//     run.
//   - Damage is local: a damaged chunk fails the reads of its range with an
//     error wrapping engine.ErrCorrupt; everything else keeps working.
package rptree
