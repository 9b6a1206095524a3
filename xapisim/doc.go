// Package xapisim is an XCP-ng/XenServer (XenAPI) simulator for tests and
// demos: one pool with one host, the SR "Local storage" (type ext), the
// networks "Pool-wide network associated with eth0" and "vlan20", and the
// VMs a test adds, served over HTTPS (JSON-RPC at POST /jsonrpc and xapi's
// HTTP transfer handlers) and over NBD with TLS on a second port. It is
// written from the public XenAPI reference, independently of ahvfs's
// client (package xapi), so each checks the other.
//
// # Vocabulary
//
//   - Live disk: the data of a VM's VDI, a plain file. VMs added with
//     Sim.AddVM (xapisim --vm NAME:FILE,…) keep them at
//     DIR/vms/<name>/disk-<N>.raw; tests act as the guest by writing into
//     them (Sim.Write, or the file itself). Other VDIs live at
//     DIR/vdis/<uuid>.raw.
//   - Snapshot: VM.snapshot makes a snapshot VM (is_a_snapshot,
//     snapshot_of, snapshot_time) whose VBDs point at snapshot VDIs
//     (is_a_snapshot, snapshot_of the live VDI, cbt_enabled copied), each
//     a point-in-time copy of its live disk (FICLONE reflink when the file
//     system has them, else a sparse copy that keeps holes). The empty CD
//     VBD and the VIFs are copied too.
//   - CBT from real changes: a snapshot VDI of a disk with CBT enabled
//     keeps the hashes of its 64 KiB blocks (DIR/cbt/<uuid>.cbt).
//     VDI.list_changed_blocks(from, to) needs two VDIs of the same live
//     disk and CBT epoch (each enable_cbt after a disable_cbt starts a new
//     one; a live disk with CBT on counts, hashed when asked) — otherwise
//     VDI_NO_CBT_METADATA — and sets, most significant bit first, exactly
//     the bits of the blocks whose content differs. VDI.data_destroy
//     removes a CBT snapshot's data and keeps its hashes: the VDI's type
//     becomes cbt_metadata, it stays a valid side of list_changed_blocks,
//     and NBD, export_raw_vdi and VM export of it fail.
//   - Session: session.login_with_password as root with the password of
//     DIR/root.password; sessions live in memory (a restart, or
//     Sim.ExpireSessions, turns every call into SESSION_INVALID).
//   - Task: every message with side effects has an Async. form that
//     returns a task; the task runs after Options.TaskDelay and ends with
//     status success (result: the XML-RPC value text, e.g.
//     "<value>OpaqueRef:…</value>") or failure (error_info: code and
//     params). task.create makes a task a client passes as task_id= to an
//     HTTP transfer, which completes it. Tasks live in memory.
//
// # Messages
//
// session.login_with_password, logout, get_this_host, get_this_user,
// get_record, get_uuid. For the classes pool, host, SR, network, VM, VBD,
// VDI, VIF, VM_guest_metrics and task: get_all, get_all_records,
// get_record, get_by_uuid, get_by_name_label and get_<field> for every
// field of the record; add_to_other_config, remove_from_other_config and
// set_other_config for VM, VBD, VDI, VIF and task; set_name_label and
// set_name_description for VM and VDI. VM.snapshot,
// snapshot_with_quiesce (VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED unless
// the VM runs with guest tools that can quiesce: VMSpec.Quiesce,
// Sim.SetQuiesce), destroy (halted VMs and snapshots; their VDIs stay),
// create, start, hard_shutdown, clean_shutdown; VDI.create, destroy
// (VDI_IN_USE while plugged into a running VM), enable_cbt, disable_cbt,
// list_changed_blocks, get_nbd_info, data_destroy; VBD.create, destroy;
// VIF.create, destroy; task.create, cancel, destroy;
// VM_guest_metrics.get_live. Anything else answers MESSAGE_METHOD_UNKNOWN.
// Errors are JSON-RPC 2.0 errors {code 1, message: the XenAPI code, data:
// its parameters}: HANDLE_INVALID [class, ref], UUID_INVALID [class,
// uuid], SESSION_INVALID [ref], SESSION_AUTHENTICATION_FAILED [user, msg],
// MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received],
// VM_BAD_POWER_STATE [vm, expected, actual], VDI_IN_USE [vdi, op],
// VDI_NO_CBT_METADATA [vdi], MAP_DUPLICATE_KEY, FIELD_TYPE_ERROR [field]
// for a create record lacking a field xapi requires, …
//
// # HTTP transfers
//
// Each takes session_id= (or basic auth as root) and an optional
// task_id= that it completes: GET /export_raw_vdi?vdi=REF|UUID&format=raw
// (the whole disk, with Content-Length) or format=vhd[&base=REF] (a
// dynamic VHD with 2 MiB blocks, written in one pass: without base the
// blocks that are not all zero, with base those whose bytes differ from
// base's); PUT /import_raw_vdi?vdi=REF&format=raw (a body of exactly
// virtual_size bytes replaces the disk); GET /export?ref=REF|uuid=UUID
// (an XVA of a snapshot or a halted VM: ova.xml, then 1 MiB blocks Ref:N/%08d each followed by its
// .checksum, hex SHA-1; zero blocks left out but the last;
// use_compression=true gzips it); PUT /import?sr_id=REF (an XVA, gzipped
// or not, with .checksum or .xxhash members; answers and sets the task's
// result to the set of the new VM's ref; a malformed archive answers 400
// and fails the task with IMPORT_ERROR, leaving nothing behind).
// Transfers stream with bounded memory.
//
// # NBD
//
// VDI.get_nbd_info answers [{address "127.0.0.1", port, cert (the
// server certificate's PEM), subject (Options.HostName), exportname
// "/<vdi-uuid>?session_id=<session>"}] for a VDI with data, [] for one
// without. The NBD server (package nbd/nbdserver) requires TLS with the
// HTTPS certificate and serves the VDI's file read-only to a valid
// session.
//
// # Test control
//
// Sim.FailNext / AddFault queue XenAPI errors for the next calls of a
// message (sync or Async), an HTTP transfer or an NBD lookup; Sim.Hold
// holds them until released (for kill -9 tests); Sim.Inventory and Diff
// tell what a job left behind. The same under /sim with root's basic
// auth: GET /sim/inventory[?wait=DURATION], GET/POST/DELETE /sim/faults,
// GET /sim/gates, PUT/DELETE /sim/gates/{method}, POST
// /sim/write?vm=&disk=&offset= (body: the bytes), POST
// /sim/quiesce?vm=&on=, POST /sim/sessions/expire.
//
// # Choices where the reference is silent
//
//   - Exporting a snapshot writes it as a plain halted VM (is_a_snapshot
//     false) so the archive has exactly one VM to import; exporting a VM
//     adds its snapshots' records without their disks
//     (export_snapshots=false leaves them out). References to objects not
//     in the archive become OpaqueRef:NULL.
//   - VBDs and VIFs are plugged (currently_attached) exactly while their
//     VM runs. Import makes new MACs unless restore=true.
//   - A list_changed_blocks whose vdi_to is a live disk plugged into a
//     running VM answers VDI_IN_USE, as the reference says vdi_to must not
//     be attached.
//
// Not simulated: XML-RPC, events, pools of several hosts (HOST_IS_SLAVE
// only through FailNext), VM.clone/copy/revert, VDI.snapshot/resize,
// writes over NBD, export_raw_vdi/import_raw_vdi formats other than raw
// and vhd (export) and raw (import), import of a VHD.
package xapisim
