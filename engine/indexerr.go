package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// Damage to the index (docs/FORMAT.md, "Damage to the index"). Pebble
// reports a damaged file as an error it marks as corruption, or, for a few
// kinds of damage, by panicking. The engine turns both into an
// *IndexDamageError that names the file and says what to do, at two kinds
// of place: around pebble.Open (openIndex), and at the public reading
// methods, which defer guardIndex first thing. Verify lists index damage
// among its problems instead of failing.

// ErrIndexDamaged: a file of the index (the Pebble database in index/ or a
// checkpoint in snapshots/) is damaged. Errors that wrap it are
// *IndexDamageError and say to run 'ahvfs repair index'; errors.Is also
// matches them with ErrCorrupt.
var ErrIndexDamaged = fmt.Errorf("%w: index damaged", ErrCorrupt)

// IndexDamageError says which file of the index is damaged and how.
type IndexDamageError struct {
	// Op is what failed ("list restore points"); may be empty.
	Op string
	// Path is the damaged file when Pebble names it, else the checkpoint
	// or index directory.
	Path string
	// Detail is Pebble's description of the damage, on one line.
	Detail string

	live bool  // Path is in the writer's index/, not a reader's checkpoint
	err  error // Pebble's error; nil when Pebble panicked
}

func (e *IndexDamageError) Error() string {
	what := "index checkpoint"
	if e.live {
		what = "index"
	}
	msg := fmt.Sprintf("%s %s is damaged: %s; run 'ahvfs repair index'", what, e.Path, e.Detail)
	if e.Op != "" {
		msg = e.Op + ": " + msg
	}
	return msg
}

// Unwrap makes errors.Is match ErrIndexDamaged, ErrCorrupt and Pebble's
// own error.
func (e *IndexDamageError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrIndexDamaged}
	}
	return []error{ErrIndexDamaged, e.err}
}

// indexEventListener logs the damage Pebble finds, at debug level: Pebble
// also returns it, as an error marked as corruption, to the read that met
// it. Pebble's default calls Logger.Fatalf, which pebbleLogger turns into a
// panic, in whichever goroutine read the damaged block: a reader's (the
// 242-line stack trace of issue 13) or one of Pebble's own background
// goroutines (table statistics, compactions), where nothing can recover it.
func indexEventListener(log *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			log.Debug("index file damaged", "file", info.Path, "err", oneLine(info.Details.Error()))
		},
	}
}

// openIndex is pebble.Open for an existing index or checkpoint. Pebble
// fails to open a damaged one with many kinds of errors, only some of them
// marked as corruption (a damaged OPTIONS file gives "comparer name from
// file ... != ...", a damaged MANIFEST may name a table that does not
// exist): every error but the operating system's (permissions, a missing
// directory) and a newer Pebble format becomes an *IndexDamageError, and
// so does a panic.
func openIndex(dir string, o *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			if !panicFromPebble() {
				panic(p)
			}
			db, err = nil, panicDamage(dir, p)
		}
	}()
	db, err = pebble.Open(dir, o)
	if err != nil && isOpenDamage(err) {
		return nil, damageOf(dir, err)
	}
	return db, err
}

// isOpenDamage reports whether an error of pebble.Open on an existing
// directory means that a file in it is damaged.
func isOpenDamage(err error) bool {
	if pebble.IsCorruptionError(err) {
		return true
	}
	var pe *fs.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) || errors.As(err, &errno) {
		return false
	}
	return !strings.Contains(err.Error(), "format major version")
}

// guardIndex is deferred first thing by the public methods that read the
// index, with their named error result: it turns a panic out of Pebble, or
// an error that shows a damaged index, into an *IndexDamageError for op.
// Deferred first, it runs last, after the method's deferred release of
// r.mu; a method that releases it without defer must not call Pebble in
// between (see indexGet). Panics that do not come from Pebble are
// re-raised: they are bugs, not damage.
func (r *Repository) guardIndex(errp *error, op string) {
	if p := recover(); p != nil {
		if !panicFromPebble() {
			panic(p)
		}
		*errp = r.damaged(op, panicDamage(r.indexDir(), p))
		return
	}
	if *errp != nil {
		*errp = r.damaged(op, *errp)
	}
}

