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
//
// # XCP-ng / XenServer (RunXen)
//
// The same flow on a pool reached through XAPI (package xapi): options,
// report, hooks, retention locks and the journal are shared; the restore
// points sit beside AHV's in one repository, their VMConfig marked
// Hypervisor "xcp-ng" with the pool-only fields under Xen. Disks are the
// VM's disk VBDs ("xvd.N", N the userdevice; CD drives are skipped),
// numbered disk-N in userdevice order. Consistency "app" asks for a
// quiesced snapshot when the guest tools advertise one and falls back to
// crash. Two strategies (Options.Strategy):
//
//   - CBT: changed-block tracking is enabled on every disk (auto falls
//     back to XVA where the SR refuses). A full reads each snapshot VDI
//     whole; an incremental reads the 64 KiB blocks VDI.list_changed_blocks
//     names between the reference snapshot's VDI and the new one. Reads go
//     over NBD (the host's TLS NBD server that VDI.get_nbd_info names,
//     several requests in flight; package nbd) or, without one, through
//     the pool's HTTP export of the whole disk (/export_raw_vdi), read once
//     from start to end. After the commit the new snapshot's data is freed
//     (VDI.data_destroy): its CBT metadata is all the next incremental
//     needs, so the reference costs no space on the SR.
//   - XVA: a full streams the snapshot's XVA export (/export: ova.xml,
//     then each disk's 1 MiB blocks with their checksums; package xva)
//     straight into the repository, never staged; an incremental streams
//     each disk's delta VHD against the reference snapshot
//     (/export_raw_vdi?format=vhd&base=…; package vhd), whose data is
//     therefore kept.
//
// Either way one snapshot per VM stays on the pool between jobs: the
// reference (journal kept record "xenref-<vm uuid>", XenReference),
// promoted in the order described under "Reference snapshots". A change of
// strategy, a vanished reference snapshot or restore point, or a disk the
// reference does not have makes a full (of the VM or the disk), with the
// reason recorded.
package backup
