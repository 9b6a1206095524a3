// Command importkill kills `ahvfs import` with SIGKILL at random moments,
// many times, and checks after each kill, through the command line alone,
// that the repository verifies, that every restore point committed before
// is still listed, and that every restore point listed reads back byte for
// byte as the images it was imported from.
//
//	go run ./tools/crash/importkill [-kills 200] [-size 64] [-encrypt=true] [-read-data-every 10] [-seed N] [-ahvfs bin/ahvfs] [-keep] [-v]
//	  [-s3 http://127.0.0.1:7070]   repositories in a bucket of that S3 endpoint (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
//
// Trials alternate between an unencrypted and an encrypted repository,
// both with small chunks and packs so that packs seal in the middle of an
// import. Each trial imports a fresh variant of one of three source images
// (random data, partly zero and sparse, repeated blocks), or two of them as
// disk-0 and disk-1, as a new restore point, and kills it after a delay
// drawn from [0, 1.2×] the duration of an unkilled import, so that kills
// land anywhere from start-up to the commit and the publication of the
// index at the end. Sometimes a concurrent reader (cat or list) is killed
// too. After the checks a trial sometimes imports once more, unkilled, so
// that the repository grows.
//
// It needs no root. It exits 1 if any check failed, and then keeps its
// work directory (repositories and source images) for a post-mortem.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"

	"github.com/dustin/go-humanize"
)

func main() {
	o := options{}
	flag.IntVar(&o.Kills, "kills", 200, "trials: imports started and killed")
	flag.IntVar(&o.SizeMiB, "size", 64, "`MiB` of the largest source image; the others are about 1/2 and 3/4 of it")
	flag.BoolVar(&o.Encrypt, "encrypt", true, "alternate trials with an encrypted repository")
	flag.IntVar(&o.ReadDataEvery, "read-data-every", 10, "run `verify --read-data` after every Nth trial (0: only at the end)")
	flag.Uint64Var(&o.Seed, "seed", 0, "seed of the images and of the choices (default: from the clock)")
	flag.StringVar(&o.Ahvfs, "ahvfs", "", "ahvfs binary (default: built from ./cmd/ahvfs)")
	flag.StringVar(&o.Dir, "dir", "", "work directory (default: a new temporary one)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the work directory even when every check passed")
	flag.BoolVar(&o.Verbose, "v", false, "print every trial")
	flag.StringVar(&o.S3, "s3", "", "S3 endpoint `URL`: the repositories live in its bucket importkill (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	flag.Parse()
	crashproc.Main("importkill", func(ctx context.Context) error {
		_, err := run(ctx, o, os.Stdout)
		return err
	})
}

type options struct {
	Kills         int
	SizeMiB       int    // largest source image (default 64)
	Encrypt       bool   // also run trials against an encrypted repository
	ReadDataEvery int    // verify --read-data after every Nth trial; 0 only at the end
	Seed          uint64 // 0: from the clock
	Ahvfs         string // default: built into the work directory
	Dir           string // default: a new temporary directory
	Keep          bool   // keep the work directory even without failures
	Verbose       bool
	S3            string // S3 endpoint: repositories in a bucket there
}

const (
	chunkSize  = 128 << 10
	cmdTimeout = 10 * time.Minute // any one command; longer is a failure
)

// result is what a run did.
type result struct {
	trials         int
	finished       int // imports that exited 0 before their kill
	beforeCommit   int // killed imports whose restore point never appeared
	afterCommit    int // killed imports whose restore point appeared
	publishedLater int // of afterCommit: listed only after a later writer opened
	readerKills    int
	restorePoints  int   // listed at the end, over the repositories
	logicalBytes   int64 // of those
	readBack       int64 // bytes read back and compared, over the run
	failures       []string
	elapsed        time.Duration
}

// run builds ahvfs if needed, makes the source images and repositories,
// runs the trials and a final check, and prints failures as they happen
// and a summary line; the error is non-nil when any check failed.
func run(ctx context.Context, o options, out io.Writer) (result, error) {
	start := time.Now()
	if o.SizeMiB <= 0 {
		o.SizeMiB = 64
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	work := o.Dir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "importkill-"); err != nil {
			return result{}, err
		}
	}
	k := &killer{o: o, out: out, work: work, rnd: rand.New(rand.NewPCG(o.Seed, 1)), said: map[string]bool{}}
	// Commands cut short by an interrupt fail; that is no finding.
	defer context.AfterFunc(ctx, func() { k.interrupted.Store(true) })()
	err := k.runAll(ctx)
	k.tally()
	k.res.elapsed = time.Since(start)
	res := k.res
	fmt.Fprintf(out, "importkill: %d trials, %d kills landed before the commit, %d after it (%d listed only once a later writer opened), "+
		"%d imports finished before their kill, %d concurrent readers killed; %d restore points (%s logical, %s read back); %d failures; %v (seed %d)\n",
		res.trials, res.beforeCommit, res.afterCommit, res.publishedLater, res.finished, res.readerKills,
		res.restorePoints, humanize.IBytes(uint64(res.logicalBytes)), humanize.IBytes(uint64(res.readBack)), len(res.failures), res.elapsed.Round(time.Second), o.Seed)
	if len(res.failures) > 0 {
		err = errors.Join(err, fmt.Errorf("%d checks failed (first: %s)", len(res.failures), res.failures[0]))
	}
	switch {
	case o.Dir != "":
	case err != nil || o.Keep:
		fmt.Fprintf(out, "importkill: kept %s\n", work)
	default:
		os.RemoveAll(work)
	}
	return res, err
}

