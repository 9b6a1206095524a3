package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/ahvfs/ahvfs/internal/atomicfile"
	"github.com/cockroachdb/pebble/v2"
)

// Repository directory layout (docs/FORMAT.md). packs/ and quarantine/
// hold objects of the backend (objects.go); the rest is local.
const (
	dirIndex     = "index"     // the live Pebble database (writer only)
	dirSnapshots = "snapshots" // read-only Pebble checkpoints for readers
	dirPacks     = "packs"
	// dirTmp is where ahvfs builds before the backend wrote packs being
	// sealed; every writer empties it (sweepOrphans).
	dirTmp = "tmp"
	// dirQuarantine holds what a writer found unindexed and could not index
	// (unreadable packs, sidecars without a pack), set aside, never deleted.
	dirQuarantine = "quarantine"
	lockName      = "lock"
	currentName   = "CURRENT"
)

// OpenOptions control Open. Zero means default.
type OpenOptions struct {
	// Password opens an encrypted repository.
	Password []byte
	// Writable takes the writer lock; only one process writes at a time.
	Writable bool
	// LockWait is how long to wait for the writer lock (default 0: fail at
	// once with ErrLocked).
	LockWait time.Duration
	// CacheBytes bounds the cache of decoded chunks (default 256 MiB).
	CacheBytes int64
	// Logger receives debug and warning lines (default: discard).
	Logger *slog.Logger
	// Workers bounds hashing/compression and read-ahead parallelism
	// (default: the number of CPUs).
	Workers int
	// Backend holds the repository's packs, sidecars, record files,
	// config.json and quarantine/ (default nil: a backend.Local of the
	// repository directory, the layout of docs/FORMAT.md). The index,
	// checkpoints, lock and journal stay in the directory whatever it is.
	// The caller closes a Backend it gives. Tests give a backend.Faulty.
	Backend backend.Backend
	// Remote says that Backend is shared with other hosts (S3-compatible
	// object storage; docs/FORMAT.md, "Shared repositories"). The
	// directory is then this host's cache: the index and checkpoints live
	// in its subdirectory named by the repository's ID, built from the
	// backend when missing and brought up to date with it at every open;
	// and the process holds a lock object in the backend while it is open.
	Remote bool
	// OwnBackend hands Backend over to the repository: Close, or a failed
	// Open, closes it.
	OwnBackend bool
	// StateDir (Remote) is where this host keeps what it must not lose
	// with its cache: the journal of temporary cluster objects, in
	// StateDir/<repository ID>/ (default: the cache directory).
	StateDir string
	// Exclusive (Remote, Writable) takes the exclusive lock object gc
	// needs: no other process of any host has the repository open.
	Exclusive bool

	repair *repairRun // RepairIndex: rebuild the index instead of opening it
	// held is the lock object a reader's open already holds when it brings
	// the cache up to date through a writer's open.
	held *repoLock
}

