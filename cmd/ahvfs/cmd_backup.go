package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "backup",
			Usage: "back up VMs into the repository",
			Description: "Snapshots each selected VM, reads what changed since its reference snapshot (or everything\n" +
				"for a full) over iSCSI or REST, stores a restore point, and keeps the new snapshot as the\n" +
				"next reference. Leftovers of interrupted jobs are swept first (see `ahvfs cleanup`).\n" +
				"VMs are selected by name or UUID (--vm) and by Prism category (--category Env:prod), either\n" +
				"one selecting, minus --exclude; with neither, every VM. A --vm or --category that selects no\n" +
				"VM is an error.",
			Flags: append(append(clusterFlags(), repoPasswordFlag(),
				&cli.StringSliceFlag{Name: "vm", Usage: "VMs whose name matches `GLOB` (or UUID); repeatable or comma-separated; default all (unless --category)"},
				&cli.StringSliceFlag{Name: "category", Usage: "VMs carrying the Prism category `KEY:VALUE` (e.g. Env:prod); repeatable or comma-separated; a VM matching --vm or any --category is selected"},
				&cli.StringSliceFlag{Name: "exclude", Usage: "skip VMs matching `GLOB` (or UUID)"},
				&cli.StringSliceFlag{Name: "exclude-disk", Usage: "skip disks by address `scsi.1` (glob, or VMGLOB:ADDR for some VMs only)"},
				&cli.StringFlag{Name: "level", Value: "auto", Usage: "auto, full, incremental, differential, or copy (a full outside the chain: the reference snapshots are neither used nor moved)"},
				&cli.StringFlag{Name: "consistency", Value: "crash", Usage: "crash, app (falls back to crash with a warning) or app-required"},
				&cli.StringFlag{Name: "data-path", Value: "auto", Usage: "auto (iSCSI when the portal answers; NBD on an XCP-ng pool that serves it), iscsi, nbd or rest (REST image downloads; the HTTP export of an XCP-ng pool)"},
				sourceFlag(),
				&cli.StringFlag{Name: "strategy", Value: "auto", Usage: "on an XCP-ng pool: cbt (changed-block tracking, blocks read over NBD), xva (XVA export, then delta VHDs) or auto (cbt where the SR tracks changes)"},
				&cli.IntFlag{Name: "concurrent-vms", Value: 2, Usage: "VMs backed up at once"},
				&cli.IntFlag{Name: "concurrent-disks", Value: 4, Usage: "disks of one VM read at once"},
				&cli.BoolFlag{Name: "estimate", Usage: "snapshot and plan only: report what a backup would read, store nothing"},
				initiatorIQNFlag(),
				newRateFlag("bwlimit", "0", "cap the bytes per second read from the cluster, all VMs together (`RATE` such as 100MiB/s; 0: unlimited)"),
				&cli.IntFlag{Name: "iscsi-port", Usage: "iSCSI port on the Data Services IP (default: the cluster's, 3260)"},
				&cli.StringFlag{Name: "chap-user", Usage: "iSCSI CHAP user", EnvVars: []string{"AHVFS_CHAP_USER"}},
				&cli.StringFlag{Name: "chap-secret-file", Usage: "`FILE` holding the iSCSI CHAP secret", EnvVars: []string{"AHVFS_CHAP_SECRET_FILE"}},
				&cli.StringFlag{Name: "pre-snapshot", Usage: "shell `COMMAND` run on this host before each VM's snapshot ($AHVFS_VM, $AHVFS_VM_UUID, $AHVFS_HOOK); failing fails the VM"},
				&cli.StringFlag{Name: "post-snapshot", Usage: "shell `COMMAND` run after each VM's snapshot (same environment; runs whenever --pre-snapshot succeeded); failing is a warning"},
			), lockFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				ep, err := xenEndpoint(c)
				if err != nil {
					return err
				}
				if ep == "" {
					if _, err := clusterOptions(c, env); err != nil {
						return err
					}
				}
				o := backup.Options{
					VMs: splitList(c.StringSlice("vm")), Exclude: splitList(c.StringSlice("exclude")),
					ExcludeDisks: splitList(c.StringSlice("exclude-disk")),
					Level:        backup.Level(c.String("level")), Consistency: backup.Consistency(c.String("consistency")),
					DataPath: backup.DataPath(c.String("data-path")), Strategy: backup.Strategy(c.String("strategy")),
					ConcurrentVMs: c.Int("concurrent-vms"), ConcurrentDisks: c.Int("concurrent-disks"),
					Estimate: c.Bool("estimate"), InitiatorIQN: c.String("initiator-iqn"), ISCSIPort: c.Int("iscsi-port"),
					BandwidthLimit: flagSize(c, "bwlimit"),
					Logger:         env.Log,
				}
				for _, s := range splitList(c.StringSlice("category")) {
					cat, err := nutanix.ParseCategory(s)
					if err != nil {
						return usagef("--category: %v", err)
					}
					o.Categories = append(o.Categories, cat)
				}
				lock, err := lockRule(c, "lock-until", "lock-for")
				if err != nil {
					return err
				}
				o.LockUntil = lock
				if o.ConcurrentVMs < 1 || o.ConcurrentDisks < 1 {
					return usagef("--concurrent-vms and --concurrent-disks must be at least 1")
				}
				if u := c.String("chap-user"); u != "" {
					f := c.String("chap-secret-file")
					if f == "" {
						return usagef("--chap-user needs --chap-secret-file")
					}
					sec, err := readSecret(c.Context, f)
					if err != nil {
						return err
					}
					o.CHAP = iscsi.CHAP{User: u, Secret: string(sec)}
				}
				if cmd := c.String("pre-snapshot"); cmd != "" {
					o.PreSnapshot = backup.CommandHook("pre-snapshot", cmd)
				}
				if cmd := c.String("post-snapshot"); cmd != "" {
					o.PostSnapshot = backup.CommandHook("post-snapshot", cmd)
				}
				if err := o.Validate(); err != nil {
					return usagef("%v", err)
				}
				return runBackup(c.Context, c, env, o)
			},
		}
	})
	lastRestorePointHook = func(ctx context.Context, c *cli.Context, env *cliEnv) (func(nutanix.VM) string, error) {
		if c.String("repo") == "" {
			return nil, nil
		}
		r, err := openRepo(ctx, c, env, false)
		if err != nil {
			env.Log.Warn("last restore points not shown", "err", err)
			return nil, nil
		}
		defer r.Close()
		rps, err := r.ListRestorePoints(ctx, "")
		if err != nil {
			return nil, err
		}
		byUUID, byName := map[string]*engine.RestorePoint{}, map[string]*engine.RestorePoint{}
		for _, rp := range rps {
			if p := byUUID[rp.VMUUID]; rp.VMUUID != "" && (p == nil || rp.Time.After(p.Time)) {
				byUUID[rp.VMUUID] = rp
			}
			if p := byName[rp.VM]; p == nil || rp.Time.After(p.Time) {
				byName[rp.VM] = rp
			}
		}
		return func(v nutanix.VM) string {
			if rp := byUUID[v.UUID]; rp != nil {
				return rp.Name()
			}
			if rp := byName[v.Name]; rp != nil && rp.VMUUID == "" {
				return rp.Name()
			}
			return ""
		}, nil
	}
}

