package clusterjob

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/internal/atomicfile"
)

// Journal is the directory that records every temporary cluster object a
// job creates, before the call that creates it (docs/FORMAT.md,
// "Journal"):
//
//	<dir>/<job id>/job.json         which job, pid, host, start
//	<dir>/<job id>/lock             flock(LOCK_EX) held while the job runs
//	<dir>/<job id>/<hash>.json      one Object per file, replaced atomically
//	<dir>/kept/<owner>.json         objects kept on purpose (Keep)
//
// A job whose lock no process holds is dead: Sweep deletes what its
// entries name. Liveness rests on flock, so the journal must be on a
// local filesystem (the repository's).
type Journal struct {
	dir  string
	seal Sealer // nil: files in the clear
}

// OpenJournal opens (creating if needed) the journal in dir, its files in
// the clear.
func OpenJournal(dir string) (*Journal, error) {
	if err := os.MkdirAll(filepath.Join(dir, keptDir), 0o700); err != nil {
		return nil, fmt.Errorf("open journal %s: %w", dir, err)
	}
	return &Journal{dir: dir}, nil
}

// RepositoryJournal opens the journal of a repository, REPO/journal (of a
// shared repository, in this host's state directory: a job's journal is
// this host's, and outlives the cache of the index). In an
// encrypted repository its entries and kept records are sealed with the
// repository's metadata key, and kept records are named by a keyed hash of
// their owner, so the journal names no VM in the clear.
func RepositoryJournal(repo *engine.Repository) (*Journal, error) {
	dir, err := repo.StateDir()
	if err != nil {
		return nil, err
	}
	j, err := OpenJournal(filepath.Join(dir, "journal"))
	if err != nil {
		return nil, err
	}
	if repo.Encrypted() {
		j.seal = repo
	}
	return j, nil
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

const (
	keptDir  = "kept"
	jobFile  = "job.json"
	lockFile = "lock"
)

// jobInfo is job.json.
type jobInfo struct {
	Job     string    `json:"job"`
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
	// Prism is the endpoint the job creates its objects through ("":
	// not recorded, by an older ahvfs or Adopt): a sweep through another
	// Prism leaves the job alone.
	Prism string `json:"prism,omitempty"`
	// Hypervisor is HypervisorXen for a job on an XCP-ng pool (Prism is
	// then its XAPI endpoint), "" for AHV.
	Hypervisor string `json:"hypervisor,omitempty"`
	// Pool is the UUID of an XCP-ng job's pool ("": by an older ahvfs):
	// a sweep knows the pool by it whatever master or address it reaches
	// it through.
	Pool string `json:"pool,omitempty"`
}

// jobDir is one job's directory with the lock its process holds (nil
// when a sweeper holds it instead).
type jobDir struct {
	id   string
	dir  string
	lock *os.File
	seal Sealer
}

// newJobDir creates a job directory and takes its lock; where says the
// endpoint of the job's objects (Prism "": unknown), its hypervisor and an
// XCP-ng job's pool (the rest is filled in here). The directory is made
// under a dot name (which sweeps do not list), locked, given its job.json
// and only then renamed into place, so a sweep never claims a job that is
// starting (it would take the empty directory for a finished job's).
func (j *Journal) newJobDir(kind string, where jobInfo) (*jobDir, error) {
	var b [4]byte
	rand.Read(b[:])
	id := kind + "-" + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	d := &jobDir{id: id, dir: filepath.Join(j.dir, id), seal: j.seal}
	tmp := filepath.Join(j.dir, ".new-"+id)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("journal: create job %s: %w", id, err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("journal: job %s: %w", id, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("journal: lock job %s: %w", id, err)
	}
	d.lock = f
	host, _ := os.Hostname()
	where.Job, where.PID, where.Host, where.Started = kind, os.Getpid(), host, time.Now().UTC()
	info, _ := json.Marshal(where)
	err = atomicfile.WriteFile(filepath.Join(tmp, jobFile), info, 0o600)
	if err == nil {
		err = os.Rename(tmp, d.dir)
	}
	if err != nil {
		d.release()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("journal: job %s: %w", id, err)
	}
	return d, atomicfile.SyncDir(j.dir)
}

// claim takes the lock of a job directory whose process is gone; false
// when a live process holds it, or when the job just finished and took
// its directory away.
func (j *Journal) claim(id string) (*jobDir, bool, error) {
	d := &jobDir{id: id, dir: filepath.Join(j.dir, id), seal: j.seal}
	path := filepath.Join(d.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("journal: job %s: %w", id, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("journal: lock job %s: %w", id, err)
	}
	// The job may have finished between the open and the lock: then the
	// file locked is no longer the one at the path.
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, false, nil
	}
	d.lock = f
	return d, true, nil
}

// jobIDs lists the job directories.
func (j *Journal) jobIDs() ([]string, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != keptDir && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// entryFile is the file of an object: its kind and name hashed, since
// names are the cluster's and may hold any character.
func (d *jobDir) entryFile(o Object) string {
	h := sha256.Sum256([]byte(string(o.Kind) + "\x00" + o.Name))
	return filepath.Join(d.dir, string(o.Kind)+"-"+hex.EncodeToString(h[:8])+".json")
}

// put records o (replacing an earlier record of the same kind and name),
// durably.
func (d *jobDir) put(o Object) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := writeSealed(d.seal, d.entryFile(o), b); err != nil {
		return fmt.Errorf("journal: record %s: %w", o, err)
	}
	return nil
}

// remove forgets o, durably.
func (d *jobDir) remove(o Object) error {
	if err := os.Remove(d.entryFile(o)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: forget %s: %w", o, err)
	}
	if err := atomicfile.SyncDir(d.dir); err != nil {
		return fmt.Errorf("journal: forget %s: %w", o, err)
	}
	return nil
}

// objects reads every object of the job. An undecodable entry is an
// error naming its file: it is never dropped silently.
func (d *jobDir) objects() ([]Object, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: job %s: %w", d.id, err)
	}
	var out []Object
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if n == jobFile || n == lockFile || !strings.HasSuffix(n, ".json") || strings.HasPrefix(n, ".") {
			continue
		}
		b, err := readSealed(d.seal, filepath.Join(d.dir, n))
		if err != nil {
			errs = append(errs, fmt.Errorf("journal: %s/%s: %w", d.id, n, err))
			continue
		}
		var o Object
		if err := json.Unmarshal(b, &o); err != nil || o.Kind == "" || o.Name == "" {
			errs = append(errs, fmt.Errorf("journal: %s/%s: undecodable entry %q", d.id, n, b))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// info reads job.json (zero when unreadable: the job died while
// starting).
func (d *jobDir) info() jobInfo {
	var ji jobInfo
	if b, err := os.ReadFile(filepath.Join(d.dir, jobFile)); err == nil {
		json.Unmarshal(b, &ji)
	}
	return ji
}

// finish removes the job's directory when it records nothing any more,
// then releases the lock. A directory that still records objects stays
// for the sweep.
func (d *jobDir) finish() error {
	objs, err := d.objects()
	if err == nil && len(objs) == 0 {
		// Unlink the lock file last but while holding it: a sweeper
		// that opened it meanwhile finds the directory gone. Temporary
		// files of writes a kill interrupted go too.
		if ents, rerr := os.ReadDir(d.dir); rerr == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
					os.Remove(filepath.Join(d.dir, e.Name()))
				}
			}
		}
		os.Remove(filepath.Join(d.dir, jobFile))
		os.Remove(filepath.Join(d.dir, lockFile))
		if rerr := os.Remove(d.dir); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("journal: remove job %s: %w", d.id, rerr)
		} else {
			err = atomicfile.SyncDir(filepath.Dir(d.dir))
		}
	}
	d.release()
	return err
}

func (d *jobDir) release() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}
