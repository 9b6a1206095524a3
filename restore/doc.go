// Package restore brings restore points back out of the repository: onto
// an AHV cluster (Restore, `ahvfs restore`) or into files for another
// hypervisor (Export, `ahvfs export`). It only reads the repository.
//
// # Restore
//
// Restore recreates the VM of a restore point on the same or another
// cluster. In order:
//
//  1. Validate everything before creating anything: target cluster, disk
//     selection, name clash, overwrite target, network map (every NIC's
//     subnet mapped or present on the target by UUID or name; every map
//     entry used), data path. All problems are reported at once.
//  2. Create the disks' temporary holders, each recorded in an undo list
//     as soon as it exists: a blank volume group (iSCSI path) or one image
//     per disk (REST path).
//  3. Write the data: iSCSI — log in to the volume group and write only
//     the non-zero chunks (blank disks read as zeros), Options.Concurrency
//     writes in flight per disk, then SYNCHRONIZE CACHE and detach; REST —
//     stream each disk (zeros included: an upload is a stream) into its
//     image.
//  4. Create the VM (powered off) from the configuration recorded in the
//     restore point plus overrides: CPU topology, memory, boot type
//     (legacy/UEFI/secure boot), machine type, disks on their bus and
//     index, NICs on the mapped subnets with their models. MAC addresses
//     are kept only when the original VM (by UUID) no longer exists on
//     the cluster; otherwise the cluster assigns new ones. A failed create
//     is reconciled by name: any VM of that name that did not exist
//     before is deleted.
//  5. --overwrite only: power the original off (if it was running) and
//     delete it. Until this deletion succeeds a failure undoes everything:
//     the new VM is deleted and the original powered back on. Once the
//     original is deleted the new VM is the result and is kept whatever
//     fails later (a failed power-on is then a warning).
//  6. Remove the temporary volume group / images (a failure here is a
//     warning: the VM is complete).
//  7. Power the new VM on if asked.
//
// On any failure before the end, the undo list runs newest first with a
// fresh context bounded by Options.CleanupTimeout, so cancellation by
// SIGINT still cleans up; the error says what failed and, if cleanup was
// incomplete, what is left.
//
// The iSCSI path is the default (Options.DataPath auto): the volume group
// comes from nutanix.DataPath.CreateBlankVolumeGroup (v4 volumes, or v2.0
// create_config) and the VM disks are clones of its disks
// (nutanix.DiskSpec.VolumeDiskUUID). Temporary volume groups and images
// have unique names (ahvfs-restore-NAME-UNIXTIME…), and their undo steps
// are registered before the create call and also remove any object of
// that name, since a failed task can leave one the client never learnt
// the UUID of. Options.Container takes a storage container name (unique
// on the target cluster) or UUID.
//
// Restore points made by `ahvfs import` carry no VM configuration: the VM
// then gets DefaultVCPUs, DefaultMemoryBytes, legacy BIOS, machine type PC,
// its disks on their recorded bus (SCSI) and no NIC, unless overridden.
//
// # Export
//
// Export converts disks with `qemu-img convert` reading straight from the
// engine through a minimal in-process read-only NBD server on a unix
// socket (fixed newstyle handshake, NBD_OPT_GO/INFO/EXPORT_NAME/LIST,
// NBD_CMD_READ/DISC, simple replies), so no temporary raw copy exists.
// Zero chunks cost a memclr. Beside the disks it writes an OVF 1.x
// descriptor (vSphere: vmdk streamOptimized) and a libvirt domain XML
// (KVM/Proxmox; not for vhdx, which libvirt cannot use).
//
// # Vocabulary
//
// A restore point's disk-N goes to a VM disk at bus.index (scsi.0); a
// temporary object is a volume group or image that exists only during a
// restore; the undo list holds the removal of every object created so far.
package restore
