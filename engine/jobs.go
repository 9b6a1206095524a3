package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// Job history (docs/FORMAT.md, "Job history"). Every job the daemon runs
// (a backup, a prune, a sync, a verify) leaves a record file
// records/job/<id>.rec saying when it ran, how it ended and what it did to
// each VM. Like holds, job records are written without the writer lock
// (a job that failed to open the repository for writing is history too)
// and are not indexed: Jobs lists them from the store. An ID starts with
// the job's start time, so the listing's order is the jobs' order.
const (
	dirJobs       = "records/job"
	prefixJobs    = dirJobs + "/"
	recordKindJob = 'j'
	jobVersion    = 1
	// jobTempAge is the age beyond which a writer removes a job record's
	// temporary file (see holdTempAge).
	jobTempAge = 10 * time.Minute
	// OrphanJobAge is how long PruneJobs keeps the history of VMs that
	// have no restore point left (and of jobs that name no VM when the
	// repository has none).
	OrphanJobAge = 90 * 24 * time.Hour
)

// Job results.
const (
	JobOK        = "ok"        // everything the job set out to do was done
	JobPartial   = "partial"   // some VMs failed, others succeeded
	JobFailed    = "failed"    // nothing was done, or every VM failed
	JobCancelled = "cancelled" // stopped (daemon shutdown) before it ended
	JobDamaged   = "damaged"   // the record could not be read
)

