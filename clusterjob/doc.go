// Package clusterjob is the cluster-job layer: what every job that touches
// an AHV cluster needs, written once. Backup, restore and every later job
// (instant recovery, failover) use it; the Prism client (nutanix) and the
// iSCSI initiator (iscsi) are its drivers.
//
// # What it holds
//
//   - The VM configuration record (VMConfig): written by backup into every
//     restore point, read by restore, export and the restore-point tree.
//     Versioned; specified in docs/FORMAT.md.
//   - The journal of temporary cluster objects (Journal, Job): every
//     snapshot or recovery point, volume group, iSCSI attachment, image
//     and VM under construction a job creates is recorded, durably, before
//     the call that creates it, and again with its ID once the call
//     returns. Job.Close tears down what is left; a job killed with
//     SIGKILL leaves its entries, and Sweep — run by `ahvfs cleanup` and
//     at the start of every job — deletes what they name, through the API
//     that created each object, and reports only deletions it has seen
//     take effect.
//   - Kept objects (Journal.Keep): objects ahvfs keeps on the cluster on
//     purpose, such as the reference snapshots of incremental backups. A
//     sweep never deletes them.
//   - Attach-a-volume-group-and-open-its-LUNs (Job.Attach), with
//     guaranteed teardown: logout and detach on Close, on failure, and by
//     the sweep after a crash.
//
// # Retries
//
// There is one retry policy, the Prism client's transport (package
// nutanix): it repeats the requests that are safe to repeat. Neither this
// package nor the jobs above it repeat a request. Calls that create
// objects are not idempotent; what a failed one may have left is found by
// its unique name and released.
//
// # Liveness
//
// Each job holds an flock on its journal directory while it runs; a
// sweep claims only directories whose lock it can take, so two jobs on
// one repository never delete each other's objects, and a killed job's
// objects are claimed at once. The journal therefore lives on a local
// filesystem (REPO/journal).
//
// An object whose create call never returned is looked up by its unique
// name, once the tasks the call submitted (Prism's, or XAPI's Async
// tasks) have ended: each is journaled as the cluster accepts it
// (Object.Tasks), so a sweep right after a kill, or the teardown of a
// cancelled job, waits for a snapshot task still running instead of
// missing the snapshot it makes. What remains is a kill within the round
// trip of the create request itself (the cluster accepted it, the answer
// never came): a sweep at that moment may find nothing and drop the
// entry; the object, when it appears, keeps its ahvfs- name. Sweeps
// normally run minutes or hours later (the next job).
//
// # Vocabulary
//
// A temporary object exists only while a job runs. A job's teardown
// releases its objects: deletes them, checks that they are gone, and
// forgets them. A VM under construction becomes the job's result when the
// job forgets it; an overwriting restore commits its replacement before it
// deletes the original, so a crash leaves one of the two VMs, never
// neither.
package clusterjob
