// Package nutanix is the Prism API client of ahvfs: the one place that
// speaks to Nutanix. Backup and restore jobs use the version-neutral
// Cluster interface (and its narrower parts Inventory, Snapshots, DataPath,
// Provisioner); *Client implements it by forwarding to a backend for the
// API family the cluster offers.
//
// # API families
//
//   - v4 (Prism Central pc.2024.3+ / AOS 7): vmm (VMs, guest tools,
//     images), dataprotection (recovery points; changed regions through
//     discover-cluster on PC then compute-changed-regions on the PE it
//     names, authorised by the returned JWT as the NTNX_IGW_SESSION
//     cookie), volumes (volume groups cloned from a DISK_RECOVERY_POINT,
//     or of blank disks on a STORAGE_CONTAINER for a restore to write;
//     attach/detach-iscsi-client), prism (tasks), clustermgmt (Data
//     Services IP, storage containers), networking (subnets). Restored VM
//     disks are clones of volume group disks (VolumeDiskReference). Every v4 request carries an
//     NTNX-Request-Id; updates and deletes send the entity's ETag as
//     If-Match; lists page with $page/$limit.
//   - v3 (+ v2.0) on Prism Element: vms, vm_snapshots, data/changed_regions
//     (next_offset paging), images, tasks; v2.0 for the cluster's Data
//     Services IP, snapshots when vm_snapshots is not served, storage
//     containers, and volume groups created with clone_config (backup) or
//     create_config (restore: blank disks) and exposed with /open and
//     /close; v3 VM disks clone a VG disk as a vm_disk data source naming
//     its vmdisk_uuid.
//
// Options.API = auto probes the namespaces (Client.Probe) and picks v4 when
// all the ones the jobs need answer, else v3/v2, and reports why
// (ProbeReport). A namespace that gives no answer (a 5xx after the
// retries, a timeout) fails the probe rather than make it choose less:
// a fallback to v3 would move every VM's chain to another API.
//
// # Vocabulary
//
// A snapshot is a v3 vm_snapshot or a v4 recovery point; its disks are
// snapshot files (v3 snapshot_file_path) or disk recovery points (v4). A
// reference snapshot is the earlier snapshot changed regions are computed
// against. A region is a byte range of a disk, REGULAR (holds data) or
// ZEROED (reads as zeros). The Data Services IP (DSIP) is the cluster's
// iSCSI discovery and login portal (port 3260); a temporary volume group
// exposes one snapshot disk as a LUN to the backup host's initiator.
//
// # HTTP
//
// One *http.Client per Client, with TLS verification on (system roots plus
// Options.CACertFile; Options.Insecure warns). Its transport is a chain of
// decorators (see transport.go): NTNX-Request-Id, retries, a client-side
// rate limit, Basic auth then session cookie with re-authentication on
// 401, and debug logging with credentials redacted. Failures are
// *APIError values carrying the HTTP status, Prism's code, reason and
// message, and the number of attempts made; ErrNotFound, ErrUnauthorized,
// ErrForbidden, ErrConflict, ErrTLSVerify, ErrUnsupported and
// ErrTaskTimeout are matched with errors.Is. Tasks are polled until
// terminal within Options.TaskTimeout.
//
// # Retries
//
// The transport is the one place that retries, and callers must not send
// a failed request again. A request that is safe to repeat (GET, PUT,
// DELETE, a POST that reads, one carrying a client-chosen idempotency key:
// every v4 request's NTNX-Request-Id, a v3 create's metadata.uuid) is
// sent up to Options.MaxAttempts times (default 5, all within
// Options.RetryBudget, default 2m) after 429, 500, 502, 503, 504, a
// timeout or a reset connection, with jittered exponential backoff
// honouring Retry-After. Any other request is sent once (except after a
// 429, which the server did not act on). The full policy is written down
// at the top of transport.go.
//
// # Deletes
//
// Deletes are idempotent but never report a deletion that did not
// happen: a 404 (or a delete task that cannot be found) counts as "gone"
// only when a read of the object answers 404 too, and an object the
// backend cannot address is an error. A snapshot's API says where it
// lives (Snapshot.API: APIV4 recovery point, APIV3 vm_snapshot, APIV2
// v2.0 snapshot); GetSnapshot and DeleteSnapshot take only an ID, so they
// look in every snapshot namespace the endpoint serves, whichever API the
// client selected, and report "not found" only when all of them say so
// (deletes.go).
//
// Passwords come only from a file or the environment (AHVFS_PASSWORD_FILE,
// AHVFS_PASSWORD), never from command-line arguments.
package nutanix
