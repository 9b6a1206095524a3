// Package mkimage builds realistic test disks from real files: bare ext4,
// XFS, FAT or NTFS filesystem images, or GPT/MBR disks holding several of
// them, each filled from a directory tree. Tree makes such a tree by copying
// real files (documentation, source code, libraries) from this machine, so no
// test or benchmark depends on random bytes alone.
//
// It drives the standard Debian tools (mkfs.ext4 -d, mkfs.xfs -p, mkfs.vfat
// with mcopy, mkntfs with an ntfs-3g mount, sfdisk) and needs root only for
// NTFS.
package mkimage