// Repository is an open ahvfs repository. Reading methods are safe for
// concurrent use. A repository opened Writable also accepts restore points;
// one opened for reading sees the state as of the last commit and can
// Refresh to see newer ones.
type Repository struct {
	// forgetMu makes the forgets of one process run one at a time: a
	// forget backing out of a held point deletes tombstones another
	// forget of the same point may rely on (holds.go).
	forgetMu sync.Mutex

	dir   string
	be    backend.Backend // the immutable files (objects.go)
	ownBe bool            // be was opened by Open, which closes it
	cfg   *Config
	log   *slog.Logger
	hash  hasher
	codec *codec
	// keys are the encryption keys (nil: not encrypted); meta seals the
	// catalog with them once the index is of version 3 (see useIndexVersion).
	keys     *keys
	meta     metaCrypt
	repair   *repairRun // set while RepairIndex opens the repository
	writable bool
	workers  int
	// remote: the backend is shared with other hosts and dir is this
	// host's cache (OpenOptions.Remote); rlock is the lock object held
	// while open, ownLock whether Close releases it.
	remote      bool
	exclusive   bool
	rlock       *repoLock
	ownLock     bool
	opts        OpenOptions // how it was opened (a shared reader's catch-up opens the cache again)
	catchMu     sync.Mutex
	lastCatchUp time.Time
	// listedPacks are the pack IDs the last listing of packs/ found
	// (remote: packs the index holds and the backend lacks are unindexed).
	listedPacks map[PackID]bool

	mu       sync.RWMutex // guards db and snap across Refresh
	db       *pebble.DB
	snap     *os.File // reader: the shared lock on the open checkpoint
	snapGen  uint64
	lockFile *os.File // writer: the exclusive repository lock

	files  *packFiles
	chunks *chunkCache
	// storedBufs recycles the buffers blobs are read into from packs
	// (*[]byte); decoding copies out of them.
	storedBufs sync.Pool
	// sidecars holds spare buffers of parity sidecars for AdoptPack.
	sidecars  chan []byte
	pages     *pageCache
	pw        *packWriter // writer only
	dirty     atomic.Bool // writer: index changed since the last publish
	publishMu sync.Mutex  // serialises publish
	closed    bool

	bg bgWork // read-ahead and other work that outlives its caller
}

// bgWork runs background goroutines that must end before the repository
// closes its index: Close cancels their context and waits for them.
type bgWork struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing bool
}

// spawn runs fn in a goroutine with a context that Close cancels, unless
// the repository is closing; it reports whether fn was started.
func (b *bgWork) spawn(fn func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithCancel(context.Background())
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn(b.ctx)
	}()
	return true
}

