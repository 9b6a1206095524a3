package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/daemon"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/failover"
	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		configFlag := &cli.StringFlag{Name: "config", Usage: "daemon configuration `FILE` whose [[cluster]] tables the plan may name"}
		return &cli.Command{
			Name:  "failover",
			Usage: "recovery plans at the DR site (docs/failover.md)",
			Subcommands: []*cli.Command{
				bringUpCommand(failover.ModeTest, "restore the plan's VMs at the DR site, renamed, on the test networks, stage by stage", configFlag),
				bringUpCommand(failover.ModePlanned, "move the plan's VMs to the DR site with no data lost: shut each down at the source, back it up last into source_repository, sync, restore at the DR site on the production networks, stage by stage", configFlag),
				bringUpCommand(failover.ModeUnplanned, "the source site is lost: restore the plan's VMs at the DR site from their newest replicated points, on the production networks, and report each one's recovery point", configFlag,
					&cli.BoolFlag{Name: "force", Usage: "run even though the source site answers and runs VMs of the plan"}),
				{
					Name:      "undo",
					Usage:     "remove exactly what the plan's failover made at the DR site (a planned one's source VMs are powered back on)",
					ArgsUsage: "PLAN",
					Flags: []cli.Flag{configFlag,
						&cli.BoolFlag{Name: "force", Usage: "also undo a failover that is not a test (it deletes the production VMs it made at the DR site)"}},
					Action: func(c *cli.Context) error {
						env := envFrom(c)
						p, err := loadPlan(c)
						if err != nil {
							return err
						}
						st, err := failover.Undo(c.Context, p, failover.Options{Logger: env.Log, Force: c.Bool("force"), Progress: func(v failover.VMState) {
							if !env.JSON {
								fmt.Fprintf(env.Stdout, "%s: %s\n", v.Name, v.Status)
							}
						}})
						if err != nil {
							return err
						}
						if env.JSON {
							return writeJSON(env.Stdout, st)
						}
						fmt.Fprintf(env.Stdout, "plan %s: the DR site holds nothing of the %s failover any more\n", p.Name, st.Mode)
						return nil
					},
				}, {
					Name:      "status",
					Usage:     "what the plan's failover made, checked against the DR site",
					ArgsUsage: "PLAN",
					Flags:     []cli.Flag{configFlag},
					Action: func(c *cli.Context) error {
						env := envFrom(c)
						p, err := loadPlan(c)
						if err != nil {
							return err
						}
						st, err := failover.PlanStatus(c.Context, p, failover.Options{Logger: env.Log})
						if err != nil {
							return err
						}
						if env.JSON {
							return writeJSON(env.Stdout, st)
						}
						if st.State == nil {
							fmt.Fprintf(env.Stdout, "plan %s: no failover is up\n", p.Name)
							return nil
						}
						fmt.Fprintf(env.Stdout, "plan %s: %s failover started %s, at %s\n", p.Name, st.State.Mode, st.State.Started.Format("2006-01-02T15:04:05Z"), st.State.Site)
						tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "STAGE\tVM\tRESTORE POINT\tAT DR\tSTATE\tON THE CLUSTER")
						for i, v := range st.State.VMs {
							live := "absent"
							if l := st.Live[i]; l.Exists {
								live = l.PowerState
							}
							fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", v.Stage, v.VM, v.Point, v.Name, v.Status, live)
						}
						return tw.Flush()
					},
				}},
		}
	})
}

// bringUpCommand is `ahvfs failover test` or `unplanned`.
func bringUpCommand(mode, usage string, flags ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:      mode,
		Usage:     usage,
		ArgsUsage: "PLAN",
		Flags: append(flags,
			&cli.BoolFlag{Name: "dry-run", Usage: "check the plan against the DR repository and site, change nothing, report every problem"}),
		Action: func(c *cli.Context) error {
			env := envFrom(c)
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			o := failover.Options{Logger: env.Log, Force: c.Bool("force"), Progress: func(v failover.VMState) {
				if !env.JSON {
					fmt.Fprintf(env.Stdout, "stage %d: %s (%s) as %s: %s\n", v.Stage, v.VM, v.Point, v.Name, v.Status)
				}
			}}
			if c.Bool("dry-run") {
				if err := failover.Check(c.Context, p, o, mode); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "plan %s: a %s failover can run\n", p.Name, mode)
				return nil
			}
			run := map[string]func(context.Context, *failover.Plan, failover.Options) (*failover.State, error){
				failover.ModeTest: failover.Test, failover.ModePlanned: failover.Planned, failover.ModeUnplanned: failover.Unplanned}[mode]
			st, err := run(c.Context, p, o)
			if err != nil {
				return err
			}
			if env.JSON {
				return writeJSON(env.Stdout, st)
			}
			switch mode {
			case failover.ModeTest:
				fmt.Fprintf(env.Stdout, "test failover of plan %s is up: %d VMs; remove it with ahvfs failover undo %s\n", p.Name, len(st.VMs), c.Args().First())
				return nil
			case failover.ModePlanned:
				fmt.Fprintf(env.Stdout, "plan %s: %d VMs moved to the DR site with nothing lost (%s sent by the last sync):\n", p.Name, len(st.VMs), humanize.IBytes(uint64(st.BytesSent)))
				for _, v := range st.VMs {
					fmt.Fprintf(env.Stdout, "  %s: shut down (%s) at %s, restored from %s\n", v.VM, firstNonEmptyStr(v.Shutdown, "was off"), engine.FormatTime(v.SourceOff), v.Point)
				}
				return nil
			}
			fmt.Fprintf(env.Stdout, "plan %s: %d VMs run at the DR site; what each wrote after its recovery point is lost:\n", p.Name, len(st.VMs))
			for _, v := range st.VMs {
				fmt.Fprintf(env.Stdout, "  %s: recovery point %s (%s before the failover)\n", v.VM, engine.FormatTime(v.PointTime),
					st.Started.Sub(v.PointTime).Round(time.Second))
			}
			return nil
		},
	}
}

// loadPlan reads the plan argument, with the [[cluster]] tables of
// --config when given.
func loadPlan(c *cli.Context) (*failover.Plan, error) {
	if c.NArg() != 1 {
		return nil, usagef("give the recovery plan FILE")
	}
	var sites []clusterjob.Site
	if f := c.String("config"); f != "" {
		cfg, err := daemon.Load(f)
		if err != nil {
			return nil, usagef("--config: %v", err)
		}
		for _, cl := range cfg.Cluster {
			sites = append(sites, cl.Site)
		}
	}
	p, err := failover.Load(c.Args().First(), sites)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return p, nil
}
