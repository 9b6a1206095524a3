package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "instant-restore",
			Usage:     "run a VM from a restore point at once, its disks on this repository's NFS export (Prism v4.2)",
			ArgsUsage: "VM@TIME",
			Description: "Serve the repository first with 'ahvfs nfs-serve' where the cluster reaches it, and name that server with --nfs.\n" +
				"The VM's disks read from their files on the export, registered as an external repository, and hydrate into\n" +
				"the cluster's storage in the background. Follow it with 'instant-restore status', end it with 'instant-restore\n" +
				"finish' (waits for hydration, removes the repository) or 'instant-restore cancel' (deletes the VM).\n" +
				"Until then the restore point is held: forget refuses it and prune keeps it.\n" +
				"Clusters without the v4.2 APIs refuse; --fallback restore runs a full restore instead.",
			Flags: append(restoreVMFlags(),
				&cli.StringFlag{Name: "nfs", Usage: "the ahvfs NFS server as the cluster reaches it, `HOST[:PORT]` (port default 2049)"},
				&cli.StringFlag{Name: "fallback", Value: "none", Usage: "without the v4.2 APIs: none (fail) or restore (a full restore)"},
				&cli.StringFlag{Name: "data-path", Value: "auto", Usage: "data path of a --fallback restore: auto, iscsi or rest"},
				&cli.IntFlag{Name: "iscsi-port", Usage: "iSCSI port on the Data Services IP, for a --fallback restore (default 3260)"},
				initiatorIQNFlag(),
			),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 1 {
					return usagef("instant-restore: want VM@TIME (or status, finish, cancel)")
				}
				fallback := c.String("fallback")
				if fallback != "none" && fallback != "restore" {
					return usagef("--fallback %q: want none or restore", fallback)
				}
				o, err := restoreOptions(c)
				if err != nil {
					return err
				}
				fallbackPath := o.DataPath
				o.DataPath, o.NFS = restore.DataPathInstant, c.String("nfs")
				if err := o.Validate(); err != nil {
					return usagef("instant-restore: %v", err)
				}
				return withRestoreSite(c, env, o, func(r *engine.Repository, cl *nutanix.Client, o restore.Options) error {
					err := runRestore(c.Context, env, r, cl, c.Args().First(), o)
					if !errors.Is(err, nutanix.ErrUnsupported) || fallback != "restore" {
						return err
					}
					fmt.Fprintf(env.Stderr, "warning: %v\nwarning: --fallback restore: copying the restore point instead\n", err)
					o.DataPath = fallbackPath
					return runRestore(c.Context, env, r, cl, c.Args().First(), o)
				})
			},
			Subcommands: []*cli.Command{
				{
					Name:      "status",
					Usage:     "hydration of instantly restored VMs, per disk",
					ArgsUsage: "[NAME]",
					Flags:     clusterFlags(),
					Action: func(c *cli.Context) error {
						return withCluster(c, func(env *cliEnv, cl *nutanix.Client) error {
							vms, err := restore.InstantStatus(c.Context, cl, c.Args().First())
							if err != nil || env.JSON {
								return jsonOr(env, vms, err)
							}
							printInstant(env, vms)
							return nil
						})
					},
				},
				{
					Name:      "finish",
					Usage:     "wait until the VM is hydrated, then remove the external repository no VM reads from any more",
					ArgsUsage: "NAME",
					Description: "With --repo, the restore point's hold (which keeps forget and prune off it while the VM\n" +
						"hydrates) goes with the repository; without, at the next 'ahvfs cleanup'.",
					Flags: append(clusterFlags(), repoPasswordFlag(),
						&cli.DurationFlag{Name: "timeout", Usage: "give up waiting after `DURATION` (0: wait as long as it takes)"}),
					Action: func(c *cli.Context) error {
						if c.NArg() != 1 {
							return usagef("instant-restore finish: want NAME")
						}
						return withCluster(c, func(env *cliEnv, cl *nutanix.Client) error {
							ctx := c.Context
							if d := c.Duration("timeout"); d > 0 {
								var cancel context.CancelFunc
								ctx, cancel = context.WithTimeout(ctx, d)
								defer cancel()
							}
							res, err := restore.Finish(ctx, cl, c.Args().First(), instantPoll)
							return reportFinish(env, "hydrated", res, releaseHolds(c, env, cl, res, err))
						})
					},
				},
				{
					Name:        "cancel",
					Usage:       "delete an instantly restored VM that still reads from the export, and its external repository",
					ArgsUsage:   "NAME",
					Description: "With --repo, the restore point's hold goes too; without, at the next 'ahvfs cleanup'.",
					Flags:       append(clusterFlags(), repoPasswordFlag()),
					Action: func(c *cli.Context) error {
						if c.NArg() != 1 {
							return usagef("instant-restore cancel: want NAME")
						}
						return withCluster(c, func(env *cliEnv, cl *nutanix.Client) error {
							res, err := restore.Cancel(c.Context, cl, c.Args().First())
							return reportFinish(env, "deleted", res, releaseHolds(c, env, cl, res, err))
						})
					},
				},
			},
		}
	})
}

