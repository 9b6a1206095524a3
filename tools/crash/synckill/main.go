// Command synckill kills `ahvfs sync` and the `ahvfs serve` it pushes to
// with SIGKILL at random moments, many times, and checks after each kill,
// through the command line alone:
//
//   - the client exits (a dead server is an error, never a hang);
//
//   - whatever the target lists verifies with its data, and reads back
//     byte for byte as the source's restore point of that name (a point
//     is visible there only whole);
//
//   - the same sync run again, to a restarted server, completes: the
//     target then lists exactly what the source lists (names, times,
//     levels, configuration) and verifies.
//
//     go run ./tools/crash/synckill [-kills 40] [-size 16] [-seed N] [-ahvfs bin/ahvfs] [-v]
//
// The source repository (small chunks and packs, so that a sync is many
// batches, pack seals and commits) holds three restore points of one VM,
// each the last one with a fresh patch, so that the later ones share most
// chunks with the first. Each trial makes a new target (init
// --copy-params-from), serves it over mutual TLS, pushes to it, and kills
// the client (even trials) or the server (odd trials) after a delay drawn
// from [0, 1.2×] an unkilled sync's duration. It needs no root. It exits 1
// if any check failed, and then keeps its work directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

func main() {
	o := options{}
	flag.IntVar(&o.Kills, "kills", 40, "trials: syncs started and the client or the server killed (half each)")
	flag.IntVar(&o.SizeMiB, "size", 16, "`MiB` of the source's disk")
	o.Flags()
	flag.Parse()
	crashproc.Main("synckill", func(ctx context.Context) error {
		_, err := run(ctx, o, os.Stdout)
		return err
	})
}

type options struct {
	crashproc.Common
	Kills   int
	SizeMiB int
}

// cmdTimeout bounds any one command: longer is a hang, and a failure.
const cmdTimeout = 5 * time.Minute

// result is what a run did.
type result struct {
	trials, killedClient, killedServer, finished int
	readBack                                     int64
	failures                                     []string
}

type killer struct {
	o       options
	out     io.Writer
	work    string
	src     string
	rnd     *rand.Rand
	points  map[string][]byte // the source's disk-0 of each restore point, by name
	srcList []byte            // `list --json` of the source
	tls     peers
	dur     time.Duration // of an unkilled sync
	res     result
	chk     crashproc.Checks
}

func run(ctx context.Context, o options, out io.Writer) (result, error) {
	if o.SizeMiB <= 0 {
		o.SizeMiB = 16
	}
	work, err := o.Setup("synckill")
	if err != nil {
		return result{}, err
	}
	k := &killer{o: o, out: out, chk: crashproc.Checks{Out: out}, work: work, src: filepath.Join(work, "src"), rnd: rand.New(rand.NewPCG(o.Seed, 16)),
		points: map[string][]byte{}}
	err = k.runAll(ctx)
	fmt.Fprintf(out, "synckill: %d trials, %d clients and %d servers killed, %d syncs finished before their kill; %.1f MiB read back; %d failures (seed %d)\n",
		k.res.trials, k.res.killedClient, k.res.killedServer, k.res.finished, float64(k.res.readBack)/(1<<20), len(k.chk.Failures), o.Seed)
	k.res.failures = k.chk.Failures
	return k.res, o.End(out, "synckill", work, k.res.failures, err)
}

func (k *killer) runAll(ctx context.Context) error {
	if err := k.o.Build(k.work); err != nil {
		return err
	}
	var err error
	if k.tls, err = newPeers(k.work); err != nil {
		return err
	}
	if err := k.makeSource(ctx); err != nil {
		return err
	}
	// Learn how long an unkilled sync takes.
	t, err := k.newTarget(ctx, 0)
	if err != nil {
		return err
	}
	p, err := k.ahvfs(ctx, "calibration", k.syncArgs(t.url)...)
	if err != nil {
		t.stop()
		return fmt.Errorf("an unkilled sync: %w", err)
	}
	k.dur = p.Took
	k.finish(ctx, "calibration", t)
	t.stop()
	for i := 0; i < k.o.Kills && ctx.Err() == nil; i++ {
		if err := k.trial(ctx, i); err != nil {
			return fmt.Errorf("trial %d: %w", i, err)
		}
		k.res.trials++
		if !k.o.Verbose && (i+1)%10 == 0 {
			fmt.Fprintf(k.out, "synckill: %d/%d trials, %d failures\n", i+1, k.o.Kills, len(k.chk.Failures))
		}
	}
	return ctx.Err()
}