// damaged returns err as an *IndexDamageError for op when it shows damage
// of the index r reads, else err unchanged.
func (r *Repository) damaged(op string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return err // the common error, and never damage
	}
	var d *IndexDamageError
	if errors.As(err, &d) {
		c := *d
		c.Op = op
		return &c
	}
	if pebble.IsCorruptionError(err) {
		d = damageOf(r.indexDir(), err)
		d.Op = op
		return d
	}
	return err
}

// indexDir is the directory of the Pebble database r reads: the writer's
// index/ or the reader's checkpoint (snapshots/ before it opened one).
func (r *Repository) indexDir() string {
	if r.writable {
		return filepath.Join(r.dir, dirIndex)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.snap == nil {
		return filepath.Join(r.dir, dirSnapshots)
	}
	return filepath.Join(r.dir, dirSnapshots, genName(r.snapGen))
}

// guardOpen is deferred by Open once the Repository exists, with Open's
// named error result. A panic out of Pebble while opening leaves files,
// the writer lock or a Pebble handle open: it closes them and returns an
// *IndexDamageError instead. An error that shows a damaged index (Pebble's
// corruption, a missing or unreadable format record) becomes one too.
func (r *Repository) guardOpen(errp *error) {
	if p := recover(); p != nil {
		if !panicFromPebble() {
			panic(p)
		}
		r.abandon()
		*errp = r.damaged("open repository "+r.dir, panicDamage(r.indexDir(), p))
		return
	}
	err := *errp
	if err == nil {
		return
	}
	var d *IndexDamageError
	switch {
	case errors.As(err, &d):
		*errp = r.damaged("open repository "+r.dir, err)
	case errors.Is(err, ErrIndexDamaged) || pebble.IsCorruptionError(err):
		d = damageOf(r.indexDir(), err)
		d.Op = "open repository " + r.dir
		*errp = d
	}
	if !r.writable && r.db != nil {
		// The checkpoint opened, but what it holds is not an index.
		closeIndex(r.db)
		r.snap.Close()
	}
}

// closeIndex closes a Pebble handle. One that panicked in a read may
// panic again on Close ("element has outstanding references": the read
// never released the table it held); that becomes an error.
func closeIndex(db *pebble.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("close index: Pebble panicked: %s", oneLine(fmt.Sprint(p)))
		}
	}()
	return db.Close()
}

// abandon closes what a failed open left open, ignoring errors and the
// panics of a Pebble handle in an unknown state.
func (r *Repository) abandon() {
	closeQuietly := func(fn func()) {
		defer func() { recover() }()
		fn()
	}
	if r.pw != nil {
		closeQuietly(func() { r.pw.close() })
	}
	if r.db != nil {
		closeIndex(r.db)
	}
	if r.snap != nil {
		r.snap.Close()
	}
	if r.lockFile != nil {
		r.lockFile.Close()
	}
	r.codec.close()
	r.files.close()
}

// indexGet reads key from the index for a reader, released before it
// returns even when Pebble panics.
func (r *Repository) indexGet(key []byte) (v []byte, err error) {
	defer r.guardIndex(&err, "")
	db, done := r.reader()
	defer done()
	return getValue(db, key)
}

// readerOnce is reader with a done that may be called more than once, for
// a method that releases the index before it returns and defers done too,
// so that a panic does not leave r.mu held.
func (r *Repository) readerOnce() (*pebble.DB, func()) {
	db, done := r.reader()
	return db, sync.OnceFunc(done)
}

// packsForVerify lists the packs the index names. Damage that stops the
// listing is added to the report's problems, and the packs listed before
// it are returned, so that Verify checks what it can.
func (r *Repository) packsForVerify(rep *VerifyReport) (packs []packInfo, err error) {
	err = func() (err error) {
		defer r.guardIndex(&err, "list packs")
		db, done := r.reader()
		defer done()
		packs, err = listPacks(db)
		return err
	}()
	if errors.Is(err, ErrIndexDamaged) {
		rep.Problems = append(rep.Problems, err.Error())
		return packs, nil
	}
	return packs, err
}

// noteDamage adds err to the report's problems when it is damage of the
// index not yet listed (Verify counts a chunk whose lookup fails as
// missing; this says why).
func noteDamage(rep *VerifyReport, err error) {
	var d *IndexDamageError
	if !errors.As(err, &d) {
		return
	}
	d = &IndexDamageError{Path: d.Path, Detail: d.Detail, live: d.live}
	msg := d.Error()
	for _, p := range rep.Problems {
		if strings.Contains(p, msg) {
			return
		}
	}
	rep.Problems = append(rep.Problems, msg)
}