// killer holds a run's state.
type killer struct {
	o       options
	out     io.Writer
	work    string
	rnd     *rand.Rand // the main goroutine's only
	sources []*source
	repos   []*repo

	mu   sync.Mutex // guards res and said
	res  result
	said map[string]bool // failures printed with their output

	interrupted atomic.Bool // the run's context is done: record no more failures
}

func (k *killer) runAll(ctx context.Context) error {
	if k.o.Ahvfs == "" {
		var err error
		if k.o.Ahvfs, err = crashproc.BuildAhvfs(k.work); err != nil {
			return err
		}
	}
	if err := k.makeSources(); err != nil {
		return err
	}
	defer func() {
		for _, s := range k.sources {
			s.f.Close()
		}
	}()
	names := []string{"plain"}
	if k.o.Encrypt {
		names = append(names, "encrypted")
	}
	for _, name := range names {
		r, err := k.newRepo(ctx, name)
		if err != nil {
			return err
		}
		k.repos = append(k.repos, r)
		k.say("importkill: %s repository ready, %d restore points; an import takes about %v\n", name, len(r.imports), r.durs())
	}
	for i := 0; i < k.o.Kills && ctx.Err() == nil; i++ {
		if err := k.trial(ctx, i); err != nil {
			return fmt.Errorf("trial %d: %w", i, err)
		}
		k.res.trials++
		if !k.o.Verbose && (i+1)%20 == 0 {
			k.say("importkill: %d/%d trials, %d failures\n", i+1, k.o.Kills, len(k.res.failures))
		}
	}
	// Last, a writer that runs to the end publishes whatever a killed one
	// committed, and everything is read once more, with the data verified.
	for _, r := range k.repos {
		if ctx.Err() != nil {
			break
		}
		fin := where{trial: final, repo: r.name}
		if err := k.importWhole(ctx, r, fin); err != nil {
			return err
		}
		k.check(ctx, r, fin)
	}
	return ctx.Err()
}

// tally counts what became of the imports killed and the restore points
// of the last checks.
func (k *killer) tally() {
	for _, r := range k.repos {
		for _, imp := range r.imports {
			switch {
			case imp.whole || imp.failed:
			case !imp.killed:
				k.res.finished++
			case !imp.committed:
				k.res.beforeCommit++
			default:
				k.res.afterCommit++
				if imp.late {
					k.res.publishedLater++
				}
			}
		}
		k.res.restorePoints += r.listed
		k.res.logicalBytes += r.logical
	}
}

// where names the moment of a check, for its failures.
type where struct {
	trial int // or setup or final
	repo  string
	delay time.Duration // of the kill of the trial's import
	span  time.Duration // the delay was drawn from [0, span)
}

const (
	setup = -1
	final = -2
)

func (w where) String() string {
	switch w.trial {
	case setup:
		return fmt.Sprintf("setup (%s)", w.repo)
	case final:
		return fmt.Sprintf("final check (%s)", w.repo)
	}
	return fmt.Sprintf("trial %d (%s, kill at %v of [0, %v))", w.trial, w.repo,
		w.delay.Round(time.Millisecond), w.span.Round(time.Millisecond))
}

// fail records a failed check and prints it, with the output that shows
// it the first time the same words come up.
func (k *killer) fail(w where, what, output string) {
	if k.interrupted.Load() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	line := fmt.Sprintf("%v: %s", w, what)
	k.res.failures = append(k.res.failures, line)
	key := w.repo + ": " + what
	if k.said[key] || output == "" {
		fmt.Fprintf(k.out, "FAIL %s\n", line)
		return
	}
	k.said[key] = true
	fmt.Fprintf(k.out, "FAIL %s\n%s\n", line, indent(output))
}

func (k *killer) say(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fmt.Fprintf(k.out, format, args...)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
