package main

import (
	"context"
	"fmt"

	"github.com/ahvfs/ahvfs/backup"
	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "cleanup",
			Usage: "remove snapshots, volume groups and attachments left on the cluster by interrupted jobs",
			Description: "Deletes every cluster object the repository's ledger records for jobs that did not finish,\n" +
				"except the reference snapshots the next backups need. `ahvfs backup` does the same at its start.",
			Flags: append(clusterFlags(), repoPasswordFlag()),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				co, err := clusterOptions(c, env)
				if err != nil {
					return err
				}
				return runCleanup(c.Context, c, env, co)
			},
		}
	})
}

func runCleanup(ctx context.Context, c *cli.Context, env *cliEnv, co nutanix.Options) error {
	repo, err := openRepo(ctx, c, env, true)
	if err != nil {
		return err
	}
	defer repo.Close()
	cl, err := nutanix.Connect(ctx, co)
	if err != nil {
		return err
	}
	defer cl.Close()
	rep, err := backup.Cleanup(ctx, repo, cl, env.Log)
	if env.JSON {
		if werr := writeJSON(env.Stdout, rep); werr != nil {
			return werr
		}
	} else {
		for _, s := range rep.Deleted {
			fmt.Fprintf(env.Stdout, "deleted %s\n", s)
		}
		for _, s := range rep.Released {
			fmt.Fprintf(env.Stdout, "kept %s (now a reference snapshot)\n", s)
		}
		for _, s := range rep.Unresolved {
			fmt.Fprintf(env.Stdout, "unresolved %s\n", s)
		}
		fmt.Fprintf(env.Stdout, "%s\n", rep.Summary())
	}
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(rep.Unresolved) > 0 {
		return fmt.Errorf("cleanup: %d objects could not be resolved (see above)", len(rep.Unresolved))
	}
	return nil
}
