// Command gckill kills `ahvfs prune` and `ahvfs gc` with SIGKILL at random
// moments, many times, and checks after each kill, through the command
// line alone, that the repository verifies with its data, that every
// restore point the policy keeps is still listed and reads back byte for
// byte as it was imported, and that an unkilled gc afterwards finishes the
// job (no unused blob left).
//
//	go run ./tools/crash/gckill [-kills 60] [-size 8] [-seed N] [-ahvfs bin/ahvfs] [-v]
//
// Each trial imports two new restore points (patched variants of three
// random images, so that chunks are shared between points and packs hold
// both used and unused ones), then starts either `prune --keep-last 3`
// (every other trial) or `gc --max-unused 0%` and kills it after a delay
// drawn from [0, 1.2×] its unkilled duration. It needs no root. It exits 1
// if any check failed, and then keeps its work directory.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"time"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

func main() {
	o := options{}
	flag.IntVar(&o.Kills, "kills", 60, "trials: prunes and gcs started and killed (half each)")
	flag.IntVar(&o.SizeMiB, "size", 8, "`MiB` of each source image")
	o.Flags()
	flag.Parse()
	crashproc.Main("gckill", func(ctx context.Context) error {
		_, err := run(ctx, o, os.Stdout)
		return err
	})
}

type options struct {
	crashproc.Common
	Kills   int
	SizeMiB int
}

const keepLast = 3

// cmdTimeout bounds any one command: longer is a hang, and a failure.
const cmdTimeout = 10 * time.Minute

// result is what a run did.
type result struct {
	trials, killed, finished int
	readBack                 int64
	failures                 []string
}

// point is one imported restore point: which image, patched where.
type point struct {
	name  string
	vm    string
	src   int
	patch int64 // offset of a 256 KiB patch of fresh data
	seed  uint64
}

type killer struct {
	o      options
	out    io.Writer
	work   string
	repo   string
	rnd    *rand.Rand
	srcs   [][]byte
	points map[string]point // every point ever imported, by name
	count  int
	dur    map[string]time.Duration // unkilled duration of prune and gc
	res    result
}

func run(ctx context.Context, o options, out io.Writer) (result, error) {
	if o.SizeMiB <= 0 {
		o.SizeMiB = 8
	}
	work, err := o.Setup("gckill")
	if err != nil {
		return result{}, err
	}
	k := &killer{o: o, out: out, work: work, repo: filepath.Join(work, "repo"), rnd: rand.New(rand.NewPCG(o.Seed, 2)),
		points: map[string]point{}, dur: map[string]time.Duration{}}
	err = k.runAll(ctx)
	fmt.Fprintf(out, "gckill: %d trials, %d killed, %d finished before their kill; %s read back; %d failures (seed %d)\n",
		k.res.trials, k.res.killed, k.res.finished, mib(k.res.readBack), len(k.res.failures), o.Seed)
	return k.res, o.End(out, "gckill", work, k.res.failures, err)
}

func (k *killer) runAll(ctx context.Context) error {
	if err := k.o.Build(k.work); err != nil {
		return err
	}
	for i := range 3 {
		k.srcs = append(k.srcs, crashproc.Chacha(k.rnd.Uint64()+uint64(i), k.o.SizeMiB<<20))
	}
	if _, err := k.ahvfs(ctx, nil, "init", "--chunk-size", "64KiB", "--pack-size", "256KiB"); err != nil {
		return err
	}
	// Learn how long an unkilled prune and gc take.
	for _, op := range []string{"prune", "gc"} {
		if err := k.importTwo(ctx); err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := k.ahvfs(ctx, nil, opArgs(op)...); err != nil {
			return err
		}
		k.dur[op] = time.Since(t0)
	}
	for i := 0; i < k.o.Kills && ctx.Err() == nil; i++ {
		if err := k.trial(ctx, i); err != nil {
			return fmt.Errorf("trial %d: %w", i, err)
		}
		k.res.trials++
		if !k.o.Verbose && (i+1)%10 == 0 {
			fmt.Fprintf(k.out, "gckill: %d/%d trials, %d failures\n", i+1, k.o.Kills, len(k.res.failures))
		}
	}
	return ctx.Err()
}

func opArgs(op string) []string {
	if op == "prune" {
		return []string{"prune", "--keep-last", fmt.Sprint(keepLast)}
	}
	return []string{"gc", "--max-unused", "0%", "--reader-wait", "5s"}
}

// importTwo imports two new restore points, unkilled.
func (k *killer) importTwo(ctx context.Context) error {
	for range 2 {
		k.count++
		p := point{vm: []string{"web01", "db01"}[k.rnd.IntN(2)], src: k.rnd.IntN(len(k.srcs)),
			patch: k.rnd.Int64N(int64(k.o.SizeMiB<<20) - 256<<10), seed: k.rnd.Uint64()}
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(k.count) * time.Hour).Format(time.RFC3339)
		p.name = p.vm + "@" + at
		img := filepath.Join(k.work, "img.raw")
		if err := os.WriteFile(img, k.content(p), 0o600); err != nil {
			return err
		}
		if _, err := k.ahvfs(ctx, nil, "import", "--vm", p.vm, "--time", at, img); err != nil {
			return fmt.Errorf("import %s: %w", p.name, err)
		}
		k.points[p.name] = p
	}
	return nil
}