// stop refuses new work, cancels what runs and waits for it.
func (b *bgWork) stop() {
	b.mu.Lock()
	b.closing = true
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Init creates a repository in dir, which must not exist or be empty.
// config.json goes to o.Backend (default: a backend.Local of dir), the
// index and its first checkpoint to dir.
func Init(ctx context.Context, dir string, o InitOptions) (*Config, error) {
	be := o.Backend
	o.setDefaults()
	var master []byte
	if src := o.CopyFrom; src != nil {
		c := src.cfg
		o.ChunkSize, o.PageEntries, o.PackSize, o.Compression = c.ChunkSize, c.PageEntries, c.PackSize, c.Compression
		o.ParityData, o.ParityShards, o.ShardSize = c.Parity.Data, c.Parity.Parity, c.Parity.ShardSize
		switch {
		case src.keys != nil && len(o.Password) == 0:
			return nil, fmt.Errorf("init %s: %w: the source repository is encrypted: give the new repository a password (it may differ from the source's)", dir, ErrInvalid)
		case src.keys == nil && len(o.Password) > 0:
			return nil, fmt.Errorf("init %s: %w: the source repository is not encrypted, so a copy of its parameters cannot be (its chunk IDs would differ)", dir, ErrInvalid)
		case src.keys != nil:
			master = src.keys.master
		}
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("init %s: %w: %w", dir, ErrInvalid, err)
	}
	id := newRepoID()
	if o.Remote {
		if be == nil {
			return nil, fmt.Errorf("init %s: Remote needs a Backend", dir)
		}
		dir = CacheDir(dir, id)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("init %s: %w: the directory is not empty", dir, ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if be == nil {
		l, err := backend.OpenLocal(dir)
		if err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
		defer l.Close()
		be = l
	}
	if _, err := be.Stat(ctx, configName); err == nil {
		if o.Remote {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("init %s: %w: %s holds a repository", dir, ErrExists, be)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	c := &Config{Format: FormatVersion, ID: id, Created: time.Now().UTC(), ChunkSize: o.ChunkSize,
		PageEntries: o.PageEntries, PackSize: o.PackSize, Compression: o.Compression, Hash: "blake3"}
	c.Parity.Data, c.Parity.Parity, c.Parity.ShardSize = o.ParityData, o.ParityShards, o.ShardSize
	if len(o.Password) > 0 {
		enc, _, err := newEncryption(o.Password, master, o.KDF)
		if err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
		c.Encryption = enc
	}
	// packs/ and tmp/ are made for older ahvfs builds, whose writers
	// expect them.
	for _, d := range []string{dirPacks, dirTmp, dirSnapshots} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("init %s: %w", dir, err)
		}
	}
	db, err := pebble.Open(filepath.Join(dir, dirIndex), pebbleOptions(slog.New(slog.DiscardHandler), false, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("init %s: create index: %w", dir, err)
	}
	if err := db.Set([]byte{keyVersion}, []byte{indexVersion}, pebble.Sync); err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if _, err := publishCheckpoint(db, dir, 0); err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	// config.json is written last: a directory without it is not a repository.
	if err := backend.PutBytes(ctx, be, configName, encodeConfig(c)); err != nil {
		return nil, fmt.Errorf("init %s: %w", dir, err)
	}
	return c, nil
}

// Open opens the repository in dir.
func Open(ctx context.Context, dir string, o OpenOptions) (_ *Repository, err error) {
	be, own, err := openBackend(dir, o.Backend)
	if err != nil {
		return nil, err
	}
	own = own || o.OwnBackend
	if own {
		defer func() {
			if err != nil {
				be.Close()
			}
		}()
	}
	cfg, err := loadConfig(ctx, be, dir)
	if err != nil {
		return nil, err
	}
	if o.Remote {
		if o.Backend == nil {
			return nil, errors.New("open repository: Remote needs a Backend")
		}
		if dir, err = cacheDir(dir, cfg.ID); err != nil {
			return nil, err
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 256 << 20
	}
	if o.Workers <= 0 {
		o.Workers = numCPU()
	}
	r := &Repository{dir: dir, be: be, ownBe: own, cfg: cfg, log: o.Logger, writable: o.Writable, workers: o.Workers, repair: o.repair,
		remote: o.Remote, exclusive: o.Exclusive && o.Writable, rlock: o.held, opts: o, lastCatchUp: time.Now()}
	defer r.guardOpen(&err)
	var k *keys
	if cfg.Encryption != nil {
		master, err := cfg.Encryption.unwrap(o.Password)
		if err != nil {
			return nil, fmt.Errorf("open repository %s: %w", dir, err)
		}
		if k, err = deriveKeys(master); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", dir, err)
		}
		r.hash.key = k.idKey
		r.keys = k
	}
	if r.codec, err = newCodec(cfg.Compression, k); err != nil {
		return nil, err
	}
	r.files = newPackFiles(be, 256)
	r.chunks = newChunkCache(o.CacheBytes, r.cfg.ChunkSize)
	r.storedBufs.New = func() any { b := make([]byte, 0, maxEncodedLen(r.cfg.ChunkSize)); return &b }
	r.pages = newPageCache(4096)
	r.sidecars = make(chan []byte, 4)
	switch {
	case o.Writable:
		err = r.openWriter(ctx, o.LockWait)
	case o.Remote:
		err = r.openRemoteReader(ctx, o)
	default:
		err = r.openReader()
	}
	if err != nil {
		r.codec.close()
		r.files.close()
		if r.ownLock {
			r.rlock.release()
		}
		return nil, err
	}
	return r, nil
}

func (r *Repository) openWriter(ctx context.Context, wait time.Duration) error {
	catchUp := r.opts.held != nil
	f, err := lockRepo(ctx, r.dir, wait, r.keys != nil, catchUp, !catchUp || !hasCheckpoint(r.dir))
	if err != nil {
		return err
	}
	r.lockFile = f
	if r.remote && r.rlock == nil {
		l, err := acquireRepoLock(ctx, r.be, r.exclusive, wait, lockCmd(), r.log)
		if err != nil {
			f.Close()
			return err
		}
		r.rlock, r.ownLock = l, true
	}
	fail := func(err error) error {
		if r.pw != nil {
			r.pw.close()
		}
		if r.db != nil {
			r.db.Close()
			r.db = nil
		}
		f.Close()
		return err
	}
	if err := r.sweepTemp(ctx); err != nil {
		return fail(err)
	}
	if err := finishIndexSwap(r.dir); err != nil {
		return fail(err)
	}
	switch {
	case r.repair != nil:
		err = r.rebuildIndex(ctx)
	case r.remote && !indexExists(r.dir):
		r.log.Info("this host's cache of the repository has no index: building it from " + r.be.String())
		err = r.rebuildIndex(ctx)
	default:
		err = r.openLiveIndex(ctx)
	}
	if err != nil {
		return fail(err)
	}
	if err := r.reconcileLocks(ctx); err != nil {
		return fail(err)
	}
	if err := r.resumeForgets(ctx); err != nil {
		return fail(err)
	}
	if err := r.reconcileRecords(ctx); err != nil {
		return fail(err)
	}
	if r.remote {
		// Packs listed after the records: every pack a record names was
		// stored before the record, so this listing finds it.
		if err := r.catchUpPacks(ctx); err != nil {
			return fail(err)
		}
	}
	if err := fault(fpReconciled); err != nil {
		return fail(err)
	}
	r.pw = newPackWriter(r)
	// A writer killed between its last commit and publishing it left
	// readers behind: publish what the index holds now. A shared
	// reader's catch-up (held) publishes only what it changed, when it
	// closes: it runs at every open of a reader, and the next writer
	// publishes for a killed one.
	if r.opts.held == nil || !hasCheckpoint(r.dir) {
		if err := r.publish(); err != nil {
			return fail(fmt.Errorf("publish index of %s: %w", r.dir, err))
		}
	}
	return nil
}

// hasCheckpoint reports whether dir has a published checkpoint.
func hasCheckpoint(dir string) bool {
	_, err := readCurrent(dir)
	return err == nil
}

// openLiveIndex opens the writer's index, upgrades an older one, and
// indexes the packs it does not know (sweepOrphans).
func (r *Repository) openLiveIndex(ctx context.Context) error {
	path := filepath.Join(r.dir, dirIndex)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open repository %s: %w: the index (%s/) is missing; run 'ahvfs repair index' to rebuild it from the packs and record files", r.dir, ErrCorrupt, dirIndex)
	}
	db, err := openIndex(path, pebbleOptions(r.log, false, 64<<20))
	if err != nil {
		return fmt.Errorf("open index of %s: %w", r.dir, err)
	}
	r.db = db
	v, err := checkIndexVersion(db)
	if err != nil {
		return err
	}
	// Rewriting the format record starts this open's manifest (see
	// startManifest).
	if err := startManifest(db); err != nil {
		return fmt.Errorf("index of %s: %w", r.dir, err)
	}
	if !r.remote { // remote: catchUpPacks runs after the records
		if err := r.sweepOrphans(ctx); err != nil {
			return err
		}
	}
	if v < indexVersion || r.cfg.Format < FormatVersion {
		return r.upgrade(ctx, v)
	}
	r.useIndexVersion(v)
	return nil
}

// useIndexVersion sets how the catalog is read: sealed with the metadata
// key from index version 3 on, in the clear before.
func (r *Repository) useIndexVersion(v byte) {
	if v >= 3 {
		r.meta = metaCrypt{k: r.keys}
	} else {
		r.meta = metaCrypt{}
	}
}

// checkIndexVersion returns the index's format version, or an error when
// it is missing or newer than this build reads.
func checkIndexVersion(db pebble.Reader) (byte, error) {
	v, err := getValue(db, []byte{keyVersion})
	if err != nil {
		return 0, fmt.Errorf("%w: no format record (%w)", ErrIndexDamaged, err)
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("%w: format record of %d bytes", ErrIndexDamaged, len(v))
	}
	if v[0] > indexVersion {
		return v[0], fmt.Errorf("%w: index format %d, this ahvfs reads up to %d; upgrade ahvfs", ErrNewerFormat, v[0], indexVersion)
	}
	return v[0], nil
}

// catchUpMark ends the lock file of a reader's catch-up (see lockRepo).
const catchUpMark = "(a reader bringing this host's cache up to date)"

// catchUpWait bounds how long a writer waits for a reader's catch-up.
var catchUpWait = time.Minute

// lockRepo takes the exclusive writer lock (flock: released by the kernel
// when the holder dies, so a killed process never holds it forever). The
// lock file names the holder's command line, only its command when the
// repository is encrypted (its arguments may name a VM).
//
// catchUp marks a reader of a shared repository bringing this host's cache
// up to date: that takes seconds, and a patient caller (a writer, or a
// reader whose cache has no checkpoint yet) finding it there waits up to
// catchUpWait for it rather than failing.
func lockRepo(ctx context.Context, dir string, wait time.Duration, encrypted, catchUp, patient bool) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	start := time.Now()
	deadline := start.Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		holder, _ := os.ReadFile(path)
		if patient && bytes.Contains(holder, []byte(catchUpMark)) && deadline.Before(start.Add(catchUpWait)) {
			deadline = start.Add(catchUpWait)
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w (%s); wait for it to finish", ErrLocked, strings.TrimSpace(string(holder)))
			}
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	host, _ := os.Hostname()
	args := os.Args
	if encrypted {
		args = args[:min(len(args), 2)]
	}
	info := fmt.Sprintf("pid %d on %s since %s: %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339), strings.Join(args, " "))
	if catchUp {
		info += " " + catchUpMark
	}
	info += "\n"
	f.Truncate(0)
	f.WriteAt([]byte(info), 0)
	return f, nil
}

// openReader opens the newest published checkpoint, read-only.
func (r *Repository) openReader() error {
	for attempt := 0; ; attempt++ {
		db, lock, gen, err := openCheckpoint(r.dir, r.log)
		if err == nil {
			r.db, r.snap, r.snapGen = db, lock, gen
			v, err := checkIndexVersion(db)
			r.useIndexVersion(v)
			return err
		}
		if !errors.Is(err, errCheckpointGone) || attempt > 20 {
			return err
		}
	}
}

// Refresh makes a reader see restore points committed since it opened. It
// reports whether anything changed. On a writer it does nothing.
func (r *Repository) Refresh(ctx context.Context) (_ bool, err error) {
	defer r.guardIndex(&err, "refresh")
	if r.writable {
		return false, nil
	}
	if r.remote {
		r.catchUpForRefresh(ctx)
	}
	gen, err := readCurrent(r.dir)
	if err != nil {
		return false, err
	}
	r.mu.RLock()
	same := gen == r.snapGen
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	var db *pebble.DB
	var lock *os.File
	for attempt := 0; ; attempt++ {
		db, lock, gen, err = openCheckpoint(r.dir, r.log)
		if err == nil {
			break
		}
		if !errors.Is(err, errCheckpointGone) || attempt > 20 {
			return false, err
		}
	}
	v, err := checkIndexVersion(db)
	if err != nil {
		db.Close()
		lock.Close()
		return false, err
	}
	r.mu.Lock()
	oldDB, oldLock := r.db, r.snap
	r.db, r.snap, r.snapGen = db, lock, gen
	r.useIndexVersion(v)
	r.mu.Unlock()
	closeIndex(oldDB)
	oldLock.Close()
	return true, nil
}

// Config returns the repository's format parameters.
func (r *Repository) Config() Config { return *r.cfg }

// Dir is the repository directory (of a shared repository, this host's
// cache of it).
func (r *Repository) Dir() string { return r.dir }

// StateDir is where this host keeps its state of the repository that is
// no cache (the journal of temporary cluster objects): the repository
// directory, or for a shared repository OpenOptions.StateDir/<ID>.
func (r *Repository) StateDir() (string, error) {
	if !r.remote || r.opts.StateDir == "" {
		return r.dir, nil
	}
	d := filepath.Join(r.opts.StateDir, r.cfg.ID)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return d, nil
}

// Location names the repository for messages: its directory, or its
// backend when it is shared.
func (r *Repository) Location() string {
	if r.remote {
		return r.be.String()
	}
	return r.dir
}

// ChunkSize is the repository's chunk size in bytes.
func (r *Repository) ChunkSize() int { return r.cfg.ChunkSize }

// Writable reports whether the repository was opened for writing.
func (r *Repository) Writable() bool { return r.writable }

// Close releases the repository. A writer's pending data that no restore
// point committed is flushed, so its chunks are not lost work.
func (r *Repository) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.bg.stop()
	var errs []error
	if r.pw != nil {
		errs = append(errs, r.pw.close())
		if r.dirty.Load() {
			errs = append(errs, r.publish())
		}
	}
	r.mu.Lock()
	if r.db != nil {
		errs = append(errs, closeIndex(r.db))
	}
	if r.snap != nil {
		r.snap.Close()
	}
	r.mu.Unlock()
	r.files.close()
	r.codec.close()
	if r.chunks != nil {
		r.chunks.clear()
	}
	if r.ownLock {
		r.rlock.release() // before the backend closes: it deletes the lock object
	}
	if r.ownBe {
		errs = append(errs, r.be.Close())
	}
	if r.lockFile != nil {
		r.lockFile.Truncate(0)
		r.lockFile.Close()
	}
	return errors.Join(errs...)
}

// reader returns the current Pebble handle for a read; release with done.
func (r *Repository) reader() (db *pebble.DB, done func()) {
	r.mu.RLock()
	return r.db, r.mu.RUnlock
}

// --- checkpoints --------------------------------------------------------

var errCheckpointGone = errors.New("checkpoint removed while opening")

func readCurrent(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, dirSnapshots, currentName))
	if err != nil {
		return 0, fmt.Errorf("open repository %s: %w: no published index (%v); any writer publishes it again, or run 'ahvfs repair index'", dir, ErrCorrupt, err)
	}
	gen, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("open repository %s: %w: snapshots/CURRENT: %v", dir, ErrCorrupt, err)
	}
	return gen, nil
}

