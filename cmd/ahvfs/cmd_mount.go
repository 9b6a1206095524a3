package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/fusefs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "mount",
			Usage: "serve restore points as files: MOUNTPOINT/<vm>/<time>/disk-N.raw, vm.json, disk-N/part-M/...",
			Description: "Mounts the repository read-only with FUSE and blocks until SIGINT or SIGTERM, then unmounts.\n" +
				"New restore points appear without remounting. MOUNTPOINT must be an empty directory.",
			ArgsUsage: "MOUNTPOINT",
			Flags: []cli.Flag{
				repoPasswordFlag(),
				&cli.BoolFlag{Name: "allow-other", Usage: "let other users read the mount (needs user_allow_other in /etc/fuse.conf when not root)"},
				&cli.BoolFlag{Name: "foreground", Value: true, Usage: "stay in the foreground until interrupted (the only mode; run it under systemd or with & to background it)"},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 1 {
					return usagef("mount: want MOUNTPOINT")
				}
				if !c.Bool("foreground") {
					return usagef("mount: --foreground=false is not supported; run 'ahvfs mount' under systemd or in the background with &")
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runMount(c.Context, env, r, c.Args().First(), mountOptions{AllowOther: c.Bool("allow-other")})
			},
		}
	})
}

type mountOptions struct {
	AllowOther bool
}

// runMount mounts r on mountpoint and serves it until ctx is cancelled
// (SIGINT/SIGTERM) or someone unmounts it, then unmounts cleanly.
func runMount(ctx context.Context, env *cliEnv, r *engine.Repository, mountpoint string, o mountOptions) error {
	tree, err := rptree.New(r, rptree.Options{Logger: env.Log})
	if err != nil {
		return err
	}
	defer tree.Close()
	srv, err := fusefs.Mount(ctx, tree, mountpoint, fusefs.Options{AllowOther: o.AllowOther, Logger: env.Log, OthersOnly: true})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	if env.JSON {
		writeJSON(env.Stdout, map[string]string{"mountpoint": srv.Mountpoint(), "repo": r.Location()})
	} else {
		fmt.Fprintf(env.Stdout, "mounted %s on %s (read-only); Ctrl-C or SIGTERM unmounts\n", r.Location(), srv.Mountpoint())
	}
	select {
	case <-done:
		fmt.Fprintf(env.Stderr, "%s was unmounted from outside\n", srv.Mountpoint())
		return nil
	case <-ctx.Done():
	}
	return unmount(env, srv, done)
}

// unmount unmounts srv; if files are still open it says so, retries for a
// few seconds, then detaches the mount lazily and waits for the last
// file to close.
func unmount(env *cliEnv, srv *fusefs.Server, done <-chan struct{}) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = srv.Unmount(); err == nil || !errors.Is(err, fusefs.ErrBusy) {
			break
		}
		if attempt == 0 {
			fmt.Fprintf(env.Stderr, "%s is busy (a file or directory under it is in use); retrying\n", srv.Mountpoint())
		}
		time.Sleep(time.Second)
	}
	if errors.Is(err, fusefs.ErrBusy) {
		fmt.Fprintf(env.Stderr, "%s is still busy: detaching it now (umount -l); it goes away when the last open file is closed\n", srv.Mountpoint())
		if err = srv.UnmountLazy(); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	<-done
	if !env.JSON {
		fmt.Fprintf(env.Stdout, "unmounted %s\n", srv.Mountpoint())
	}
	return nil
}