// damageOf describes err, an error of Pebble on the database in dir, as
// damage: the file Pebble names (else dir) and its message on one line.
func damageOf(dir string, err error) *IndexDamageError {
	d := &IndexDamageError{Path: dir, Detail: pebbleDetail(err), err: err}
	if info := pebble.ExtractDataCorruptionInfo(err); info != nil && info.Path != "" {
		d.Path = info.Path
	} else if f := damagedFile(dir, d.Detail); f != "" {
		d.Path = f
	}
	d.live = filepath.Base(dir) == dirIndex
	return d
}

// panicDamage describes a panic out of Pebble on the database in dir.
func panicDamage(dir string, p any) *IndexDamageError {
	if err, ok := p.(error); ok {
		if d := damageOf(dir, err); d.Path != dir {
			d.Detail = "Pebble panicked: " + d.Detail
			d.err = nil
			return d
		}
	}
	// Pebble's DataCorruption message ("on-disk corruption: PATH; bounds:
	// [...]; details: ...") goes on with the error's stack trace: keep its
	// first line, and of that the details.
	msg, _, _ := strings.Cut(strings.TrimSpace(fmt.Sprint(p)), "\n")
	path := damagedFile(dir, msg)
	if _, details, ok := strings.Cut(msg, "; details: "); ok {
		msg = details
	}
	d := &IndexDamageError{Path: dir, Detail: "Pebble panicked: " + msg, live: filepath.Base(dir) == dirIndex}
	if path != "" {
		d.Path = path
	}
	return d
}

var (
	// pebbleFileName finds a file of the database in Pebble's messages.
	pebbleFileName = regexp.MustCompile(`(/\S+/)?(MANIFEST-\d+|OPTIONS-\d+|\d{6}\.(?:sst|log|blob))\b`)
	// pebbleFileNum finds a file named by number: "file 000011: block
	// 84/36: crc32c checksum mismatch", "corrupt wal 000009".
	pebbleFileNum = regexp.MustCompile(`\b(?:file|table|wal|log) (\d{6})\b`)
)

// damagedFile returns the path of the file of dir that msg names, if it
// names one that exists.
func damagedFile(dir, msg string) string {
	if m := pebbleFileName.FindStringSubmatch(msg); m != nil {
		if m[1] != "" {
			return m[0]
		}
		return filepath.Join(dir, m[2])
	}
	for _, m := range pebbleFileNum.FindAllStringSubmatch(msg, -1) {
		for _, ext := range []string{".sst", ".log", ".blob"} {
			p := filepath.Join(dir, m[1]+ext)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return ""
}

// pebbleDetail is Pebble's own message in err, on one line, without the
// engine's wrapping (which names the operation, as IndexDamageError.Op
// does); for damage the engine found (no format record), what follows
// ErrIndexDamaged's text.
func pebbleDetail(err error) string {
	if pe := pebbleError(err); pe != nil {
		return oneLine(pe.Error())
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ErrIndexDamaged.Error()+": "); i >= 0 {
		msg = msg[i+len(ErrIndexDamaged.Error())+2:]
	}
	return oneLine(msg)
}

// pebbleError finds Pebble's own error in err's tree: the first one whose
// type comes from Pebble or its errors package.
func pebbleError(err error) error {
	if err == nil {
		return nil
	}
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if strings.HasPrefix(t.PkgPath(), "github.com/cockroachdb/") {
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return pebbleError(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if pe := pebbleError(e); pe != nil {
				return pe
			}
		}
	}
	return nil
}

// oneLine joins the lines of a message with "; ", leaving out Pebble's
// "<corruption detail carrier>".
func oneLine(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "<corruption detail carrier>" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// panicFromPebble reports whether the panic being recovered was raised in
// Pebble (or in the engine's logger called by Pebble). Called from a
// deferred function, the stack still holds the panicking frames.
func panicFromPebble() bool {
	pc := make([]uintptr, 256)
	n := runtime.Callers(3, pc)
	frames := runtime.CallersFrames(pc[:n])
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, "github.com/cockroachdb/pebble/") {
			return true
		}
		if !more {
			return false
		}
	}
}