func genName(gen uint64) string { return fmt.Sprintf("%016d", gen) }

// openCheckpoint takes a shared lock on the newest checkpoint and opens it.
func openCheckpoint(dir string, log *slog.Logger) (*pebble.DB, *os.File, uint64, error) {
	gen, err := readCurrent(dir)
	if err != nil {
		return nil, nil, 0, err
	}
	base := filepath.Join(dir, dirSnapshots, genName(gen))
	lock, err := os.Open(base + ".lock")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, 0, errCheckpointGone
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("open checkpoint %s: %w", base, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		lock.Close()
		return nil, nil, 0, fmt.Errorf("lock checkpoint %s: %w", base, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(lock.Fd()), &st); err != nil || st.Nlink == 0 {
		lock.Close()
		return nil, nil, 0, errCheckpointGone
	}
	err = checkCheckpointSums(base)
	var db *pebble.DB
	if err == nil {
		db, err = openIndex(base, pebbleOptions(log, true, 32<<20))
	}
	if err != nil {
		lock.Close()
		if _, serr := os.Stat(base); errors.Is(serr, os.ErrNotExist) {
			return nil, nil, 0, errCheckpointGone
		}
		return nil, nil, 0, fmt.Errorf("open checkpoint %s: %w", base, err)
	}
	return db, lock, gen, nil
}

// publishCheckpoint makes the writer's current index visible to readers as
// generation prev+1 and removes older checkpoints no reader holds.
func publishCheckpoint(db *pebble.DB, dir string, prev uint64) (uint64, error) {
	snaps := filepath.Join(dir, dirSnapshots)
	if err := os.MkdirAll(snaps, 0o700); err != nil {
		return 0, err
	}
	// A writer killed mid-publish may have left a newer, never-published
	// generation: go past every generation on disk.
	gen := prev + 1
	if cur, err := readCurrent(dir); err == nil && cur >= gen {
		gen = cur + 1
	}
	if entries, err := os.ReadDir(snaps); err == nil {
		for _, e := range entries {
			if g, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".lock"), 10, 64); err == nil && g >= gen {
				gen = g + 1
			}
		}
	}
	tmp := filepath.Join(snaps, ".tmp-"+genName(gen))
	// Flushed first, a checkpoint holds every record in checksummed tables
	// and none in a write-ahead log, where Pebble takes damage at the tail
	// for a torn write and stops reading without an error.
	if err := db.Flush(); err != nil {
		return 0, fmt.Errorf("flush index: %w", err)
	}
	if err := checkpointVerified(db, tmp); err != nil {
		return 0, err
	}
	if err := writeCheckpointSums(tmp); err != nil {
		return 0, fmt.Errorf("checkpoint index: %w", err)
	}
	if err := fault(fpCheckpointMade); err != nil {
		return 0, err
	}
	final := filepath.Join(snaps, genName(gen))
	if err := os.WriteFile(final+".lock", nil, 0o600); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return 0, err
	}
	if err := atomicfile.SyncDir(snaps); err != nil {
		return 0, err
	}
	if err := fault(fpCheckpointNamed); err != nil {
		return 0, err
	}
	if err := atomicfile.WriteFile(filepath.Join(snaps, currentName), []byte(strconv.FormatUint(gen, 10)+"\n"), 0o600); err != nil {
		return 0, err
	}
	if err := fault(fpCurrentWritten); err != nil {
		return 0, err
	}
	pruneCheckpoints(snaps, gen)
	return gen, nil
}