// content is a point's disk: its source image with its patch.
func (k *killer) content(p point) []byte {
	b := slices.Clone(k.srcs[p.src])
	copy(b[p.patch:], crashproc.Chacha(p.seed, 256<<10))
	return b
}

func (k *killer) trial(ctx context.Context, i int) error {
	if err := k.importTwo(ctx); err != nil {
		return err
	}
	op := []string{"prune", "gc"}[i%2]
	must := k.mustKeep() // what the policy keeps whatever happens
	span := k.dur[op] * 6 / 5
	delay := time.Duration(k.rnd.Int64N(int64(span) + 1))
	p, err := crashproc.Start(k.o.Ahvfs, nil, nil, append(opArgs(op), "--repo", k.repo)...)
	if err != nil {
		return err
	}
	p.KillAfter(delay)
	err, killed := p.Err, p.Killed()
	where := fmt.Sprintf("trial %d (%s killed at %v of [0, %v))", i, op, delay.Round(time.Millisecond), span.Round(time.Millisecond))
	switch {
	case killed:
		k.res.killed++
	case err != nil:
		k.fail(where, fmt.Sprintf("%s exited with %v, not killed: %s", op, err, p.Report()))
	default:
		k.res.finished++
		k.dur[op] = (3*k.dur[op] + p.Took) / 4
	}
	k.check(ctx, where, must)
	// The next unkilled run of the same command finishes the job.
	if _, err := k.ahvfs(ctx, nil, opArgs(op)...); err != nil {
		k.fail(where, fmt.Sprintf("%s after the kill: %v", op, err))
	}
	if op == "gc" {
		var g struct {
			Unused int64 `json:"unused_blobs"`
		}
		out, err := k.ahvfs(ctx, nil, "gc", "--dry-run", "--json")
		if err == nil {
			err = json.Unmarshal(out, &g)
		}
		if err != nil || g.Unused != 0 {
			k.fail(where, fmt.Sprintf("after the kill and an unkilled gc, %d blobs are still unused (%v)", g.Unused, err))
		}
	}
	if k.o.Verbose {
		fmt.Fprintf(k.out, "%s: killed %v\n", where, killed)
	}
	return nil
}

// mustKeep is the newest keepLast points of each VM among those listed now.
func (k *killer) mustKeep() []string {
	out, err := k.ahvfs(context.Background(), nil, "list", "--json")
	if err != nil {
		return nil
	}
	var list []struct {
		Name string `json:"name"`
		VM   string `json:"vm"`
	}
	json.Unmarshal(out, &list)
	byVM := map[string][]string{}
	for _, e := range list {
		byVM[e.VM] = append(byVM[e.VM], e.Name) // oldest first
	}
	var keep []string
	for _, names := range byVM {
		keep = append(keep, names[max(0, len(names)-keepLast):]...)
	}
	return keep
}

// check verifies with the data, lists, and reads every listed point back.
func (k *killer) check(ctx context.Context, where string, must []string) {
	if out, err := k.ahvfs(ctx, nil, "verify", "--read-data"); err != nil {
		k.fail(where, fmt.Sprintf("verify --read-data: %v: %s", err, out))
	}
	out, err := k.ahvfs(ctx, nil, "list", "--json")
	if err != nil {
		k.fail(where, fmt.Sprintf("list: %v", err))
		return
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		k.fail(where, fmt.Sprintf("list --json: %v", err))
		return
	}
	listed := map[string]bool{}
	for _, e := range list {
		listed[e.Name] = true
		p, ok := k.points[e.Name]
		if !ok {
			k.fail(where, "list shows "+e.Name+", which no import made")
			continue
		}
		var got bytes.Buffer
		if _, err := k.ahvfs(ctx, &got, "cat", e.Name, "disk-0"); err != nil {
			k.fail(where, fmt.Sprintf("cat %s: %v", e.Name, err))
			continue
		}
		k.res.readBack += int64(got.Len())
		if !bytes.Equal(got.Bytes(), k.content(p)) {
			k.fail(where, fmt.Sprintf("cat %s: not the bytes imported", e.Name))
		}
	}
	for _, n := range must {
		if !listed[n] {
			k.fail(where, fmt.Sprintf("%s, which the policy keeps, is no longer listed", n))
		}
	}
}

// ahvfs runs a command on the repository to its end; stdout goes to w
// when given, else it is returned.
func (k *killer) ahvfs(ctx context.Context, w io.Writer, args ...string) ([]byte, error) {
	p, err := crashproc.Start(k.o.Ahvfs, nil, w, append(args, "--repo", k.repo)...)
	if err != nil {
		return nil, err
	}
	err = p.Wait(ctx, cmdTimeout)
	if m := p.Crash(); m != "" {
		k.fail(args[0], fmt.Sprintf("printed %q", m))
	}
	if err != nil {
		return p.Stdout.Bytes(), fmt.Errorf("ahvfs %s: %v: %s", args[0], err, bytes.TrimSpace(p.Stderr.Bytes()))
	}
	return p.Stdout.Bytes(), nil
}

func (k *killer) fail(where, what string) {
	line := where + ": " + what
	k.res.failures = append(k.res.failures, line)
	fmt.Fprintln(k.out, "FAIL", line)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
