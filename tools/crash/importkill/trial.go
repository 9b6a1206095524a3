package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// trial starts an import, kills it, checks the repository, and one time
// in ten imports once more (with the imports that finish before their
// kill, that grows the repository by a restore point every third trial
// or so: every check reads them all back).
func (k *killer) trial(ctx context.Context, i int) error {
	r := k.repos[i%len(k.repos)]
	disks := k.newDisks()
	name, args, err := k.prepare(r, disks)
	if err != nil {
		return err
	}
	defer removeImages(args, len(disks))
	var span time.Duration
	for _, v := range disks {
		span += r.dur[v.src]
	}
	span = span * 6 / 5
	at := where{trial: i, repo: r.name, delay: time.Duration(k.rnd.Int64N(int64(span) + 1)), span: span}
	imp := &attempt{disks: disks, trial: i}
	r.imports[name] = imp

	rd := k.newReader(r, span)
	p, err := k.start(r, nil, args...)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	if rd != nil {
		if rd.p, err = k.start(r, rd.out, rd.args...); err != nil {
			p.Kill()
			<-p.Done
			return err
		}
		wg.Go(func() { rd.p.KillAfter(rd.delay) })
	}
	p.KillAfter(at.delay)
	wg.Wait()

	outcome := "killed"
	switch {
	case p.Killed():
		imp.killed = true
	case p.Err != nil:
		outcome = "failed"
		imp.failed = true
		k.fail(at, fmt.Sprintf("import of %s exited with %v, not killed", name, p.Err), p.Report())
	default:
		outcome = fmt.Sprintf("finished in %v", p.Took.Round(time.Millisecond))
		k.importDone(r, at, name, imp, p)
	}
	k.scan(at, p)
	if rd != nil {
		k.readerDone(at, rd)
	}
	n := k.check(ctx, r, at)
	if imp.killed && imp.committed {
		outcome += ", committed"
	}
	if k.o.Verbose {
		k.say("%v: %s %s (%d disks), %s; %d restore points read back\n", at, name, outcome, len(disks), rd, n)
	}
	if k.rnd.IntN(10) == 0 {
		return k.importWhole(ctx, r, at)
	}
	return nil
}

// reader is a command reading the repository while an import runs.
type reader struct {
	args  []string
	out   io.Writer // its stdout
	c     *checker  // cat's, or nil
	want  []string  // list's: the restore points it must show
	delay time.Duration
	p     *proc
}

func (rd *reader) String() string {
	if rd == nil {
		return "no reader"
	}
	what := "finished"
	if rd.p != nil && rd.p.Killed() {
		what = "killed"
	}
	return fmt.Sprintf("concurrent %s %s (kill at %v)", rd.args[0], what, rd.delay.Round(time.Millisecond))
}

// newReader, a quarter of the time, plans a cat of a committed restore
// point's disk or a list, to be killed after a delay in [0, span).
func (k *killer) newReader(r *repo, span time.Duration) *reader {
	var committed []string
	for name, imp := range r.imports {
		if imp.committed {
			committed = append(committed, name)
		}
	}
	slices.Sort(committed)
	if len(committed) == 0 || k.rnd.IntN(4) != 0 {
		return nil
	}
	rd := &reader{delay: time.Duration(k.rnd.Int64N(int64(span) + 1))}
	if k.rnd.IntN(3) == 0 {
		rd.args = []string{"list", "--repo", r.dir, "--json"}
		rd.want = committed
		return rd
	}
	name := committed[k.rnd.IntN(len(committed))]
	disk := k.rnd.IntN(len(r.imports[name].disks))
	rd.args = []string{"cat", "--repo", r.dir, name, fmt.Sprintf("disk-%d", disk)}
	rd.c = newChecker(r.imports[name].disks[disk])
	rd.out = rd.c
	return rd
}

// readerDone checks what a concurrent reader printed: all of it when it
// finished, what came before the kill otherwise.
func (k *killer) readerDone(at where, rd *reader) {
	p := rd.p
	k.scan(at, p)
	cmd := strings.Join(rd.args[:1], " ")
	if p.Killed() {
		k.mu.Lock()
		k.res.readBack += rd.bytes()
		k.res.readerKills++
		k.mu.Unlock()
		if rd.c != nil {
			if pr := rd.c.problem(false); pr != "" {
				k.fail(at, fmt.Sprintf("concurrent %s %s (killed after %v): %s", cmd, rd.args[3], rd.delay, pr), p.Report())
			}
		}
		return
	}
	if p.Err != nil {
		k.fail(at, fmt.Sprintf("concurrent %s exited with %v", cmd, p.Err), p.Report())
		return
	}
	k.res.readBack += rd.bytes()
	if rd.c != nil {
		if pr := rd.c.problem(true); pr != "" {
			k.fail(at, fmt.Sprintf("concurrent cat %s %s: %s", rd.args[3], rd.args[4], pr), p.Report())
		}
		return
	}
	list, err := parseList(p.Stdout.Bytes())
	if err != nil {
		k.fail(at, "concurrent list: "+err.Error(), p.Report())
		return
	}
	for _, name := range rd.want {
		if !slices.ContainsFunc(list, func(e listEntry) bool { return e.Name == name }) {
			k.fail(at, fmt.Sprintf("concurrent list does not show restore point %s", name), p.Report())
		}
	}
}

func (rd *reader) bytes() int64 {
	if rd.c == nil {
		return 0
	}
	return rd.c.n
}
