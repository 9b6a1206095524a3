// Package restore brings restore points back onto an AHV cluster
// (Restore, `ahvfs restore`) or an XCP-ng / XenServer pool (RestoreXen,
// `ahvfs restore --target xapi://HOST`), from a restore point of either
// hypervisor. It only reads the repository; export to files for another
// hypervisor is package export.
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
// # XCP-ng and across hypervisors
//
// RestoreXen follows Restore's order through the same journal, with a job
// on the pool (clusterjob.Journal.BeginXen): it sweeps what earlier jobs
// left there (clusterjob.SweepXen), validates everything at once (the
// VM's name free on the pool but for the original an overwrite replaces,
// the SR of each disk found and with room for its disks, every NIC on a
// network, every network map entry used; options only AHV has refused),
// then per disk creates a VDI of the disk's size (journaled under a
// unique name, ahvfs-vdi-restore-NAME-disk-N-TIME-RANDOM, its UUID
// recorded once known) and streams the whole disk into it through
// /import_raw_vdi (zeros included, Options.BandwidthLimit applied); then
// it creates the VM (journaled the same way, ahvfs-restore-NAME-…) with
// its VBDs and VIFs, gives the VM and its VDIs their final names, takes
// them out of the journal (the VM first: a sweep after a crash in
// between keeps VDIs a VM's VBDs use) and starts the VM if asked. A
// failure or a cancellation before that removes every VDI and VM made;
// a restore killed outright leaves journal entries that the next sweep
// (or `ahvfs cleanup --source xapi://HOST`) resolves by UUID, else by
// the unique name. Options.SR takes an SR name (unique on the pool) or
// UUID; by default a disk goes to the SR it came from when the pool has
// it, else to the pool's default SR.
//
// An overwrite on a pool follows AHV's step 5: the original
// (Options.Replace, else the restore point's VM by UUID, else the one VM
// of its name; none is a plain restore with a warning; a suspended one
// is refused) is hard-shut-down once the new VM is complete and named,
// the overwrite is committed with the original's VDIs and the snapshots
// of it the journal keeps (a backup's reference) recorded, then the
// original is destroyed, its VDIs after it (VM.destroy leaves them)
// except those another VM uses, and those snapshots with their kept
// records. Until the commit a failure or a sweep deletes the new VM and
// starts the original again (after the shutdown task the journal
// recorded has ended); after it the deletion is finished. The original's
// MAC addresses do not count as in use: the new VM takes them (XCP-ng
// does not refuse a MAC twice, and the two never run together). The
// original's other snapshots are left. A kill between the shutdown
// call's acceptance and the journal write of its task is a window: a
// sweep then sees the original still running and leaves it off once the
// shutdown ends.
//
// The network map works as on AHV, with XCP-ng networks (name_label or
// UUID) for subnets. A MAC address is kept when no VM of the pool has it
// (snapshots and templates do not count), else the pool generates one and
// a warning names the VM that has it.
//
// A restore point of an XCP-ng VM comes back as it was recorded
// (clusterjob.XenConfig): HVM boot policy and parameters (firmware),
// platform flags (secure boot, device model, cores per socket), domain
// type, vCPUs at most and at startup, the four memory limits, each disk
// on its userdevice with its bootable and read-only flags, each VIF on
// its device with its MTU. Options.VCPUs and MemoryBytes override.
//
// A restore point of an AHV VM (or an import) is mapped: vCPUs (sockets ×
// cores, cores per socket as a platform flag) and memory (all four
// limits); boot type LEGACY to firmware bios, UEFI to uefi, SECURE_BOOT
// to uefi with platform secureboot=true, and XCP-ng's usual HVM platform
// flags; the disks in bus/index order on userdevices 0, 1, 2… (bootable
// on 0); the NICs on devices 0, 1… of the mapped networks. Warned: the
// guest's devices change (Xen disks, PV drivers to install, viridian for
// Windows), the machine type other than PC (XCP-ng chooses its own),
// NIC models other than VirtIO, CD-ROM drives (not restored), Nutanix
// Guest Tools. A PSERIES VM is refused.
//
// Restore of a restore point of an XCP-ng VM onto AHV maps the other way:
// the disks (bus xvd) go on SCSI 0, 1, 2…, the bootable disk first, then
// the others in userdevice order; the firmware is the boot type the
// backup recorded (bios LEGACY, uefi UEFI, with secure boot SECURE_BOOT);
// the NICs follow the network map — pool networks are no AHV subnets, so
// the map is needed unless a subnet has the network's name. Warned: the
// disks' device names (/dev/xvda becomes /dev/sda), guest tools (Nutanix
// Guest Tools absent; XCP-ng PV drivers do not drive AHV's devices), the
// platform flags, a PV or PVH domain, a vCPU maximum above the vCPUs,
// dynamic memory, a VIF MTU other than 1500.
//
// # Vocabulary
//
// A restore point's disk-N goes to a VM disk at bus.index (scsi.0); a
// temporary object is a volume group or image that exists only during a
// restore; a VM under construction is deleted by a teardown until the
// restore makes it the result.
package restore
