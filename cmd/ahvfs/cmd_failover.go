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
	registerFunc(failbackCommand)
	registerFunc(func() *cli.Command {
		configFlag := planConfigFlag()
		return &cli.Command{
			Name:  "failover",
			Usage: "recovery plans at the DR site (docs/failover.md)",
			Subcommands: []*cli.Command{
				bringUpCommand(failover.ModeTest, "restore the plan's VMs at the DR site, renamed, on the test networks, stage by stage", configFlag),
				bringUpCommand(failover.ModePlanned, "move the plan's VMs to the DR site with no data lost: shut each down at the source, back it up last into source_repository, sync, restore at the DR site on the production networks, stage by stage", configFlag),
				bringUpCommand(failover.ModeUnplanned, "the source site is lost: restore the plan's VMs at the DR site from their newest replicated points, on the production networks, and report each one's recovery point", configFlag,
					&cli.BoolFlag{Name: "force", Usage: "run even though the source site answers and runs VMs of the plan"}),
				{
					Name:      "permanent",
					Usage:     "make the DR site the source of truth after a planned or unplanned failover: each DR VM is backed up into the DR repository at once, its chain continuing there; undo is then refused, failback moves the VMs back",
					ArgsUsage: "PLAN",
					Flags:     []cli.Flag{configFlag},
					Action: withPlan(func(c *cli.Context, env *cliEnv, p *failover.Plan) error {
						st, err := failover.Permanent(c.Context, p, failover.Options{Logger: env.Log})
						if st != nil && env.JSON {
							if jerr := writeJSON(env.Stdout, st); jerr != nil {
								return jerr
							}
						}
						if err != nil {
							return err
						}
						if !env.JSON {
							fmt.Fprintf(env.Stdout, "plan %s: the DR site is the source of truth; back its VMs up into %s from now on; ahvfs failback %s moves them back\n", p.Name, p.Repository, c.Args().First())
							for _, v := range st.VMs {
								fmt.Fprintf(env.Stdout, "  %s: first backup at DR %s (on %s)\n", v.Name, v.DRPoint, v.Point)
							}
						}
						return nil
					}),
				}, {
					Name:      "undo",
					Usage:     "remove exactly what the plan's failover made at the DR site (a planned one's source VMs are powered back on)",
					ArgsUsage: "PLAN",
					Flags: []cli.Flag{configFlag,
						&cli.BoolFlag{Name: "force", Usage: "also undo a failover that is not a test (it deletes the production VMs it made at the DR site)"}},
					Action: withPlan(func(c *cli.Context, env *cliEnv, p *failover.Plan) error {
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
					}),
				}, {
					Name:      "status",
					Usage:     "what the plan's failover made, checked against the DR site",
					ArgsUsage: "PLAN",
					Flags:     []cli.Flag{configFlag},
					Action: withPlan(func(c *cli.Context, env *cliEnv, p *failover.Plan) error {
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
						mode := st.State.Mode
						if st.State.Permanent {
							mode = "permanent " + mode
						}
						fmt.Fprintf(env.Stdout, "plan %s: %s failover started %s, at %s\n", p.Name, mode, st.State.Started.Format("2006-01-02T15:04:05Z"), st.State.Site)
						back := st.State.Back != nil
						if back {
							fmt.Fprintf(env.Stdout, "failback started %s (run ahvfs failback again to go on)\n", st.State.Back.Started.Format("2006-01-02T15:04:05Z"))
						}
						tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
						fmt.Fprint(tw, "STAGE\tVM\tRESTORE POINT\tAT DR\tSTATE\tON THE CLUSTER")
						if back {
							fmt.Fprint(tw, "\tFAILBACK")
						}
						fmt.Fprintln(tw)
						if st.Unreachable != "" {
							fmt.Fprintf(env.Stdout, "the DR site does not answer (%s): the state as last written\n", st.Unreachable)
						}
						for i, v := range st.State.VMs {
							live := "unknown"
							if i < len(st.Live) {
								live = "absent"
								if l := st.Live[i]; l.Exists {
									live = l.PowerState
								}
							}
							fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s", v.Stage, v.VM, v.Point, v.Name, v.Status, live)
							if back && v.Back != nil {
								fmt.Fprintf(tw, "\t%s", v.Back.Status)
							}
							fmt.Fprintln(tw)
						}
						return tw.Flush()
					}),
				}},
		}
	})
}

// failbackCommand is `ahvfs failback PLAN`.
func failbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "failback",
		Usage:     "move a planned or unplanned failover's VMs back to the source site: shut them down at DR, back them up last, sync only what changed, restore them over their old source VMs stage by stage",
		ArgsUsage: "PLAN",
		Flags:     []cli.Flag{planConfigFlag()},
		Action: withPlan(func(c *cli.Context, env *cliEnv, p *failover.Plan) error {
			st, err := failover.Failback(c.Context, p, failover.Options{Logger: env.Log, Progress: func(v failover.VMState) {
				if !env.JSON && v.Back != nil {
					fmt.Fprintf(env.Stdout, "stage %d: %s: %s\n", v.Stage, v.VM, v.Back.Status)
				}
			}})
			if err != nil {
				return err
			}
			if env.JSON {
				return writeJSON(env.Stdout, st)
			}
			fmt.Fprintf(env.Stdout, "plan %s: %d VMs are back at the source site; %s of changes sent from the DR site\n", p.Name, len(st.VMs), humanize.IBytes(uint64(st.Back.BytesSent)))
			return nil
		}),
	}
}

// bringUpCommand is `ahvfs failover test`, `planned` or `unplanned`.
func bringUpCommand(mode, usage string, flags ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name:      mode,
		Usage:     usage,
		ArgsUsage: "PLAN",
		Flags: append(flags,
			&cli.BoolFlag{Name: "dry-run", Usage: "check the plan against the DR repository and site, change nothing, report every problem"}),
		Action: withPlan(func(c *cli.Context, env *cliEnv, p *failover.Plan) error {
			o := failover.Options{Logger: env.Log, Force: c.Bool("force"), Progress: func(v failover.VMState) {
				if !env.JSON {
					fmt.Fprintf(env.Stdout, "stage %d: %s (%s) as %s: %s\n", v.Stage, v.VM, v.Point, v.Name, v.Status)
				}
			}}
			if c.Bool("dry-run") {
				room, err := failover.Check(c.Context, p, o, mode)
				if env.JSON {
					if werr := writeJSON(env.Stdout, room); werr != nil {
						return werr
					}
				} else {
					fmt.Fprint(env.Stdout, room)
				}
				if err != nil {
					return err
				}
				if !env.JSON {
					fmt.Fprintf(env.Stdout, "plan %s: a %s failover can run\n", p.Name, mode)
				}
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
		}),
	}
}

// planConfigFlag is --config of the commands that read a plan.
func planConfigFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "daemon configuration `FILE` whose [[cluster]] tables the plan may name"}
}

// withPlan is the action of a command on the plan argument: fn gets it
// read and checked.
func withPlan(fn func(c *cli.Context, env *cliEnv, p *failover.Plan) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		p, err := loadPlan(c)
		if err != nil {
			return err
		}
		return fn(c, envFrom(c), p)
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
