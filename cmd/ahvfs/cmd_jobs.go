package main

import (
	"fmt"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "jobs",
			Usage: "job history: what the daemon ran, when, and how it ended",
			Description: "Lists the job records of the repository, oldest first: backups (with each VM's result),\n" +
				"prunes, syncs and verifies. The history is pruned with the restore points.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "vm", Usage: "only jobs that touched VMs matching `GLOB`"},
				&cli.BoolFlag{Name: "failed", Usage: "only jobs that did not end ok (failed, partial, cancelled, damaged)"},
				&cli.StringFlag{Name: "kind", Usage: "only jobs of `KIND`: backup, prune, sync or verify"},
				&cli.StringFlag{Name: "policy", Usage: "only jobs of policy `NAME`"},
				&cli.IntFlag{Name: "last", Usage: "only the `N` newest jobs"},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				glob := c.String("vm")
				if _, err := path.Match(glob, ""); err != nil {
					return usagef("--vm %q: %v", glob, err)
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				all, err := r.Jobs(c.Context)
				if err != nil {
					return err
				}
				var jobs []engine.Job
				for _, j := range all {
					if keepJob(j, glob, c.Bool("failed"), c.String("kind"), c.String("policy")) {
						jobs = append(jobs, j)
					}
				}
				if n := c.Int("last"); n > 0 && len(jobs) > n {
					jobs = jobs[len(jobs)-n:]
				}
				if env.JSON {
					if jobs == nil {
						jobs = []engine.Job{}
					}
					return writeJSON(env.Stdout, map[string]any{"jobs": jobs})
				}
				printJobs(env, jobs)
				return nil
			},
		}
	})
}

// keepJob applies the filters of `ahvfs jobs`; a --vm filter keeps only
// the matching VMs of a job.
func keepJob(j engine.Job, vm string, failed bool, kind, policy string) bool {
	if failed && j.Result == engine.JobOK || kind != "" && j.Kind != kind || policy != "" && j.Policy != policy {
		return false
	}
	if vm == "" {
		return true
	}
	for _, v := range j.VMs {
		if ok, _ := path.Match(vm, v.VM); ok {
			return true
		}
	}
	return false
}

func printJobs(env *cliEnv, jobs []engine.Job) {
	if len(jobs) == 0 {
		fmt.Fprintln(env.Stdout, "no jobs")
		return
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tKIND\tPOLICY\tTRIGGER\tRESULT\tVMS\tREAD\tSTORED\tTIME\tERROR")
	for _, j := range jobs {
		vms := make([]string, 0, len(j.VMs))
		for _, v := range j.VMs {
			s := v.VM
			if v.Result != engine.JobOK {
				s += "(" + v.Result + ")"
			}
			vms = append(vms, s)
		}
		took := "-"
		if !j.End.IsZero() {
			took = j.End.Sub(j.Start).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", engine.FormatTime(j.Start), j.Kind, dash(j.Policy), dash(j.Trigger), j.Result,
			dash(strings.Join(vms, ",")), ibytes(j.BytesRead), ibytes(j.BytesStored), took, dash(j.Error))
	}
	tw.Flush()
	for _, j := range jobs {
		for _, n := range j.Notes {
			fmt.Fprintf(env.Stdout, "note: %s %s/%s: %s\n", engine.FormatTime(j.Start), j.Kind, dash(j.Policy), n)
		}
	}
}