// makeSource imports the source's three restore points.
func (k *killer) makeSource(ctx context.Context) error {
	if _, err := k.ahvfs(ctx, "setup", "init", "--repo", k.src, "--chunk-size", "64KiB", "--pack-size", "1MiB"); err != nil {
		return err
	}
	size := k.o.SizeMiB << 20
	disk := crashproc.Chacha(k.rnd.Uint64(), size)
	img := filepath.Join(k.work, "disk.raw")
	for i := range 3 {
		if i > 0 {
			disk = append([]byte(nil), disk...)
			patch := crashproc.Chacha(k.rnd.Uint64(), size/8)
			copy(disk[k.rnd.IntN(size-len(patch)):], patch)
		}
		if err := os.WriteFile(img, disk, 0o600); err != nil {
			return err
		}
		at := time.Date(2026, 11, 20+i, 1, 0, 0, 0, time.UTC).Format(time.RFC3339)
		if _, err := k.ahvfs(ctx, "setup", "import", "--repo", k.src, "--vm", "web01", "--time", at, img); err != nil {
			return err
		}
		k.points["web01@"+at] = disk
	}
	os.Remove(img)
	p, err := k.ahvfs(ctx, "setup", "list", "--repo", k.src, "--json")
	if err != nil {
		return err
	}
	k.srcList = p.Stdout.Bytes()
	return nil
}

func (k *killer) syncArgs(url string) []string {
	return append([]string{"sync", "--repo", k.src, "--to", url, "--json"}, k.tls.clientArgs()...)
}

func (k *killer) trial(ctx context.Context, i int) error {
	t, err := k.newTarget(ctx, i+1)
	if err != nil {
		return err
	}
	defer func() { t.stop() }()
	server := i%2 == 1
	span := k.dur * 6 / 5
	delay := time.Duration(k.rnd.Int64N(int64(span) + 1))
	victim := "client"
	if server {
		victim = "server"
	}
	at := fmt.Sprintf("trial %d (%s killed at %v of [0, %v))", i, victim, delay.Round(time.Millisecond), span.Round(time.Millisecond))
	p, err := k.start(k.syncArgs(t.url)...)
	if err != nil {
		return err
	}
	if server {
		select {
		case <-p.Done:
		case <-time.After(delay):
			t.serve.Kill()
			<-t.serve.Done
			// The client must see the dead server and give up.
			if werr := p.Wait(ctx, cmdTimeout); werr != nil && !isExit(werr) {
				k.chk.Fail(at, fmt.Sprintf("the client, after the server's kill: %v", werr), p.Report())
			}
		}
	} else {
		p.KillAfter(delay)
	}
	k.chk.Scan(at, p)
	serverKilled := server && exited(t.serve) && t.serve.Killed()
	switch {
	case serverKilled:
		k.res.killedServer++
	case !server && p.Killed():
		k.res.killedClient++
	case p.Err != nil:
		k.chk.Fail(at, fmt.Sprintf("the sync exited with %v before its kill", p.Err), p.Report())
	default:
		k.res.finished++
		k.dur = (3*k.dur + p.Took) / 4
	}
	if serverKilled {
		k.chk.Scan(at, t.serve)
		if t, err = k.restartServe(t); err != nil {
			return err
		}
	} else if exited(t.serve) {
		k.chk.Fail(at, "the server did not outlive the sync", t.serve.Report())
	}
	k.checkTarget(ctx, at, t)
	k.finish(ctx, at, t)
	if k.o.Verbose {
		fmt.Fprintf(k.out, "%s: done\n", at)
	}
	return nil
}

func isExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}