// instantPoll is how often finish reads the VM's hydration.
const instantPoll = 2 * time.Second

// withCluster connects to Prism (no repository) and calls fn.
func withCluster(c *cli.Context, fn func(*cliEnv, *nutanix.Client) error) error {
	env := envFrom(c)
	o, err := clusterOptions(c, env)
	if err != nil {
		return err
	}
	cl, err := nutanix.Connect(c.Context, o)
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(env, cl)
}

// jsonOr writes v as JSON unless err.
func jsonOr(env *cliEnv, v any, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(env.Stdout, v)
}

func printInstant(env *cliEnv, vms []restore.InstantVM) {
	if len(vms) == 0 {
		fmt.Fprintln(env.Stdout, "no VM reads from an external repository")
		return
	}
	for _, v := range vms {
		state := "hydrating"
		if v.Hydrated {
			state = "hydrated"
		}
		fmt.Fprintf(env.Stdout, "%s (%s) power %s, %s\n", v.Name, v.UUID, v.PowerState, state)
		for _, d := range v.Disks {
			line := fmt.Sprintf("  %-8s %10s  %s", d.Address, ibytes(d.Size), d.Status)
			if d.Status != "HYDRATED" {
				line += fmt.Sprintf(", %s left", ibytes(d.Remaining))
				if d.Size > 0 {
					line += fmt.Sprintf(" (%.0f%% done)", 100*float64(d.Size-d.Remaining)/float64(d.Size))
				}
			}
			fmt.Fprintln(env.Stdout, line)
		}
	}
}

// releaseHolds removes, after finish or cancel (res), the holds whose
// external repositories are gone, through the repository of --repo;
// without one it says how they go.
func releaseHolds(c *cli.Context, env *cliEnv, cl nutanix.Cluster, res *restore.FinishResult, err error) error {
	if res == nil {
		return err
	}
	if c.String("repo") == "" {
		if len(res.RemovedRepositories) == 0 {
			return err
		}
		fmt.Fprintln(env.Stderr, "note: the restore point stays held (forget and prune keep it) until 'ahvfs cleanup' runs with its repository, or give finish --repo")
		return err
	}
	repo, rerr := openRepo(c.Context, c, env, false)
	if rerr == nil {
		var gone []engine.Hold
		gone, rerr = restore.SweepHolds(c.Context, repo, cl)
		for _, h := range gone {
			res.ReleasedHolds = append(res.ReleasedHolds, h.Point)
		}
		repo.Close()
	}
	if rerr != nil {
		return errors.Join(err, fmt.Errorf("the restore point stays held: %w", rerr))
	}
	return err
}

func reportFinish(env *cliEnv, what string, res *restore.FinishResult, err error) error {
	if res == nil {
		return err
	}
	if env.JSON {
		if jerr := writeJSON(env.Stdout, res); jerr != nil {
			return jerr
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "VM %s %s\n", res.VM.Name, what)
	for _, n := range res.RemovedRepositories {
		fmt.Fprintf(env.Stdout, "removed external repository %s\n", n)
	}
	for _, n := range res.KeptRepositories {
		fmt.Fprintf(env.Stdout, "kept external repository %s (another VM reads from it, or ahvfs did not register it)\n", n)
	}
	for _, n := range res.ReleasedHolds {
		fmt.Fprintf(env.Stdout, "released the hold on %s\n", n)
	}
	return err
}
