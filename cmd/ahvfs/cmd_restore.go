package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "restore",
			Usage:     "recreate a VM from a restore point on an AHV cluster",
			ArgsUsage: "VM@TIME",
			Description: "Without --name the VM keeps its original name (an error if a VM of that name exists, unless --overwrite).\n" +
				"Restore points made by 'ahvfs import' carry no VM configuration: the VM gets 1 vCPU, 2 GiB, legacy BIOS,\n" +
				"machine type PC, its disks on SCSI and no NIC, unless --vcpu/--memory say otherwise.\n" +
				"--overwrite creates the new VM first; only then is the original powered off and deleted.",
			Flags: append(restoreVMFlags(),
				&cli.BoolFlag{Name: "overwrite", Usage: "replace the original VM (powered off and deleted after the new one is complete)"},
				&cli.StringFlag{Name: "data-path", Value: "auto", Usage: "auto, iscsi or rest"},
				&cli.IntFlag{Name: "iscsi-port", Usage: "iSCSI port on the Data Services IP (default 3260)"},
				initiatorIQNFlag(),
				newRateFlag("bwlimit", "0", "cap the bytes per second written to the cluster (`RATE` such as 100MiB/s; 0: unlimited)"),
			),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 1 {
					return usagef("restore: want VM@TIME")
				}
				o, err := restoreOptions(c)
				if err != nil {
					return err
				}
				return withRestoreSite(c, env, o, func(r *engine.Repository, cl *nutanix.Client, o restore.Options) error {
					return runRestore(c.Context, env, r, cl, c.Args().First(), o)
				})
			},
		}
	})
}

// restoreVMFlags are the flags of the VM a restore creates, shared by
// restore and instant-restore.
func restoreVMFlags() []cli.Flag {
	return append(clusterFlags(), repoPasswordFlag(),
		&cli.StringFlag{Name: "target-cluster", Usage: "cluster `NAME` or UUID (default: the original cluster)"},
		&cli.StringFlag{Name: "name", Usage: "name of the new VM (default: the original name)"},
		&cli.StringFlag{Name: "container", Usage: "storage container `NAME` or UUID of the new disks on the target cluster (default: the cluster's default)"},
		&cli.StringSliceFlag{Name: "network-map", Usage: "`SRC=DST` subnet mapping, by name or UUID (repeat or comma-separate)"},
		&cli.IntFlag{Name: "vcpu", Usage: "number of vCPUs (default: as backed up)"},
		newSizeFlag("memory", "", "memory `SIZE` (4GiB; default: as backed up)"),
		&cli.StringSliceFlag{Name: "disks", Usage: "only these disks (disk-0,disk-2)"},
		&cli.BoolFlag{Name: "power-on", Usage: "power the VM on when restored"},
	)
}

// withRestoreSite opens the repository (read-only) and its journal,
// connects to Prism and calls fn with them and o completed.
func withRestoreSite(c *cli.Context, env *cliEnv, o restore.Options, fn func(*engine.Repository, *nutanix.Client, restore.Options) error) error {
	o.Logger = env.Log
	r, err := openRepo(c.Context, c, env, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if o.Journal, err = repoJournal(r); err != nil {
		return err
	}
	cl, conn, err := siteFromFlags(c.Context, c, env)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer conn.Close()
	o.Clusters = conn.Clusters
	return fn(r, cl, o)
}

func restoreOptions(c *cli.Context) (restore.Options, error) {
	o := restore.Options{
		TargetCluster: c.String("target-cluster"), Name: c.String("name"), Container: c.String("container"),
		VCPUs: c.Int("vcpu"), PowerOn: c.Bool("power-on"), Overwrite: c.Bool("overwrite"),
		DataPath: c.String("data-path"), ISCSIPort: c.Int("iscsi-port"), InitiatorIQN: c.String("initiator-iqn"),
	}
	o.MemoryBytes = flagSize(c, "memory")
	o.BandwidthLimit = flagSize(c, "bwlimit")
	for _, v := range c.StringSlice("network-map") {
		for _, kv := range strings.Split(v, ",") {
			if kv = strings.TrimSpace(kv); kv == "" {
				continue
			}
			src, dst, ok := strings.Cut(kv, "=")
			if !ok || src == "" || dst == "" {
				return o, usagef("--network-map %q: want SRC=DST", kv)
			}
			if o.NetworkMap == nil {
				o.NetworkMap = map[string]string{}
			}
			o.NetworkMap[src] = dst
		}
	}
	disks, err := parseDiskList(c.StringSlice("disks"))
	if err != nil {
		return o, err
	}
	o.Disks = disks
	if err := o.Validate(); err != nil {
		return o, usagef("restore: %v", err)
	}
	return o, nil
}

func runRestore(ctx context.Context, env *cliEnv, r *engine.Repository, cl nutanix.Cluster, name string, o restore.Options) error {
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	var done func()
	o.Progress, done = diskBars(ctx, env, rp)
	res, err := restore.Restore(ctx, r, cl, rp, o)
	done()
	if err != nil {
		return err
	}
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	for _, d := range res.Disks {
		fmt.Fprintf(env.Stdout, "%s -> %s  %s (%s written)\n", d.Name, d.Address, ibytes(d.Size), ibytes(d.Written))
	}
	state := "powered off"
	if res.PoweredOn {
		state = "powered on"
	}
	fmt.Fprintf(env.Stdout, "restored %s as VM %s (%s) on %s via %s, %s, in %s\n", res.RestorePoint, res.Name, res.VMUUID, res.Cluster,
		res.DataPath, state, res.Duration.Round(1e7))
	if x := res.ExternalRepository; x != nil {
		fmt.Fprintf(env.Stdout, "disks read from nfs://%s%s (external repository %s) and hydrate in the background:\n"+
			"  ahvfs instant-restore status %s; then finish %s (or cancel %s)\n"+
			"until finish, keep the NFS server running and do not forget or prune %s: the VM reads from it\n",
			x.Address, x.Export, x.Name, res.Name, res.Name, res.Name, res.RestorePoint)
	}
	if res.Replaced != "" {
		fmt.Fprintf(env.Stdout, "replaced the original VM %s\n", res.Replaced)
	}
	if res.Cleanup != nil && res.Cleanup.Summary() != "nothing to clean up" {
		fmt.Fprintf(env.Stdout, "cleanup of earlier jobs: %s\n", res.Cleanup.Summary())
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	return nil
}
