// Package restore brings restore points back onto an AHV cluster
// (Restore, `ahvfs restore`). It only reads the repository; export to
// files for another hypervisor is package export.
//
// # Restore
//
// Restore recreates the VM of a restore point on the same or another
// cluster. It first sweeps what earlier jobs left on the cluster
// (clusterjob.Sweep), then, in order:
//
//  1. Validate everything before creating anything: target cluster, disk
//     selection, name clash, overwrite target, network map (every NIC's
//     subnet mapped or present on the target by UUID or name; every map
//     entry used), data path. All problems are reported at once.
//  2. Create the disks' temporary holders through the restore's journal
//     job (clusterjob.Job), each journaled before the call that creates
//     it: a blank volume group (iSCSI path) or one image per disk (REST
//     path).
//  3. Write the data: iSCSI — attach and log in to the volume group
//     (clusterjob.Job.Attach) and write only the non-zero chunks (blank
//     disks read as zeros), Options.Concurrency writes in flight per disk,
//     then SYNCHRONIZE CACHE, log out and detach; REST — stream each disk
//     (zeros included: an upload is a stream) into its image.
//     Options.BandwidthLimit caps the bytes per second sent.
//  4. Create the VM (powered off), journaled as a VM under construction,
//     from the configuration recorded in the restore point
//     (clusterjob.VMConfig) plus overrides: CPU topology, memory, boot type
//     (legacy/UEFI/secure boot), machine type, disks on their bus and
//     index, NICs on the mapped subnets with their models. MAC addresses
//     are kept only when the original VM (by UUID) no longer exists on
//     the cluster; otherwise the cluster assigns new ones.
//  5. --overwrite only: power the original off (if it was running), commit
//     the replacement in the journal, and delete the original. Until the
//     commit a failure (or a sweep after a crash) deletes the new VM and
//     powers the original back on; after it, the new VM is the result and
//     the deletion of the original is finished by whoever comes next. A
//     crash at any instant leaves one of the two VMs, never neither.
//  6. The VM is the result: it leaves the journal. Then the temporary
//     volume group or images are removed (a failure here is a warning:
//     the VM is complete, and the next sweep retries).
//  7. Power the new VM on if asked (a failure is a warning: the VM is
//     restored).
//
// On any failure before step 6 the job's teardown removes everything the
// restore created, newest kind first, with a fresh context bounded by
// Options.CleanupTimeout, so cancellation by SIGINT still cleans up; the
// error says what failed and, if the teardown was incomplete, what is
// left. A restore killed with SIGKILL leaves its journal entries, and the
// next job or `ahvfs cleanup` removes what they name.
//
// The iSCSI path is the default (Options.DataPath auto): the volume group
// comes from nutanix.DataPath.CreateBlankVolumeGroup (v4 volumes, or v2.0
// create_config) and the VM disks are clones of its disks
// (nutanix.DiskSpec.VolumeDiskUUID). Temporary volume groups and images
// have unique names (ahvfs-vg-restore-NAME-TIME-RANDOM,
// ahvfs-img-restore-…), so what a failed create call left is found by
// name. Options.Container takes a storage container name (unique on the
// target cluster) or UUID.
//
// Restore points made by `ahvfs import` carry no VM configuration: the VM
// then gets clusterjob.DefaultVCPUs, DefaultMemoryBytes, legacy BIOS,
// machine type PC, its disks on their recorded bus (SCSI) and no NIC,
// unless overridden.
//
// # Vocabulary
//
// A restore point's disk-N goes to a VM disk at bus.index (scsi.0); a
// temporary object is a volume group or image that exists only during a
// restore; a VM under construction is deleted by a teardown until the
// restore makes it the result.
package restore
