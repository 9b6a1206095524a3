package main

import (
	"fmt"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "repair",
			Usage: "rebuild what can be rebuilt from the repository's own files",
			Subcommands: []*cli.Command{{
				Name:  "index",
				Usage: "rebuild the index cache from the packs and restore-point record files alone",
				Description: "The index is a cache: every restore point is also an immutable record file, and\n" +
					"every chunk is in a pack with its table. 'repair index' reads every pack, builds a\n" +
					"new index beside the old one, swaps it in and publishes it to readers. It takes the\n" +
					"writer lock. Packs that cannot be read are moved to quarantine/, never deleted.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "read-data", Usage: "also decode every chunk and check it against its ID (without: each pack is checked against its table and shard sums)"},
					repoPasswordFlag(),
				},
				Action: func(c *cli.Context) error {
					env := envFrom(c)
					pw, err := repoPassword(c)
					if err != nil {
						return err
					}
					o := engine.OpenOptions{Password: pw, Logger: env.Log, LockWait: c.Duration("lock-wait")}
					dir, err := remoteOptions(c.Context, c, &o)
					if err != nil {
						return err
					}
					rep, err := engine.RepairIndex(c.Context, dir, o, engine.RepairOptions{ReadData: c.Bool("read-data")})
					if err != nil {
						return hintRepoError(c.String("repo"), pw != nil, err)
					}
					if env.JSON {
						if err := writeJSON(env.Stdout, struct {
							OK bool `json:"ok"`
							*engine.RepairReport
						}{len(rep.Problems) == 0, rep}); err != nil {
							return err
						}
					} else {
						fmt.Fprintf(env.Stdout, "rebuilt the index in %.1fs: %d packs, %d chunks, %d restore points\n",
							rep.Seconds, rep.Packs, rep.Chunks, rep.RestorePoints)
						for _, p := range rep.Problems {
							fmt.Fprintf(env.Stdout, "problem: %s\n", p)
						}
					}
					if len(rep.Problems) > 0 {
						return fmt.Errorf("repair index: the index is rebuilt, but %d problem(s) remain (see above; 'ahvfs verify --read-data' checks the data)", len(rep.Problems))
					}
					return nil
				},
			}},
		}
	})
}
