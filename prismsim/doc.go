// Package prismsim is a Nutanix Prism simulator for tests and demos: one
// HTTPS listener that plays Prism Central (v3, v4) and Prism Element (v2, v3
// PE-only calls, the v4 compute-changed-regions action) for a cluster
// topology of one PC managing "cluster-a" and "cluster-b", each with a
// storage container "default" and subnets "vlan10" and "vlan20".
//
// # Vocabulary
//
//   - Live disk: a VM disk, a plain file DIR/vms/<vm>/disk-<N>.raw. Tests act
//     as the guest by writing into it.
//   - Snapshot: a point-in-time copy of every disk of one VM
//     (DIR/snapshots/<uuid>/disk-N.raw, FICLONE reflink or a sparse copy). The
//     same object is a v3 vm_snapshot, a v2 snapshot and a v4 VM recovery
//     point; a v4 recovery point groups VM recovery points.
//   - Snapshot file path: the AOS-style name of a snapshot disk,
//     /default/.snapshot/NN/<cluster id>-<incarnation>-<snap id>/.acropolis/vmdisk/<vdisk uuid>,
//     the key of v3 /data/changed_regions. As on real clusters the vdisk uuid
//     differs from the VM disk uuid; v2 GET /virtual_disks/{vdisk uuid} maps
//     it back (device_uuid, attached_vm_uuid, disk_address "scsi.0").
//   - Changed regions: exact per block (64 KiB by default, or v4
//     blockSizeByte). With a reference: REGULAR where the block differs and
//     is not all zero, ZEROED where it differs and is all zero, nothing where
//     equal. Without one (a full): the allocation map, REGULAR for non-zero
//     blocks and ZEROED for zero blocks and holes, covering the whole range.
//     Adjacent regions of one type are merged; Options.MaxRegionsPerPage
//     caps a page, the rest follows via next_offset (v3) or
//     metadata.extraInfo nextOffset (v4).
//   - Volume group (VG): disks cloned from snapshot disks (or blank),
//     exported over iSCSI by two tgtd daemons: the Data Services IP portal
//     (Options.ISCSIPortal) knows every target and redirects logins (status
//     0x0101) to the CVM portal (Options.CVMPortal, another loopback address)
//     that serves LUN 1..N. Target IQN: iqn.2010-06.com.nutanix:<vg-name>-<uuid>.
//     The ACL is the attached initiator IQNs; a client secret turns on CHAP
//     with the initiator IQN as user.
//   - External repository (multidomain, Options.V4Revisions from v4.2): an
//     NFS export registered by address; a v4.2 VM disk with an
//     ExternalDataSourceDiskReference reads from a file on it through the
//     simulator's own NFS client until hydrated, hydrates in the background
//     at Options.HydrationRate, and keeps guest writes (Sim.WriteDisk,
//     Sim.ReadDisk); see hydrate.go. A repository backing a disk not yet
//     hydrated cannot be deleted (409).
//   - Files into a guest (vmm v4.3 transfer-files-to-guest): the source
//     disk is read from an external repository, each file found in one of
//     its ext4 filesystems and written into the target VM's first ext4
//     filesystem on disk 0 with debugfs; the VM must be ON with guest
//     tools, the credentials those of StateDir/guest.credentials; see
//     transfer.go.
//   - Category: a key:value pair (Env:prod) a VM carries, one or several
//     values per key (VMOptions.Categories, Sim.SetVMCategories). v3 VMs show
//     metadata.categories (first value per key), categories_mapping (all)
//     and use_categories_mapping true; v4 VMs a categories list of
//     {extId}. A category's extId is derived from key and value (stable
//     across restarts); categories once assigned stay defined.
//   - Task: every mutation answers 202/201 with a task that goes QUEUED →
//     RUNNING → SUCCEEDED (or FAILED) over Options.TaskDelay steps. Entities
//     created by a task read PENDING (snapshots: empty snapshot_file_list)
//     until it succeeds; a task chosen to fail leaves no entity behind.
//
// # Endpoints
//
// v3 (/api/nutanix/v3): users/me; vms/list, vms (POST), vms/{uuid} GET PUT
// DELETE; clusters/list, clusters/{uuid}; subnets/list, subnets/{uuid};
// tasks/{uuid}, tasks/poll, tasks/list; vm_snapshots (POST), vm_snapshots/list,
// vm_snapshots/{uuid} GET DELETE; data/changed_regions; images (POST),
// images/list, images/{uuid} GET DELETE, images/{uuid}/file PUT GET (Range);
// category/query (APPLIED_TO, CATEGORIES_MATCH_ANY or _ALL, paged by
// group_member_offset/group_member_count), categories/{name}/{value} PUT GET.
// With Options.NoV3Snapshots (prismsim --no-v3-snapshots) vm_snapshots and
// data/changed_regions are not served and answer 404, as on a Prism
// Central or an older Prism Element: a v3 client (ahvfs --api v3) then
// takes, lists and deletes its snapshots through v2.0 snapshots and, with
// no changed regions, backs up in full.
//
// v2 (/PrismGateway/services/rest/v2.0 and /api/nutanix/v2.0, with or without
// trailing slash): cluster; snapshots GET POST, snapshots/{uuid} GET DELETE;
// volume_groups GET POST, volume_groups/{uuid} GET DELETE,
// volume_groups/{uuid}/open and /close; tasks/{uuid}; virtual_disks,
// virtual_disks/{uuid}.
//
// v4 (/api/<ns>/v4.0 and v4.1; other revisions 404): vmm ahv/config/vms
// (list, create, get, update, delete, guest-tools, disks, $actions/power-on,
// power-off, shutdown, guest-shutdown), vmm content/images (list, create,
// get, file); dataprotection config/recovery-points (create, list, get,
// delete, vm-recovery-points/{id}, $actions/set-expiration-time,
// $actions/discover-cluster), content/.../disk-recovery-points/{id}/$actions/compute-changed-regions;
// volumes config/volume-groups (create, list, get, delete, disks list/add,
// $actions/attach-iscsi-client, $actions/detach-iscsi-client,
// external-iscsi-attachments), config/iscsi-clients (list, get); prism
// config/tasks/{extId}, config/categories (list with $filter on key, value,
// type, extId; get; $expand=associations or detailedAssociations); clustermgmt config/clusters (list, get); networking
// config/subnets (list); OPTIONS /api/<ns>/unversioned/info.
//
// Admin (/sim, basic auth, exempt from faults): GET/PUT /sim/faults,
// DELETE /sim/snapshots/{uuid} (behind the client's back), POST
// /sim/iscsi/drop, GET /sim/state, GET /sim/inventory[?wait=DURATION].
//
// # Inventory
//
// Objects (Sim.Objects, GET /sim/inventory, simtest.Inventory) lists what
// a job can leave behind: VMs, snapshots (with their VM and the API that
// took them), v4 recovery points, volume groups with their attached
// initiators, images, and the tasks still running. Diff names what
// appeared, disappeared or changed between two of them, so a crash test
// can assert that cleanup left the cluster as it was.
//
// # Behaviour that follows nutanix-api.md
//
// Basic auth on every endpoint (401 with a plain-text body otherwise); a
// NTNX_IGW_SESSION cookie is issued and accepted alone until it expires.
// v3 entities are {api_version, metadata, spec, status}; errors are
// {api_version, code, kind, state: "ERROR", message_list[{message, reason,
// details}]}; JSON type errors give 422 "is not of type 'integer'"; PUT needs
// metadata.spec_version (409 on mismatch); the PC appears in clusters/list
// with service_list ["PRISM_CENTRAL"]. v4 answers use the {$objectType,
// $reserved, data, metadata} envelope, errors an ErrorResponse with
// AppMessage codes (VMM-, DP-, VOL-...), task extIds "ZXJnb24=:<uuid>",
// $page/$limit (default 50, max 100) with totalAvailableResults and links.
// Mutating v4 requests need NTNX-Request-Id (400 without) and a repeated id
// replays the first answer; so does a v3 create (vms, vm_snapshots, images)
// repeated with the same metadata.uuid. compute-changed-regions accepts only the
// discover-cluster JWT as the NTNX_IGW_SESSION cookie, scoped to
// /api/dataprotection/v4.0/content (a v4.1 path answers 401 "Scope claim
// value does not match API base path", as field-observed on pc.7.3).
// Application-consistent requests are honoured only for powered-on VMs with
// VSS-capable NGT; otherwise the snapshot is silently crash-consistent (read
// the type back).
//
// # Choices where nutanix-api.md is UNCONFIRMED
//
//   - v3 category/query: group_member_count defaults to 20 (at most 500);
//     filtered_entity_count and total_entity_count both count every VM
//     matched (the page is kind_reference_list); a category that does not
//     exist matches nothing rather than failing. v4 categories are all of
//     type USER, and $expand works on the list as on the get.
//   - v4 If-Match: missing on PUT/DELETE of VMs, VGs and recovery points
//     answers 428, a mismatch 412; power actions and set-expiration-time
//     check it only when sent.
//   - v4 nextOffset and fileSize live in metadata.extraInfo (KVPairs);
//     nextOffset is absent on the last page, and equals offset+length when a
//     window ends before the disk does. v3 next_offset behaves the same way.
//   - discover-cluster returns this listener's IP in clusterIp (no port: use
//     the port of the URL you called; 9440 in production) plus a
//     metadata.links entry rel "compute-changed-regions" with the full URL.
//   - A v4 VG disk from a recovery point: diskDataSourceReference {extId:
//     diskRecoveryPointExtId, entityType: DISK_RECOVERY_POINT}. v4 VG
//     targetName is the full target IQN.
//   - v2 /open and /close are synchronous and answer {"value": true};
//     logical_timestamp is checked only when non-zero. v2 clone_config
//     accepts ndfs_filepath (snapshot or live path) or vmdisk_uuid with
//     snapshot_group_uuid; a v3 vm_snapshot's consistency_group_uuid works as
//     snapshot_group_uuid. v2 reports progress_status in mixed case
//     ("Succeeded"). v2 plays cluster-a.
//   - A v3 list's length is capped at 500 (default 20); metadata.length is
//     the number of entities returned.
//   - The iSCSI portal port is not in any API answer (the Data Services IP is
//     an address only); Sim.ISCSIPortal gives it to tests.
//
// Not simulated: VG attachment to VMs, v3 volume groups, v3
// vm_recovery_points, v4 restore actions, VSS metadata download, category
// changes through the APIs (v3 VM PUT metadata.categories, v4
// associate-categories: tests use Sim.SetVMCategories), policies
// (category/query USED_IN answers no results), projects, NFS access to
// snapshot files.
package prismsim
