// Package nfs serves a restore-point tree (package rptree) over NFSv3
// with github.com/willscott/go-nfs (NFS and MOUNT on one TCP port): the
// tree as a read-only go-billy filesystem, file handles that stay valid
// across server restarts, the translation of the tree's attributes, and a
// listener that admits only the clients' networks an administrator allowed.
// It also answers what go-nfs lacks and real clients ask: the portmapper
// (Portmap: port 111 tells clients the NFS and MOUNT port, so qemu-img's
// nfs:// and libnfs need only a host), and MOUNT EXPORT, DUMP and UMNTALL
// (rpcConn, between the connection and go-nfs). It holds no tree logic;
// package fusefs serves the same tree over FUSE.
//
// # Guarantees
//
//   - Read-only: every change (create, write, setattr, remove, rename) is
//     refused with NFS3ERR_ROFS or NFS3ERR_ACCES; nothing reaches the
//     repository.
//   - Stable file handles: a handle names a path by the inode numbers
//     (rptree.Inode) of its first components, so a client that held a
//     handle before the server restarted, or before the repository was
//     reopened, still reads the same file. Paths deeper than handleDepth
//     components (inside guest filesystems) are resolved from the
//     server's memory, and are stale after a restart.
//   - Fast reads: READ is answered here (reads), not by go-nfs: a
//     connection's reads run concurrently (up to readsInFlight), open
//     files are kept by handle, and a disk's bytes go from the engine's
//     chunk cache to the socket in one writev, up to 4 MiB per READ.
//   - Stable inode numbers: a path always has the same file ID
//     (rptree.Inode), the same as through the FUSE mount.
//   - Access: Options.Allow lists the client networks; a connection from
//     elsewhere is closed at once and logged. Mounts of "/" or of any
//     directory of the tree are answered; the export list is "/".
package nfs
