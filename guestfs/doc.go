// Package guestfs browses the filesystems inside a guest disk image without
// mounting it: no root, no loop device, no libguestfs. It reads a disk from
// any io.ReaderAt (a restore point's disk, a raw image file) and exposes the
// files as a read-only io/fs.FS, which the FUSE mount shows under
// MOUNTPOINT/<vm>/<time>/disk-N/ and which "ahvfs restore-file" copies
// from.
//
// # Vocabulary
//
//   - Disk: an opened disk image (OpenDisk). Its partition table is read at
//     once; each filesystem is opened lazily, on first access.
//   - Partition: one entry of the disk's root directory. Names:
//     part-M for partition number M as Linux numbers it (GPT entry index + 1;
//     MBR primaries 1-4 and logical partitions from 5, the extended
//     container itself is not shown); part-0 for a disk without a partition
//     table that holds one bare filesystem; lv-<vg>-<lv> for an LVM logical
//     volume found in a physical volume on this disk (the physical volume's
//     own part-M holds a README.txt pointing to them).
//   - Volume: the filesystem inside a partition. ext2/3/4, XFS, FAT12/16/32
//     and NTFS are browsable. Anything else (swap, LUKS, BitLocker, btrfs,
//     an unformatted or damaged partition) is shown as a directory holding
//     README.txt that says what was found; a damaged filesystem never breaks
//     the listing of the disk or of the other partitions.
//   - Stat: the metadata every FileInfo carries in Sys(): owners, the four
//     times, link count, inode number, device number, symlink target.
//
// # The tree
//
// Disk.FS returns an *FS implementing fs.FS, fs.ReadDirFS, fs.StatFS,
// fs.ReadFileFS and fs.ReadLinkFS. A partition directory is its
// filesystem's root directory (owner, mode, times) under the name part-M.
// Open and Stat follow symbolic links as the guest would, inside the
// link's filesystem (absolute targets start at that filesystem's root, ".."
// stops there); Lstat, ReadLink and ReadDir do not. FAT and NTFS names are
// also found case-insensitively. A directory that contains itself (a
// corrupt filesystem) cannot be entered: the error wraps ErrCorrupt.
// Opened files are *File: ReadAt is safe for concurrent callers and takes no
// lock; it reads whole extents from the disk in as few ReadAt calls as the
// file's fragmentation allows, filling holes and unwritten extents with
// zeros. Read and Seek share one position.
//
// # Readers
//
// ext2/3/4, XFS, FAT, the partition tables and LVM are read by code in this
// package; NTFS metadata by www.velocidex.com/golang/go-ntfs (file data by
// our own run-list reader). github.com/masahiro331/go-xfs-filesystem reads
// through a shared Seek position, a block per call, and exposes no owners
// and no symlink targets; go-diskfs reads FAT32 only; ext4 is read here so
// that owners, times, symlinks and whole-extent reads are ours to check
// (the tests compare them with the kernel's view). Each reader bounds its loops
// by sizes it has checked against the volume (extent tree depth, cluster
// chains, indirect blocks used once, EBR chains without cycles, LVM
// metadata size), and every call into a parser runs under recover, so
// malformed images give errors or README.txt files, not panics or hangs.
// Journals (ext4, XFS, NTFS $LogFile) are not replayed: a crash-consistent
// snapshot shows the state on disk, which can lag a little behind the
// guest's last writes. Checksums are not verified.
//
// Known gaps: NTFS reparse points (symlinks, junctions) show as plain
// files and directories, NTFS alternate data streams are not shown, NTFS
// owners are not mapped (UID and GID are 0); ext4 encrypted directories
// show encrypted names; LVM thin, snapshot, RAID, mirror and multi-stripe
// volumes and volume groups spanning several disks show a README.txt.
//
// # Fuzzing
//
// FuzzOpenDisk takes a raw disk or a compact sparse form (see fuzz_test.go)
// whose checked-in seeds are small real images of every supported layout.
// Run it with -fuzzminimizetime 1s: minimising the 100 KB seeds otherwise
// stalls the fuzzer.
//
//	go test -run '^$' -fuzz FuzzOpenDisk -fuzzminimizetime 1s ./guestfs/
package guestfs
