// Package xva reads and writes XVA, the VM export format of XenServer and
// XCP-ng (what `xe vm-export` and GET /export?use_compression=false
// produce, and PUT /import takes), in one pass and in bounded memory: a
// Reader holds ova.xml and one block, never a whole disk.
//
// # Vocabulary
//
//   - XVA: an uncompressed tar archive. Its first member is ova.xml; the
//     disk data follows as block members and checksum members.
//   - ova.xml, Header: one XML-RPC value, a struct with "version" (the
//     exporting host: hostname, date, product_version, product_brand,
//     build_number, xapi_major, xapi_minor, export_vsn) and "objects", an
//     array of structs {class, id, snapshot}.
//   - Object: one exported database record: its class ("VM", "VBD", "VDI",
//     "VIF", "SR", "network", ...), its id in the file ("Ref:N"), and its
//     fields ("snapshot" in the file). Reference fields hold ids of other
//     objects, or "OpaqueRef:NULL". XAPI writes int64 fields (virtual_size,
//     memory_*) as strings.
//   - VM, Disk: the exported VM is the object of class VM that is not a
//     snapshot; its disks are its VBDs of type Disk that are not empty,
//     each with the VDI it points at, in userdevice order.
//   - Block: 1 MiB of a disk (BlockSize), in member "Ref:N/NNNNNNNN" where
//     Ref:N is the VDI's id and NNNNNNNN a decimal counter of at least 8
//     digits, followed by "Ref:N/NNNNNNNN.checksum" (hex SHA-1 of the block)
//     or, in newer releases, "Ref:N/NNNNNNNN.xxhash" (hex XXH64). The last
//     block of a disk whose size is not a multiple of 1 MiB is shorter.
//   - Hole: an all-zero block left out of the archive; the counter skips
//     it. Block carries its Index; filling holes is the caller's job.
//   - Dummy block: a zero-length block member (with its checksum member)
//     that XAPI inserts to keep an idle connection alive; it advances the
//     counter but not the disk, so later blocks have Index = counter minus
//     the dummies seen in that disk. The Reader verifies and skips them.
//
// # Checked against public references
//
// The format above was checked against these public sources (read through
// the search tool; no code was copied):
//
//   - xapi-project/xen-api ocaml/vhd-tool/src/tar.md, "The XenServer VM
//     import/format": one directory per VDI named as in the metadata XML;
//     each block as two files, the data and .checksum (sha1sum); the file
//     stem is a counter, not a disk offset; first and last blocks must be
//     present; readers take the block size from the first block (1 MiB
//     typically); omitted empty blocks advance the counter; zero-length
//     dummy blocks may be inserted.
//   - xapi-project/xen-api ocaml/xapi/stream_vdi.ml: chunk_size 1 MiB;
//     member names "%s/%08d"; block 0 and the last block always written,
//     the last one holding only the rest of virtual_size; checksum suffixes
//     ".xxhash" (written as "%016LX" of XXH64) and ".checksum" (Sha1.to_hex,
//     lower case); the idle-connection workaround writing zero-length
//     blocks; the importer requiring increasing counters within a VDI and
//     reading VDIs in the string order of their ids, filling skipped
//     counters with zeros of the first block's length.
//   - xapi-project/xen-api ocaml/xapi/importexport.ml and export.ml: the
//     header {version, objects}, obj {class, id, snapshot}, ids "Ref:N",
//     references outside the export replaced by OpaqueRef:NULL, snapshots
//     exported as VM objects with is_a_snapshot.
//   - mirage/ocaml-rpc src/lib/xmlrpc.ml (XAPI's XML-RPC): strings and
//     int64s written as bare text in <value>, <boolean>1/0, <double>,
//     <dateTime.iso8601>, <base64>, <struct>/<member>/<name>, <array><data>,
//     <nil/>; int, i4 and i8 all read as integers; <value/> is "".
//   - A public ova.xml (Citrix's xva.py by David Markey) showing the same
//     encoding in a real file, e.g. virtual_size as <value>4294965248</value>
//     and snapshot_time as <dateTime.iso8601>19700101T00:00:00Z.
//   - The xxHash specification (Cyan4973/xxHash doc/xxhash_spec.md) for
//     XXH64, implemented here from its description (xxh64.go); tests check
//     published vectors.
//
// # Errors
//
// Malformed input gives an error wrapping ErrCorrupt that names what and
// where: not a tar (or gzip/zstd-compressed), ova.xml missing, not first,
// too large (Options.MaxHeaderSize, 64 MiB) or not XML-RPC (nesting is
// bounded by MaxDepth), objects without class, id or snapshot, no VM, a VBD
// pointing at a VDI that is not there, a member name that is not
// Ref:N/NNNNNNNN, a block of the wrong size, beyond virtual_size,
// duplicated or out of order, a checksum member without its block, a block
// without its checksum member (unless Options.AllowMissingChecksums), a
// truncated archive (also wrapping io.ErrUnexpectedEOF), a disk whose last
// block never came. A checksum mismatch also wraps ErrChecksum and names
// the block. Errors of the underlying reader are returned wrapped, not as
// ErrCorrupt. Decoding never panics (fuzzed).
//
// # Not supported
//
// Compressed XVAs (gzip or zstd; the Reader says so), the version-1 XVA
// format of XenServer 4 and earlier, blocks of a size other than 1 MiB,
// and reading a disk's blocks out of counter order. The Writer writes
// .checksum (SHA-1) members only.
package xva
