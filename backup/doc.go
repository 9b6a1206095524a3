// Package backup is the backup job of ahvfs: it wires the Prism client
// (nutanix), the data paths (iscsi, REST image downloads), the read plan
// (cbt) and the repository (engine) into Run, and sweeps what interrupted
// jobs left on the cluster with Cleanup.
//
// # One VM, one run
//
//  1. Re-read the VM (disks, NICs, NGT) and keep it as the restore point's
//     VMConfig.
//  2. Decide the level from the reference recorded in the repository (see
//     "Reference snapshots"): full, incremental or differential.
//  3. Run the pre-snapshot hook, record the snapshot name in the ledger,
//     create the snapshot (application-consistent when asked), record its
//     ID, run the post-snapshot hook. The consistency stored is what the
//     cluster delivered, read back from the snapshot.
//  4. Per disk (Options.ConcurrentDisks at once): changed regions against
//     the reference snapshot (incremental, differential) or the allocation
//     map (full) → cbt.Align → a plan of Read, Zero and Unchanged chunks.
//     Only when the plan reads something is the disk exposed: a volume
//     group cloned from the snapshot disk, attached to this host's
//     initiator and read over iSCSI, or an image imported from the snapshot
//     vDisk and read with ranged REST downloads. cbt.Ingest feeds the
//     engine with several reads in flight.
//  5. Commit the restore point (one synced commit), then promote the new
//     snapshot as the reference in one synced state write, and delete the
//     snapshots no longer referenced and the volume groups / images.
//
// A job cancelled by SIGINT/SIGTERM (ctx) still deletes what it created,
// with a fresh context bounded by Options.CleanupTimeout.
//
// # Levels and self-healing
//
// auto is incremental when a usable reference exists, else full. An
// incremental or differential restore point names its parent
// (RestorePointSpec.Parent) and takes the unchanged chunks from the
// parent's disk (DiskSpec.Parent). A disk is read in full, with
// engine.Disk.Reason saying why, when the reference has no copy of it (a
// new disk), when its size changed (resized), or when the reference
// snapshot vanished from the cluster (deleted behind our back); the last
// makes the whole restore point a full one.
//
// # Reference snapshots (repository state "ref/<vm uuid>")
//
// Reference holds the newest snapshot kept on the cluster (Last) with the
// restore point taken from it and its disks (UUID, size, disk-N), and,
// only while a differential chain is in use, the last full's (Full).
// Invariant: exactly one ahvfs snapshot per VM on the cluster between
// jobs — except after a differential backup, which keeps two: the last
// full's snapshot (what the next differential is computed against) and
// the newest one. An incremental or full run ends the exception by
// deleting the full's snapshot when it is not the newest. We chose this
// over re-reading the full's restore point (no changed-region tracking
// against data that is no longer on the cluster) and over always keeping
// two snapshots (doubles cluster space for users who never run
// differentials).
//
// # Ledger (repository state "obj/<kind>/<name>")
//
// Every cluster object a job creates — snapshot, volume group, image — is
// written to the ledger (synced) before the create call, under its name,
// which the job chooses and which is unique ("ahvfs-<vm>-<time>-<rand>",
// "ahvfs-vg-…", "ahvfs-img-…"); the ID is added as soon as the call
// returns, and the entry is removed after the object is deleted. Cleanup
// (run at the start of every backup and by `ahvfs cleanup`) deletes every
// ledger object that no Reference protects. A snapshot whose ID never
// reached the ledger is found by name with ListSnapshots, a volume group
// or image by name with ListVolumeGroups / ListImages (a failed create
// task can leave one behind, so failures are reconciled by name too). An
// entry that cannot be resolved is kept and reported, never dropped.
//
// # VMConfig (the restore point's Config)
//
// VMConfig is the JSON document stored with every restore point and read
// by restore: identity (UUID, name, cluster), CPU (sockets, cores per
// socket, threads), memory, boot type, machine type, power state at backup
// time, disks in bus/index order with bus, index, size, UUID, container and
// the disk-N they were stored as (-1 when not stored: CD-ROM, volume group
// attachment, excluded), NICs with subnet UUID and name, MAC, model and
// connection state, NGT state, and the snapshot it was taken from.
// Version is 1; fields are only ever added.
package backup
