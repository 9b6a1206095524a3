// Command failoverkill kills `ahvfs failover` with SIGKILL at random
// moments, many times in each mode (test, instant test, planned,
// unplanned), and
// `failover permanent` and `failback` once each per failback trial,
// between two simulated sites, and checks after each kill, through the
// command line and the simulators' inventories:
//
//   - `ahvfs failover status --json` tells the truth: a VM the state
//     calls on exists at the DR site and is on; a source VM it calls
//     stopped or backed up is off;
//
//   - on even trials the failover run again resumes and completes: the
//     VMs are on at the DR site (renamed for a test), on the mapped
//     subnet, each disk byte-exact to what the mode promises (a planned
//     failover: the source disk at shutdown; the others: the newest point
//     at DR; an instant test: the guest's view through the hydrating
//     disk); then `failover undo --force` removes them;
//
//   - on odd trials `failover undo --force` alone cleans up;
//
//   - after the undo the DR site holds what it held before (VMs, images,
//     snapshots, no volume groups, no external repositories), the DR
//     repository holds no restore point for an instant restore, every
//     source VM is on again, and the source keeps no snapshot but the
//     backups' references, no volume group and no image;
//
//   - a failback trial moves the VMs to DR (planned), kills `failover
//     permanent` and resumes it, changes the DR disks, kills `failback`
//     and resumes it: the VMs are then on at the source with their DR
//     disks at shutdown, and both sites are as clean as after an undo.
//
//     go run ./tools/crash/failoverkill [-kills 10] [-modes test,instant,planned,unplanned,failback] [-size 8] [-seed N] [-ahvfs bin/ahvfs] [-v]
//
// The instant mode is a test failover of a second plan with instant_nfs:
// the VMs run from `ahvfs nfs-serve` of the DR repository (v4.2 APIs at
// the DR simulator), which runs beside the trials.
//
// The unplanned failovers run with --force (the source simulator stays
// up to be checked); the failover package's tests cover a stopped
// source. Between planned trials the source disks change, so that every
// final backup carries new data. Data moves over REST: no root needed.
// It exits 1 if any check failed, and then keeps its work directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

func main() {
	o := options{}
	flag.IntVar(&o.Kills, "kills", 10, "trials per mode")
	modes := flag.String("modes", "test,instant,planned,unplanned,failback", "failover modes to kill (instant: a test failover restoring instantly; failback: a permanent failover and a failback killed in each trial)")
	flag.IntVar(&o.SizeMiB, "size", 8, "`MiB` of each VM's disk")
	o.Flags()
	flag.Parse()
	o.Modes = strings.Split(*modes, ",")
	crashproc.Main("failoverkill", func(ctx context.Context) error {
		_, err := run(ctx, o, os.Stdout)
		return err
	})
}

type options struct {
	crashproc.Common
	Kills   int
	Modes   []string
	SizeMiB int
}

// cmdTimeout bounds any one command: longer is a hang, and a failure.
const cmdTimeout = 5 * time.Minute

// result is what a run did, per mode.
type result struct {
	trials, killed, resumed, undone map[string]int
	failures                        []string
}

type killer struct {
	o          options
	out        io.Writer
	work       string
	rnd        *rand.Rand
	prod, drs  *prismsim.Sim
	srcRepo    string
	drRepo     string
	plan       string // the plan of the mode running
	basePlan   string
	instPlan   string // basePlan with instant_nfs, and the DR site on v4
	instBody   string // instPlan but its instant_nfs
	nfs        *crashproc.Proc
	vms        []string
	sourceDisk map[string]string // VM → its live disk file at the source
	atDR       map[string][]byte // VM → the disk of its newest point at DR
	drBefore   prismsim.Objects
	dur        time.Duration // of an unkilled failover of the mode (failback: of a failback)
	permDur    time.Duration // of an unkilled failover permanent
	res        result
	chk        crashproc.Checks
}