// checkpointVerified writes a checkpoint of db into dir and opens it as a
// reader will before it may be published: a checkpoint that does not open
// is made once more after startManifest, and never published.
func checkpointVerified(db *pebble.DB, dir string) error {
	var last error
	for attempt := range 2 {
		if attempt > 0 {
			if err := startManifest(db); err != nil {
				return fmt.Errorf("checkpoint index: %w", err)
			}
		}
		os.RemoveAll(dir)
		if err := db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
			return fmt.Errorf("checkpoint index: %w", err)
		}
		c, err := pebble.Open(dir, pebbleOptions(slog.New(slog.DiscardHandler), true, 1<<20))
		if err == nil {
			return c.Close()
		}
		last = err
	}
	os.RemoveAll(dir)
	return fmt.Errorf("checkpoint index: the checkpoint does not open: %w", last)
}

// startManifest rewrites the index format record with the value it holds
// and flushes it, which makes Pebble write a version edit to its manifest.
// Pebble opened on an index whose writer was killed just after it rotated
// its manifest writes none until its first flush, and a checkpoint taken
// before then copies an empty manifest that never opens ("malformed
// manifest"); the writer calls this once after every open
// (testdata/killed-index holds such an index).
func startManifest(db *pebble.DB) error {
	v, err := getValue(db, []byte{keyVersion})
	if errors.Is(err, ErrNotFound) {
		v = []byte{indexVersion}
	} else if err != nil {
		return err
	}
	if err := db.Set([]byte{keyVersion}, v, pebble.Sync); err != nil {
		return err
	}
	return db.Flush()
}

// pruneCheckpoints removes checkpoints older than keep that no reader holds.
func pruneCheckpoints(snaps string, keep uint64) {
	entries, _ := os.ReadDir(snaps)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.RemoveAll(filepath.Join(snaps, name))
			continue
		}
		if !strings.HasSuffix(name, ".lock") {
			continue
		}
		gen, err := strconv.ParseUint(strings.TrimSuffix(name, ".lock"), 10, 64)
		if err != nil || gen >= keep {
			continue
		}
		lockPath := filepath.Join(snaps, name)
		f, err := os.Open(lockPath)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(filepath.Join(snaps, genName(gen)))
			os.Remove(lockPath)
		}
		f.Close()
	}
}

// --- files --------------------------------------------------------------