// splitList flattens repeatable, comma-separated flag values.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func runBackup(ctx context.Context, c *cli.Context, env *cliEnv, o backup.Options) error {
	repo, err := openRepo(ctx, c, env, true)
	if err != nil {
		return err
	}
	defer repo.Close()
	if o.Journal, err = repoJournal(repo); err != nil {
		return err
	}
	xc, err := xenFromFlags(ctx, c, env)
	if err != nil {
		return err
	}
	var rep *backup.Report
	prog := newProgress(ctx, env)
	o.Progress = &cliBackupProgress{p: prog}
	if xc != nil {
		defer xc.Close(context.WithoutCancel(ctx))
		rep, err = backup.RunXen(ctx, repo, xc, o)
	} else {
		cl, conn, cerr := siteFromFlags(ctx, c, env)
		if cerr != nil {
			return cerr
		}
		defer cl.Close()
		defer conn.Close()
		o.Clusters = conn.Clusters
		rep, err = backup.Run(ctx, repo, cl, o)
	}
	prog.wait()
	if rep != nil && (len(rep.VMs) > 0 || err == nil) {
		if env.JSON {
			if werr := writeJSON(env.Stdout, rep); werr != nil {
				return werr
			}
		} else {
			printBackupReport(env, rep)
		}
	}
	if err != nil {
		return err
	}
	if n := rep.Failed(); n > 0 {
		return someFailed(n, len(rep.VMs))
	}
	return nil
}

func printBackupReport(env *cliEnv, rep *backup.Report) {
	if rep.Cleanup != nil && (len(rep.Cleanup.Deleted) > 0 || len(rep.Cleanup.Unresolved) > 0 || len(rep.Cleanup.Errors) > 0) {
		fmt.Fprintf(env.Stdout, "cleanup of earlier jobs: %s\n", rep.Cleanup.Summary())
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tLEVEL\tCONSISTENCY\tSIZE\tREAD\tNEW\tTIME\tRESULT")
	for _, v := range rep.VMs {
		res := v.RestorePoint
		switch {
		case v.Err != "":
			res = "FAILED: " + v.Err
		case v.Estimate:
			res = "estimate"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.VM, dash(v.Level), dash(v.Consistency), ibytes(v.Size), ibytes(v.BytesRead),
			ibytes(v.BytesNew), v.Duration.Round(100*time.Millisecond), res)
	}
	tw.Flush()
	for _, v := range rep.VMs {
		if len(v.ExcludedDisks) > 0 {
			fmt.Fprintf(env.Stdout, "excluded: %s: %s (not backed up)\n", v.VM, strings.Join(v.ExcludedDisks, ", "))
		}
		for _, w := range v.Warnings {
			fmt.Fprintf(env.Stdout, "warning: %s: %s\n", v.VM, w)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cliBackupProgress shows one bar per disk on a terminal.
type cliBackupProgress struct {
	p  *progress
	mu sync.Mutex
	m  map[string]*bar
}

func (cp *cliBackupProgress) DiskStart(vm, disk string, size, read int64) func(int64) {
	b := cp.p.bytesBar(vm+"/"+disk, size)
	cp.mu.Lock()
	if cp.m == nil {
		cp.m = map[string]*bar{}
	}
	cp.m[vm+"/"+disk] = b
	cp.mu.Unlock()
	return b.set
}

func (cp *cliBackupProgress) DiskDone(vm, disk string, err error) {
	cp.mu.Lock()
	b := cp.m[vm+"/"+disk]
	delete(cp.m, vm+"/"+disk)
	cp.mu.Unlock()
	if b != nil {
		b.finish()
	}
}

func (cp *cliBackupProgress) VMDone(backup.VMReport) {}