func run(ctx context.Context, o options, out io.Writer) (result, error) {
	if o.SizeMiB <= 0 {
		o.SizeMiB = 8
	}
	work, err := o.Setup("failoverkill")
	if err != nil {
		return result{}, err
	}
	k := &killer{o: o, out: out, chk: crashproc.Checks{Out: out}, work: work, rnd: rand.New(rand.NewPCG(o.Seed, 19)), vms: []string{"db01", "web01"},
		sourceDisk: map[string]string{}, atDR: map[string][]byte{},
		res: result{trials: map[string]int{}, killed: map[string]int{}, resumed: map[string]int{}, undone: map[string]int{}}}
	err = k.runAll(ctx)
	if k.prod != nil {
		k.prod.Close()
	}
	if k.drs != nil {
		k.drs.Close() // its hydrators read from nfs-serve: before it
	}
	if k.nfs != nil {
		k.nfs.Kill()
		<-k.nfs.Done
	}
	for _, m := range o.Modes {
		fmt.Fprintf(out, "failoverkill: %-9s %d trials, %d killed before their end, %d resumed to the end, %d undone\n",
			m, k.res.trials[m], k.res.killed[m], k.res.resumed[m], k.res.undone[m])
	}
	fmt.Fprintf(out, "failoverkill: %d failures (seed %d)\n", len(k.chk.Failures), o.Seed)
	k.res.failures = k.chk.Failures
	return k.res, o.End(out, "failoverkill", work, k.res.failures, err)
}

func (k *killer) runAll(ctx context.Context) error {
	if err := k.o.Build(k.work); err != nil {
		return err
	}
	if err := k.setup(ctx); err != nil {
		return err
	}
	for _, mode := range k.o.Modes {
		k.plan = k.basePlan
		switch mode {
		case "instant":
			if err := k.startNFS(); err != nil {
				return err
			}
			k.plan = k.instPlan
		case "test", "planned", "unplanned":
		case "failback":
			if err := k.calibrateFailback(ctx); err != nil {
				return err
			}
			for i := 0; i < k.o.Kills && ctx.Err() == nil; i++ {
				if err := k.failbackTrial(ctx, i); err != nil {
					return fmt.Errorf("failback trial %d: %w", i, err)
				}
				k.res.trials[mode]++
			}
			continue
		default:
			return fmt.Errorf("mode %q: want test, instant, planned, unplanned or failback", mode)
		}
		// The DR repository's newest points are the source disks as they
		// are; then learn how long an unkilled failover of the mode takes.
		if err := k.refresh(ctx); err != nil {
			return err
		}
		if err := k.changeSource(mode); err != nil {
			return err
		}
		start := time.Now()
		if _, err := k.ahvfs(ctx, mode+" calibration", k.failoverArgs(mode)...); err != nil {
			return fmt.Errorf("an unkilled %s failover: %w", mode, err)
		}
		k.dur = time.Since(start)
		k.checkUp(mode+" calibration", mode)
		k.undo(ctx, mode+" calibration", mode)
		for i := 0; i < k.o.Kills && ctx.Err() == nil; i++ {
			if err := k.trial(ctx, mode, i); err != nil {
				return fmt.Errorf("%s trial %d: %w", mode, i, err)
			}
			k.res.trials[mode]++
		}
	}
	return ctx.Err()
}

// calibrateFailback times an unkilled permanent failover and failback.
func (k *killer) calibrateFailback(ctx context.Context) error {
	at := "failback calibration"
	if err := k.changeSource("planned"); err != nil {
		return err
	}
	if _, err := k.ahvfs(ctx, at, k.failoverArgs("planned")...); err != nil {
		return err
	}
	start := time.Now()
	if _, err := k.ahvfs(ctx, at, "failover", "permanent", k.plan); err != nil {
		return err
	}
	k.permDur = time.Since(start)
	want, err := k.changeDR()
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := k.ahvfs(ctx, at, "failback", k.plan); err != nil {
		return err
	}
	k.dur = time.Since(start)
	k.checkBack(at, want)
	k.checkBaseline(at)
	return nil
}
