// Command prismsim runs the Prism simulator (package prismsim) as a process:
// one HTTPS listener playing Prism Central and Prism Element (v2, v3, v4
// APIs), VM disks as plain files in the state directory, and volume groups
// exported over iSCSI by its own tgtd daemons.
//
//	prismsim --listen 127.0.0.1:9440 --state DIR [--vms N --disk-size SIZE]
//	         [--vm NAME:FILE[,FILE...]] [--iscsi-portal 127.0.0.1:3260]
//	         [--no-v3-snapshots]
//
// --no-v3-snapshots plays a cluster without v3 vm_snapshots and
// data/changed_regions (a Prism Central, or an older Prism Element): they
// answer 404, so "ahvfs backup --api v3" takes its snapshots through the
// v2.0 API and backs up in full. Sizes are bytes (1048576) or a number with
// a binary unit (1MiB, 64KiB, 1.5GiB).
//
// Without flags it starts a demo cluster with 3 VMs on 127.0.0.1:9440 with
// its state in a temporary directory. SIGINT/SIGTERM stop it (and tgtd).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
	"github.com/ahvfs/ahvfs/prismsim"
)

func main() { simkit.Main("prismsim", run) }

const noV3SnapshotsUsage = "answer 404 to v3 vm_snapshots and data/changed_regions, as a Prism Central or an\n" +
	"older Prism Element does: v3 clients then snapshot through the v2.0 API and back up in full"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("prismsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen     = fs.String("listen", "127.0.0.1:9440", "HTTPS listen address")
		state      = fs.String("state", "", "state directory (default: a new temporary directory)")
		nVMs       = fs.Int("vms", -1, "create N demo VMs with ext4 disks (default 3 on a fresh state without --vm)")
		diskSize   = fs.String("disk-size", "1GiB", "size of the demo VMs' first disk (bytes, or with a unit: 512MiB)")
		portal     = fs.String("iscsi-portal", "127.0.0.1:3260", `Data Services IP iSCSI portal ("off" disables iSCSI)`)
		cvmPortal  = fs.String("cvm-portal", "127.0.0.2:3260", "CVM portal the Data Services IP redirects logins to")
		chapUser   = fs.String("chap-user", "", "require CHAP with this user on every target")
		chapSecret = fs.String("chap-secret", "", "CHAP secret for --chap-user")
		password   = fs.String("password", "", "admin password (default: from STATE/admin.password or random)")
		taskDelay  = fs.Duration("task-delay", 200*time.Millisecond, "time a task spends QUEUED and then RUNNING")
		blockSize  = fs.String("region-block", "64KiB", "changed-region granularity (bytes, or with a unit: 64KiB)")
		maxRegions = fs.Int("max-regions", 1000, "regions per changed-regions page")
		ngt        = fs.String("ngt", "", `NGT state of --vm VMs: absent, installed or vss`)
		f429       = fs.Float64("fault-429", 0, "fraction of API requests answered 429")
		f500       = fs.Float64("fault-500", 0, "fraction of API requests answered 500")
		fLatency   = fs.Duration("fault-latency", 0, "latency added to every API request")
		fFail      = fs.Int("fault-fail-tasks", 0, "make the next N tasks fail")
		fTaskRate  = fs.Float64("fault-task-rate", 0, "fraction of tasks that fail")
		noV3Snaps  = fs.Bool("no-v3-snapshots", false, noV3SnapshotsUsage)
		revisions  = fs.String("v4-revisions", "v4.0,v4.1", "v4 API revisions served, comma-separated (v4.2 adds external repositories: instant recovery)")
		hydration  = fs.String("hydration-rate", "256MiB", "bytes per second a disk on an external repository hydrates (bytes, or with a unit)")
		quiet      = fs.Bool("quiet", false, "do not log requests' problems to stderr")
		vms        simkit.VMFlag
	)
	fs.Var(&vms, "vm", "NAME:FILE[,FILE...]: add a VM whose disks are copies of the images (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	ds, err := parseSize(*diskSize)
	if err != nil {
		return fmt.Errorf("--disk-size: %w", err)
	}
	bs, err := parseSize(*blockSize)
	if err != nil {
		return fmt.Errorf("--region-block: %w", err)
	}
	hr, err := parseSize(*hydration)
	if err != nil {
		return fmt.Errorf("--hydration-rate: %w", err)
	}
	dir, err := simkit.StateDirOrTemp(*state, "prismsim")
	if err != nil {
		return err
	}
	fresh := true
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		fresh = false
	}
	o := prismsim.Options{
		Listen: *listen, StateDir: dir, Password: *password, CVMPortal: *cvmPortal,
		CHAPUser: *chapUser, CHAPSecret: *chapSecret, TaskDelay: *taskDelay,
		RegionBlockSize: bs, MaxRegionsPerPage: *maxRegions, NoV3Snapshots: *noV3Snaps,
		V4Revisions: strings.Split(*revisions, ","), HydrationRate: hr,
		Faults: prismsim.Faults{Rate429: *f429, Rate500: *f500, Latency: *fLatency, FailTasks: *fFail, FailTaskRate: *fTaskRate},
	}
	if *portal != "off" && *portal != "" {
		o.ISCSIPortal = *portal
	}
	if !*quiet {
		o.Logf = simkit.Logf(stderr, "prismsim")
	}
	sim, err := prismsim.New(ctx, o)
	if err != nil {
		return err
	}
	defer sim.Close()

	for _, spec := range vms {
		name, files, err := simkit.SplitVM(spec)
		if err != nil {
			return err
		}
		if _, err := sim.AddVM(ctx, name, files, prismsim.VMOptions{NGT: prismsim.NGT(*ngt)}); err != nil {
			return err
		}
	}
	n := *nVMs
	if n < 0 {
		n = 0
		if fresh && len(vms) == 0 {
			n = 3
		}
	}
	if n > 0 {
		fmt.Fprintf(stderr, "prismsim: building %d demo VMs (ext4 disks of %d bytes)...\n", n, ds)
		if _, err := sim.AddDemoVMs(ctx, n, prismsim.DemoOptions{DiskSize: ds}); err != nil {
			return err
		}
	}

	simkit.Contract{URL: sim.URL(), CAFile: sim.CAFile(), User: sim.User(), PasswordFile: sim.PasswordFile(),
		StateDir: sim.StateDir()}.Print(stdout)
	if p := sim.ISCSIPortal(); p != "" {
		simkit.PrintField(stdout, "iSCSI portal", fmt.Sprintf("%s (redirects to %s)", p, sim.CVMPortal()))
	}
	if *noV3Snaps {
		simkit.PrintField(stdout, "v3 snapshots", "not served (--no-v3-snapshots): snapshots through v2.0 only")
	}
	for _, v := range sim.VMs() {
		simkit.PrintVM(stdout, v.Name, v.UUID, v.Disks)
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "prismsim: stopping")
	return sim.Close()
}