// Job is the record of one job run.
type Job struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// Kind is what ran: backup, prune, sync, verify.
	Kind string `json:"kind"`
	// Policy is the daemon policy that ran it, Trigger why it ran
	// (schedule, missed, start, manual).
	Policy  string `json:"policy,omitempty"`
	Trigger string `json:"trigger,omitempty"`
	// Target is the DR target of a sync.
	Target string    `json:"target,omitempty"`
	Host   string    `json:"host,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Result string    `json:"result"`
	// Error is what stopped the whole job, or the first VM error.
	Error string  `json:"error,omitempty"`
	VMs   []JobVM `json:"vms,omitempty"`
	// BytesRead from the cluster, BytesStored new in the repository (a
	// backup), BytesSent to a DR target (a sync).
	BytesRead   int64 `json:"bytes_read,omitempty"`
	BytesStored int64 `json:"bytes_stored,omitempty"`
	BytesSent   int64 `json:"bytes_sent,omitempty"`
	// Points counts the restore points the job added (backup, sync) or
	// removed (prune).
	Points int `json:"points,omitempty"`
	// Notes are what people should know about an otherwise good run
	// (warnings, VMs reported rather than backed up).
	Notes []string `json:"notes,omitempty"`
}

// JobVM is what a job did to one VM.
type JobVM struct {
	VM           string  `json:"vm"`
	UUID         string  `json:"uuid,omitempty"`
	Result       string  `json:"result"`
	RestorePoint string  `json:"restore_point,omitempty"`
	Level        string  `json:"level,omitempty"`
	BytesRead    int64   `json:"bytes_read,omitempty"`
	BytesStored  int64   `json:"bytes_stored,omitempty"`
	Seconds      float64 `json:"seconds,omitempty"`
	Error        string  `json:"error,omitempty"`
}

func jobRecordName(id string) string { return prefixJobs + id + recordExt }

// NewJobID is the ID of a job that starts at start: 16 hex digits of start
// (ns since the epoch, big-endian, so IDs sort by start) and 16 random
// ones. A job gets it when it starts, so that its log lines carry it.
func NewJobID(start time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(start.UnixNano()))
	rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// AddJob stores the record of a job and returns it with its ID (the one
// it has from NewJobID, else a new one). It needs no writer lock.
func (r *Repository) AddJob(ctx context.Context, j Job) (Job, error) {
	if j.Start.IsZero() || j.Kind == "" || j.Result == "" {
		return Job{}, fmt.Errorf("record job: %w: a job needs a kind, a start and a result", ErrInvalid)
	}
	if j.ID == "" {
		j.ID = NewJobID(j.Start)
	}
	if _, ok := jobIDStart(j.ID); !ok || !validRecordID(j.ID) {
		return Job{}, fmt.Errorf("record job: %w: ID %q is not a job ID", ErrInvalid, j.ID)
	}
	j.V = jobVersion
	j.Start, j.End = j.Start.UTC(), j.End.UTC()
	body, err := json.Marshal(j)
	if err != nil {
		return Job{}, fmt.Errorf("record job: %w", err)
	}
	if err := backend.PutBytes(ctx, r.be, jobRecordName(j.ID), encodeRecordFile(r.fileMeta(), recordKindJob, j.ID, body)); err != nil {
		return Job{}, fmt.Errorf("record %s job of %s: %w", j.Kind, FormatTime(j.Start), err)
	}
	return j, nil
}

// Jobs lists the job records, oldest first. A record that cannot be read
// is returned with its ID, Result JobDamaged and the reason as Error.
func (r *Repository) Jobs(ctx context.Context) ([]Job, error) {
	files, err := r.readRecords(ctx, prefixJobs, recordKindJob)
	if err != nil {
		return nil, err
	}
	out := make([]Job, 0, len(files))
	for _, f := range files {
		var j Job
		err := f.err
		if err == nil {
			err = json.Unmarshal(f.body, &j)
		}
		if err == nil && (j.V != jobVersion || j.ID != f.id) {
			err = fmt.Errorf("%s: record version %d, ID %q", jobRecordName(f.id), j.V, j.ID)
		}
		if err != nil {
			j = Job{ID: f.id, Result: JobDamaged, Error: err.Error()}
			if start, ok := jobIDStart(f.id); ok {
				j.Start = start
			}
		}
		out = append(out, j)
	}
	return out, nil
}

// jobIDStart is the start time an ID carries.
func jobIDStart(id string) (time.Time, bool) {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 16 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))).UTC(), true
}

// RemoveJobs deletes job records; one that is gone already is no error.
func (r *Repository) RemoveJobs(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if !validRecordID(id) {
			return fmt.Errorf("remove job %q: %w: not a job ID", id, ErrInvalid)
		}
		if err := r.be.Delete(ctx, jobRecordName(id)); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("remove job %s: %w", id, err)
		}
	}
	return nil
}

// PruneJobs removes the history that is older than the restore points
// kept: a job goes when every VM it names has a restore point left and
// the oldest of them is newer than the job's end; a job naming no VM goes
// when it ended before the repository's oldest restore point. History
// with nothing left to compare with (VMs without restore points, an empty
// repository) goes after OrphanJobAge. It returns how many records it
// removed.
func (r *Repository) PruneJobs(ctx context.Context, now time.Time) (int, error) {
	jobs, err := r.Jobs(ctx)
	if err != nil {
		return 0, err
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	rps, err := r.ListRestorePoints(ctx, "")
	if err != nil {
		return 0, err
	}
	oldest := map[string]time.Time{}
	var first time.Time
	for _, rp := range rps {
		if t, ok := oldest[rp.VM]; !ok || rp.Time.Before(t) {
			oldest[rp.VM] = rp.Time
		}
		if first.IsZero() || rp.Time.Before(first) {
			first = rp.Time
		}
	}
	orphan := now.Add(-OrphanJobAge)
	before := func(end time.Time, from time.Time, ok bool) bool {
		if !ok {
			return end.Before(orphan)
		}
		return end.Before(from)
	}
	var drop []string
	for _, j := range jobs {
		end := j.End
		if end.IsZero() {
			end = j.Start
		}
		gone := true
		if len(j.VMs) == 0 {
			gone = before(end, first, !first.IsZero())
		}
		for _, v := range j.VMs {
			t, ok := oldest[v.VM]
			if !before(end, t, ok) {
				gone = false
				break
			}
		}
		if gone {
			drop = append(drop, j.ID)
		}
	}
	return len(drop), r.RemoveJobs(ctx, drop)
}
