package main

import (
	"fmt"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "forget",
			Usage:     "remove restore points (never a locked or held one); 'ahvfs gc' then reclaims their space",
			ArgsUsage: "VM@TIME...",
			Description: "Every restore point is self-contained: removing the one an incremental was taken\n" +
				"against never breaks the incremental. A forget that names a locked restore point, or one\n" +
				"held because an instant restore's VM reads from it, removes nothing and says which lock\n" +
				"or hold stops it. The chunks stay until 'ahvfs gc'.",
			Flags: append([]cli.Flag{repoPasswordFlag()}, clientTLSFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() == 0 {
					return usagef("forget: name at least one restore point, VM@TIME")
				}
				for _, a := range c.Args().Slice() {
					if err := checkRestorePointArg(a); err != nil {
						return err
					}
				}
				if loc := c.String("repo"); dr.IsRemote(loc) {
					rem, err := dialRemote(c, loc)
					if err != nil {
						return err
					}
					defer rem.Close()
					names, err := rem.Forget(c.Context, c.Args().Slice())
					if err != nil {
						return err
					}
					return printForgotten(env, names)
				}
				r, err := openRepo(c.Context, c, env, true)
				if err != nil {
					return err
				}
				defer r.Close()
				var rps []*engine.RestorePoint
				seen := map[string]bool{}
				for _, a := range c.Args().Slice() {
					rp, err := r.Resolve(c.Context, a)
					if err != nil {
						return err
					}
					if !seen[rp.ID] {
						seen[rp.ID] = true
						rps = append(rps, rp)
					}
				}
				if err := r.Forget(c.Context, rps); err != nil {
					return err
				}
				var names []string
				for _, rp := range rps {
					names = append(names, rp.Name())
				}
				return printForgotten(env, names)
			},
		}
	})
}

// printForgotten reports the restore points a forget removed.
func printForgotten(env *cliEnv, names []string) error {
	if env.JSON {
		return writeJSON(env.Stdout, struct {
			Removed []string `json:"removed"`
		}{names})
	}
	for _, n := range names {
		fmt.Fprintf(env.Stdout, "removed %s\n", n)
	}
	fmt.Fprintln(env.Stdout, "run 'ahvfs gc' to reclaim the space no restore point needs any more")
	return nil
}
