package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/retention"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "prune",
			Usage: "apply a retention policy to each VM's restore points and forget the rest",
			Description: "Per VM, prune keeps the newest restore point in each of the N most recent hours, days,\n" +
				"ISO weeks, months and years that have one (UTC), the N newest, and every one within\n" +
				"SPAN of the newest: the union of the rules given. Locked restore points are always\n" +
				"kept, and so are held ones (an instant restore's VM reads from them). Every restore point is self-contained, so removing the one an incremental was\n" +
				"taken against never breaks it. 'ahvfs gc' then reclaims the space.\n" +
				"With --repo https://HOST:PORT the server (ahvfs serve) prunes its repository; an\n" +
				"append-only server refuses all but --dry-run.",
			Flags: append([]cli.Flag{
				&cli.StringSliceFlag{Name: "vm", Usage: "only VMs whose name matches `GLOB` (* and ? match any character, / too; repeatable; default every VM)"},
				&cli.IntFlag{Name: "keep-last", Usage: "keep the `N` newest"},
				&cli.IntFlag{Name: "keep-hourly", Usage: "keep the newest of each of the `N` most recent hours that have one"},
				&cli.IntFlag{Name: "keep-daily", Usage: "… of the `N` most recent days"},
				&cli.IntFlag{Name: "keep-weekly", Usage: "… of the `N` most recent ISO weeks"},
				&cli.IntFlag{Name: "keep-monthly", Usage: "… of the `N` most recent months"},
				&cli.IntFlag{Name: "keep-yearly", Usage: "… of the `N` most recent years"},
				&cli.StringFlag{Name: "keep-within", Usage: "keep every one within `SPAN` of the newest (7d, 2w, 1y6m, 36h)"},
				&cli.BoolFlag{Name: "dry-run", Usage: "say what would be removed, remove nothing"},
				repoPasswordFlag(),
			}, clientTLSFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() > 0 {
					return usagef("prune: unexpected argument %q (VMs are chosen with --vm GLOB)", c.Args().First())
				}
				p := retention.Policy{Last: c.Int("keep-last"), Hourly: c.Int("keep-hourly"), Daily: c.Int("keep-daily"),
					Weekly: c.Int("keep-weekly"), Monthly: c.Int("keep-monthly"), Yearly: c.Int("keep-yearly")}
				if s := c.String("keep-within"); s != "" {
					span, err := retention.ParseSpan(s)
					if err != nil {
						return usagef("--keep-within: %v", err)
					}
					p.Within = span
				}
				if err := p.Validate(); err != nil {
					return usagef("prune: %v", err)
				}
				if p.Empty() {
					return usagef("prune: give at least one --keep-* rule (a prune without one would remove every restore point that is not locked)")
				}
				// A dry run only reads: it does not wait for a backup's lock.
				dry := c.Bool("dry-run")
				if loc := c.String("repo"); dr.IsRemote(loc) {
					rem, err := dialRemote(c, loc)
					if err != nil {
						return err
					}
					defer rem.Close()
					plan, reclaim, err := rem.Prune(c.Context, c.StringSlice("vm"), p, dry)
					if err != nil {
						return err
					}
					return printPrune(env, plan, p, dry, reclaim)
				}
				r, err := openRepo(c.Context, c, env, !dry)
				if err != nil {
					return err
				}
				defer r.Close()
				plan, err := r.PlanPrune(c.Context, engine.PruneOptions{VMs: c.StringSlice("vm"), Policy: p})
				if err != nil {
					return err
				}
				var reclaim int64
				if dry {
					if reclaim, err = r.ReclaimableAfter(c.Context, plan.Remove); err != nil {
						return err
					}
				} else if len(plan.Remove) > 0 {
					if err := r.Forget(c.Context, plan.Remove); err != nil {
						return err
					}
					// The job history goes with the restore points.
					if _, err := r.PruneJobs(c.Context, time.Now()); err != nil {
						env.Log.Warn("job history not pruned", "err", err)
					}
				}
				return printPrune(env, plan, p, dry, reclaim)
			},
		}
	})
}

type pruneResult struct {
	Keep    []string            `json:"keep"`
	Remove  []string            `json:"remove"`
	Reasons map[string][]string `json:"reasons"` // VM@TIME → why it is kept
	Policy  string              `json:"policy"`
	DryRun  bool                `json:"dry_run"`
	// Reclaimable is what gc would then reclaim (dry run only).
	Reclaimable int64 `json:"reclaimable_bytes,omitempty"`
}

func printPrune(env *cliEnv, plan *engine.PrunePlan, p retention.Policy, dry bool, reclaim int64) error {
	res := pruneResult{Keep: []string{}, Remove: []string{}, Reasons: map[string][]string{}, Policy: p.String(), DryRun: dry, Reclaimable: reclaim}
	for _, rp := range plan.Keep {
		res.Keep = append(res.Keep, rp.Name())
		res.Reasons[rp.Name()] = plan.Reasons[rp.ID]
	}
	for _, rp := range plan.Remove {
		res.Remove = append(res.Remove, rp.Name())
	}
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tRESTORE POINT\tWHY")
	for _, n := range res.Keep {
		fmt.Fprintf(tw, "keep\t%s\t%s\n", n, strings.Join(res.Reasons[n], ", "))
	}
	verb := "remove"
	if dry {
		verb = "would remove"
	}
	for _, n := range res.Remove {
		fmt.Fprintf(tw, "%s\t%s\t-\n", verb, n)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case dry:
		fmt.Fprintf(env.Stdout, "policy %s: would keep %d restore points and remove %d, and gc would then reclaim %s (dry run: nothing removed)\n",
			res.Policy, len(res.Keep), len(res.Remove), ibytes(reclaim))
	case len(res.Remove) > 0:
		fmt.Fprintf(env.Stdout, "policy %s: kept %d restore points, removed %d; run 'ahvfs gc' to reclaim their space\n", res.Policy, len(res.Keep), len(res.Remove))
	default:
		fmt.Fprintf(env.Stdout, "policy %s: kept all %d restore points\n", res.Policy, len(res.Keep))
	}
	return nil
}
