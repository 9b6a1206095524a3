package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/restore"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "cleanup",
			Usage: "remove snapshots, volume groups, attachments, images and half-made VMs left on the cluster by interrupted jobs",
			Description: "Deletes every cluster object that the repository's journal records for jobs that are no longer\n" +
				"running (killed, crashed, or whose own teardown failed), whatever job made them, through the API\n" +
				"that created each, and reports only deletions the cluster confirmed. Reference snapshots the next\n" +
				"backups need are kept; running jobs are left alone, and so are jobs made through another Prism\n" +
				"(listed: run cleanup with --prism there). Every backup and restore does the same at its start.\n" +
				"It also removes the holds of instant restores whose external repository is gone from the cluster.",
			Flags: append(clusterFlags(), repoPasswordFlag(), sourceFlag()),
			Action: func(c *cli.Context) error {
				return runCleanup(c.Context, c, envFrom(c))
			},
		}
	})
}

func runCleanup(ctx context.Context, c *cli.Context, env *cliEnv) error {
	ep, err := xenEndpoint(c)
	if err != nil {
		return err
	}
	if ep == "" {
		if _, err := clusterOptions(c, env); err != nil {
			return err
		}
	}
	repo, err := openRepo(ctx, c, env, false)
	if err != nil {
		return err
	}
	defer repo.Close()
	j, err := repoJournal(repo)
	if err != nil {
		return err
	}
	if ep != "" {
		return cleanupXen(ctx, c, env, j)
	}
	return cleanupPrism(ctx, c, env, repo, j)
}

// cleanupPrism sweeps the jobs made through the Prism the flags name.
func cleanupPrism(ctx context.Context, c *cli.Context, env *cliEnv, repo restore.Holder, j *clusterjob.Journal) error {
	cl, conn, err := siteFromFlags(ctx, c, env)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer conn.Close()
	rep, err := clusterjob.Sweep(ctx, j, conn.Clusters, env.Log)
	// Then the holds of instant restores whose repository is gone: the
	// sweep may just have removed one.
	out := cleanupReport{Report: rep}
	gone, herr := restore.SweepHolds(ctx, repo, cl)
	for _, h := range gone {
		out.ReleasedHolds = append(out.ReleasedHolds, h.Point)
	}
	err = errors.Join(err, herr)
	return reportCleanup(env, out, err)
}

// cleanupXen sweeps the jobs made on the XCP-ng pool --source names.
func cleanupXen(ctx context.Context, c *cli.Context, env *cliEnv, j *clusterjob.Journal) error {
	xc, err := xenFromFlags(ctx, c, env)
	if err != nil {
		return err
	}
	defer xc.Close(context.WithoutCancel(ctx))
	rep, err := clusterjob.SweepXen(ctx, j, xc, env.Log)
	return reportCleanup(env, cleanupReport{Report: rep}, err)
}

func reportCleanup(env *cliEnv, out cleanupReport, err error) error {
	if env.JSON {
		if werr := writeJSON(env.Stdout, out); werr != nil {
			return werr
		}
	} else {
		printCleanup(env, out.Report)
		for _, p := range out.ReleasedHolds {
			fmt.Fprintf(env.Stdout, "released the hold on %s (its instant restore is over)\n", p)
		}
		fmt.Fprintf(env.Stdout, "%s\n", out.Report.Summary())
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// cleanupReport is what cleanup --json prints: the sweep's report and
// the restore points whose holds went.
type cleanupReport struct {
	*clusterjob.Report
	ReleasedHolds []string `json:"released_holds,omitempty"`
}

// printCleanup lists what a sweep did, one line per object.
func printCleanup(env *cliEnv, rep *clusterjob.Report) {
	for _, s := range rep.Deleted {
		fmt.Fprintf(env.Stdout, "deleted %s\n", s)
	}
	for _, s := range rep.Finished {
		fmt.Fprintf(env.Stdout, "finished the overwrite of %s\n", s)
	}
	for _, s := range rep.Released {
		fmt.Fprintf(env.Stdout, "kept %s (a reference snapshot, or the repository of an instantly restored VM: instant-restore finish removes it)\n", s)
	}
	for _, s := range rep.Unresolved {
		fmt.Fprintf(env.Stdout, "left %s\n", s)
	}
	for _, s := range rep.Running {
		fmt.Fprintf(env.Stdout, "skipped job %s (still running)\n", s)
	}
	for _, s := range rep.Elsewhere {
		fmt.Fprintf(env.Stdout, "skipped the %s\n", s)
	}
}
