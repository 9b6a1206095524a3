package main

import (
	"context"
	"fmt"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "unlock",
			Usage:     "remove stale repository locks (a dead host's), with a warning for each",
			ArgsUsage: " ",
			Description: "On an s3:// repository every process that has it open keeps a lock object in the bucket,\n" +
				"refreshed every 5 minutes; gc keeps an exclusive one. A host that died leaves its lock behind:\n" +
				"it is stale once it is 30 minutes old by the store's clock (at once when it names a process of\n" +
				"this host that is gone), and unlock removes it. --all also removes live locks: only when you\n" +
				"know their processes are gone, since a gc could then delete what a running backup stores.\n" +
				"A local repository's lock is released by the kernel when its holder exits: unlock only says who holds it.\n" +
				"With --repo https://HOST:PORT the server (ahvfs serve) removes its repository's stale locks (--all only\n" +
				"on the DR host itself); an append-only server refuses.",
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "all", Usage: "also remove locks that are not stale (dangerous: see above)"},
			}, clientTLSFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() > 0 {
					return usagef("unlock: unexpected argument %q", c.Args().First())
				}
				if _, err := repoDir(c); err != nil {
					return err
				}
				if loc := c.String("repo"); dr.IsRemote(loc) {
					return unlockRemote(c, env, loc)
				}
				if !isS3Repo(c) {
					return unlockLocal(env, c.String("repo"))
				}
				be, err := openS3Backend(c.Context, c, false, false)
				if err != nil {
					return err
				}
				defer be.Close()
				removed, err := engine.RemoveRepoLocks(c.Context, be, c.Bool("all"))
				for _, h := range removed {
					fmt.Fprintf(env.Stderr, "ahvfs: warning: removed the %s; make sure that process is really gone\n", h)
				}
				if err != nil {
					return err
				}
				left, err := engine.RepoLocks(c.Context, be)
				if err != nil {
					return err
				}
				if env.JSON {
					return writeJSON(env.Stdout, map[string]any{"removed": nonNil(removed), "live": nonNil(left)})
				}
				fmt.Fprintf(env.Stdout, "removed %d stale lock(s)\n", len(removed))
				for _, h := range left {
					fmt.Fprintf(env.Stdout, "live: %s\n", h)
				}
				return nil
			},
		}
	})
}

func nonNil(h []engine.LockHolder) []engine.LockHolder {
	if h == nil {
		return []engine.LockHolder{}
	}
	return h
}

// unlockLocal reports who holds a local repository's writer lock.
func unlockLocal(env *cliEnv, dir string) error {
	holder, held := engine.LocalLockHolder(dir)
	if !held {
		fmt.Fprintln(env.Stdout, "the repository is not locked (a local lock ends with its process: nothing to remove)")
		return nil
	}
	return fmt.Errorf("%w (%s): a local lock ends when its process exits; stop that process instead", engine.ErrLocked, holder)
}

// unlockRemote has an ahvfs serve remove its repository's stale locks.
func unlockRemote(c *cli.Context, env *cliEnv, loc string) error {
	if c.Bool("all") {
		return usagef("unlock --all: not through a server; run it on the DR host itself")
	}
	rem, err := dialRemote(c, loc)
	if err != nil {
		return err
	}
	defer rem.Close()
	rep, err := rem.Unlock(c.Context)
	if err != nil {
		return err
	}
	for _, h := range rep.Removed {
		fmt.Fprintf(env.Stderr, "ahvfs: warning: the server removed the %s\n", h)
	}
	if env.JSON {
		return writeJSON(env.Stdout, rep)
	}
	fmt.Fprintf(env.Stdout, "removed %d stale lock(s)\n", len(rep.Removed))
	for _, h := range rep.Live {
		fmt.Fprintf(env.Stdout, "live: %s\n", h)
	}
	return nil
}

// serverUnlock is ahvfs serve's unlock (dr.Server.Unlock): the stale
// lock objects of a shared repository removed, and the live locks.
func serverUnlock(ctx context.Context, c *cli.Context) (removed, live []string, err error) {
	if !isS3Repo(c) {
		if holder, held := engine.LocalLockHolder(c.String("repo")); held {
			live = append(live, holder)
		}
		return nil, live, nil
	}
	be, err := openS3Backend(ctx, c, false, false)
	if err != nil {
		return nil, nil, err
	}
	defer be.Close()
	gone, err := engine.RemoveRepoLocks(ctx, be, false)
	for _, h := range gone {
		removed = append(removed, h.String())
	}
	if err != nil {
		return removed, nil, err
	}
	left, err := engine.RepoLocks(ctx, be)
	for _, h := range left {
		live = append(live, h.String())
	}
	return removed, live, err
}
