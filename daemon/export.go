package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ahvfs/ahvfs/console"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/export"
)

// KindExport is an export the console asked for.
const KindExport = "export"

// exportKeep is how long the console's exports stay on disk.
const exportKeep = 7 * 24 * time.Hour

// exportTask is what a console export converts.
type exportTask struct {
	point string // VM@TIME
	uuid  string // the VM's
	o     export.Options
}

// Export checks an export's options and its restore point now, then
// queues it.
func (c consoleSource) Export(ctx context.Context, vm, uuid, at string, req console.ExportRequest, by string) (string, error) {
	d := c.d
	dir := d.config().HTTP.ExportDir
	if dir == "" {
		return "", console.Invalid(errors.New("this daemon has no [http] export_dir: no exports from the console (ahvfs export on the host)"))
	}
	o := export.Options{Format: req.Format, Disks: req.Disks, OutDir: dir}
	if err := o.Validate(); err != nil {
		return "", console.Invalid(err)
	}
	rp, err := c.point(ctx, vm, uuid, at)
	if err != nil {
		return "", err
	}
	t := &task{kind: KindExport, by: by, onlyNames: []string{vm}, export: &exportTask{point: rp.Name(), uuid: rp.VMUUID, o: o}}
	id, err := d.enqueue(t, KindExport, "", func(q *task) bool {
		return q.kind == KindExport && q.export.point == rp.Name()
	}, fmt.Sprintf("an export of %s is already queued or running", rp.Name()))
	if err != nil {
		return "", err
	}
	d.live.vm(id, vm, rp.VMUUID)
	return id, nil
}

// exportJob converts a restore point into export_dir/JOB/, after removing
// exports older than exportKeep, and records it.
func (d *Daemon) exportJob(ctx context.Context, cfg *Config, t *task) bool {
	et := t.export
	job := d.startJob(t, KindExport, "")
	jv := engine.JobVM{VM: t.onlyNames[0], UUID: et.uuid, RestorePoint: et.point, Result: engine.JobOK}
	log := d.live.logger(d.log.With("job", job.ID, "kind", KindExport), job.ID, d.stats.uuidOf)
	err := func() error {
		removeOldExports(et.o.OutDir, d.clock.Now(), log.Warn)
		r, err := d.o.OpenRepo(ctx, cfg, false)
		if err != nil {
			return fmt.Errorf("open the repository: %w", err)
		}
		defer r.Close()
		rp, err := r.Resolve(ctx, et.point)
		if err != nil {
			return err
		}
		o := et.o
		o.OutDir, o.Logger = filepath.Join(o.OutDir, job.ID), log
		o.Progress = diskProgress(d.live.vm(job.ID, jv.VM, et.uuid), len(rp.Disks))
		log.Info("export started", "vm", jv.VM, "point", et.point, "format", cmpOr(o.Format, export.FormatQCOW2))
		res, err := export.Export(ctx, r, rp, o)
		if err != nil {
			os.RemoveAll(o.OutDir)
			return err
		}
		jv.BytesRead = res.Bytes
		job.Notes = append(job.Notes, res.Notes...)
		return nil
	}()
	return d.recordOne(ctx, job, jv, err)
}

// removeOldExports removes the exports under dir (directories named as
// job IDs, nothing else) older than exportKeep.
func removeOldExports(dir string, now time.Time, warn func(string, ...any)) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() || !validJobID(e.Name()) {
			continue // not an export: never touched
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > exportKeep {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				warn("old export not removed", "dir", e.Name(), "err", err)
			}
		}
	}
}

// exportFiles lists the files of a job's export, if it has one.
func (d *Daemon) exportFiles(jobID string) []string {
	dir := d.config().HTTP.ExportDir
	if dir == "" || !validJobID(jobID) {
		return nil
	}
	ents, err := os.ReadDir(filepath.Join(dir, jobID))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// validJobID reports an ID as engine.NewJobID makes them, safe as a file
// name.
func validJobID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// JobFile opens a file of a job's export.
func (c consoleSource) JobFile(_ context.Context, jobID, name string) (console.ReadSeekCloser, error) {
	if !slices.Contains(c.d.exportFiles(jobID), name) {
		return nil, fmt.Errorf("job %s has no file %q: %w", jobID, name, fs.ErrNotExist)
	}
	return os.Open(filepath.Join(c.d.config().HTTP.ExportDir, jobID, name))
}
