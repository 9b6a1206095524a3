package main

import (
	"fmt"
	"slices"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "holds",
			Usage:     "restore points held because something reads from them (instant restores hydrating): forget and prune keep them",
			ArgsUsage: " ",
			Description: "An instant restore holds its restore point until 'instant-restore finish' or 'cancel' (with\n" +
				"--repo), or 'ahvfs cleanup', sees its external repository gone. A hold left behind (the\n" +
				"cluster or its Prism is gone for good) is removed with 'holds remove ID': only once no VM\n" +
				"reads from the point any more, since a forget could then remove what it hydrates from.",
			Flags: []cli.Flag{repoPasswordFlag()},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() > 0 {
					return usagef("holds: unexpected argument %q (remove one with 'holds remove ID')", c.Args().First())
				}
				r, holds, err := openHolds(c, env)
				if err != nil {
					return err
				}
				defer r.Close()
				if env.JSON {
					return writeJSON(env.Stdout, append([]engine.Hold{}, holds...))
				}
				if len(holds) == 0 {
					fmt.Fprintln(env.Stdout, "no restore point is held")
				}
				for _, h := range holds {
					fmt.Fprintf(env.Stdout, "%s  %s\n", h.ID, h)
				}
				return nil
			},
			Subcommands: []*cli.Command{{
				Name:      "remove",
				Usage:     "remove holds by ID (only once nothing reads from their restore points)",
				ArgsUsage: "ID...",
				Flags:     []cli.Flag{repoPasswordFlag()},
				Action: func(c *cli.Context) error {
					env := envFrom(c)
					if c.NArg() == 0 {
						return usagef("holds remove: name the holds' IDs ('ahvfs holds' lists them)")
					}
					r, holds, err := openHolds(c, env)
					if err != nil {
						return err
					}
					defer r.Close()
					for _, id := range c.Args().Slice() {
						i := slices.IndexFunc(holds, func(h engine.Hold) bool { return h.ID == id })
						if i < 0 {
							return fmt.Errorf("holds remove: no hold %q ('ahvfs holds' lists them): %w", id, engine.ErrNotFound)
						}
						if err := r.RemoveHold(c.Context, id); err != nil {
							return err
						}
						fmt.Fprintf(env.Stdout, "removed the hold %s: %s\n", id, holds[i])
					}
					return nil
				},
			}},
		}
	})
}

// openHolds opens the repository (to read: holds need no writer lock) and
// lists its holds.
func openHolds(c *cli.Context, env *cliEnv) (*engine.Repository, []engine.Hold, error) {
	r, err := openRepo(c.Context, c, env, false)
	if err != nil {
		return nil, nil, err
	}
	holds, err := r.Holds(c.Context)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, holds, nil
}
