package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/ahvfs/ahvfs/xapi"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "restore",
			Usage:     "recreate a VM from a restore point on an AHV cluster or an XCP-ng pool",
			ArgsUsage: "VM@TIME",
			Description: "Without --name the VM keeps its original name (an error if a VM of that name exists, unless --overwrite).\n" +
				"Restore points made by 'ahvfs import' carry no VM configuration: the VM gets 1 vCPU, 2 GiB, legacy BIOS,\n" +
				"machine type PC, its disks on SCSI and no NIC, unless --vcpu/--memory say otherwise.\n" +
				"--overwrite creates the new VM first; only then is the original powered off and deleted.\n" +
				"--target xapi://HOST restores to an XCP-ng / XenServer pool instead of --prism, from a restore point of either\n" +
				"hypervisor (--sr instead of --container). Across hypervisors the disk bus and boot mode are\n" +
				"mapped, --network-map maps AHV subnets to pool networks or back, and what cannot be carried is a warning.\n" +
				"On a pool --overwrite also destroys the original's disks (those no other VM uses) and ahvfs's reference snapshot\n" +
				"of it, and gives the new VM its MAC addresses.",
			Flags: append(restoreVMFlags(),
				&cli.StringFlag{Name: "target", Usage: "an XCP-ng / XenServer pool `xapi://HOST[:PORT]` to restore to instead of --prism (user root by default; --password-file, --ca-cert and --insecure as for Prism)"},
				&cli.StringFlag{Name: "sr", Usage: "storage repository `NAME` or UUID of the new disks on the XCP-ng pool of --target (default: the disk's own SR when the pool has it, else the pool's default SR)"},
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
				if c.String("target") != "" || c.String("sr") != "" {
					return restoreToXen(c, env, o)
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
	return restoreAndReport(ctx, env, r, name, o, func(rp *engine.RestorePoint, o restore.Options) (*restore.Result, error) {
		return restore.Restore(ctx, r, cl, rp, o)
	})
}

// restoreToXen is `ahvfs restore --target xapi://HOST`: the restore point
// onto an XCP-ng / XenServer pool.
func restoreToXen(c *cli.Context, env *cliEnv, o restore.Options) error {
	ctx := c.Context
	xo, err := xenTargetOptions(c, env)
	if err != nil {
		return err
	}
	o.SR = c.String("sr")
	o.InitiatorIQN = "" // iSCSI is AHV's; $AHVFS_ISCSI_INITIATOR may be set for it
	if err := o.ValidateXen(); err != nil {
		return usagef("restore: %v", err)
	}
	o.Logger = env.Log
	r, err := openRepo(ctx, c, env, false)
	if err != nil {
		return err
	}
	defer r.Close()
	if o.Journal, err = repoJournal(r); err != nil {
		return err
	}
	xc, err := xapi.Connect(ctx, xo)
	if err != nil {
		return fmt.Errorf("connect to the XCP-ng pool %s: %w", xo.URL, err)
	}
	defer xc.Close(context.WithoutCancel(ctx))
	return restoreAndReport(ctx, env, r, c.Args().First(), o, func(rp *engine.RestorePoint, o restore.Options) (*restore.Result, error) {
		return restore.RestoreXen(ctx, r, xc, rp, o)
	})
}

// xenTargetOptions are the XAPI client options of --target
// xapi://HOST[:PORT]: user root unless --user, the password from
// --password-file or $AHVFS_PASSWORD (never argv), --ca-cert, --insecure.
func xenTargetOptions(c *cli.Context, env *cliEnv) (xapi.Options, error) {
	target := c.String("target")
	if target == "" {
		return xapi.Options{}, usagef("--sr names an SR of an XCP-ng pool: give --target xapi://HOST (on AHV, --container)")
	}
	u, err := url.Parse(target)
	switch {
	case err != nil || u.Host == "" || (u.Path != "" && u.Path != "/"):
		return xapi.Options{}, usagef("--target %q: want xapi://HOST[:PORT]", target)
	case u.Scheme == "prism":
		return xapi.Options{}, usagef("--target prism://%s: use --prism %s", u.Host, u.Host)
	case u.Scheme != "xapi":
		return xapi.Options{}, usagef("--target %q: want xapi://HOST[:PORT]", target)
	case c.String("prism") != "":
		return xapi.Options{}, usagef("--target xapi:// and --prism name two hypervisors: give one")
	}
	if api := c.String("api"); api != "" && api != "auto" {
		return xapi.Options{}, usagef("--api %s is Prism's; an XCP-ng pool speaks XAPI", api)
	}
	user := c.String("user")
	if !c.IsSet("user") || user == "" {
		user = "root" // --user's default is Prism's admin
	}
	pw, err := xenPassword(c.Context, c.String("password-file"))
	if err != nil {
		return xapi.Options{}, err
	}
	if c.Bool("insecure") {
		env.Log.Warn("TLS verification of the XCP-ng pool is off (--insecure): lab use only")
	}
	o := xapi.Options{URL: "https://" + u.Host, User: user, Password: pw, CAFile: c.String("ca-cert"), Insecure: c.Bool("insecure"), Logger: env.Log}
	if err := o.Validate(); err != nil {
		return o, usagef("%v", err)
	}
	return o, nil
}

// restoreAndReport resolves the restore point, runs do with a progress
// bar per disk and prints what it did.
func restoreAndReport(ctx context.Context, env *cliEnv, r *engine.Repository, name string, o restore.Options,
	do func(*engine.RestorePoint, restore.Options) (*restore.Result, error)) error {
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	var done func()
	o.Progress, done = diskBars(ctx, env, rp)
	res, err := do(rp, o)
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
