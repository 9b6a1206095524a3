package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "cat",
			Usage:     "stream a disk's raw bytes to stdout",
			ArgsUsage: "VM@TIME disk-N",
			Flags:     []cli.Flag{repoPasswordFlag()},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 2 {
					return usagef("cat: want VM@TIME disk-N")
				}
				if err := checkRestorePointArg(c.Args().Get(0)); err != nil {
					return err
				}
				n, err := parseDiskName(c.Args().Get(1))
				if err != nil {
					return err
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runCat(c.Context, env, r, c.Args().Get(0), n)
			},
		}
	})
}

// parseDiskName parses "disk-N" (or plain "N").
func parseDiskName(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "disk-"))
	if err != nil || n < 0 {
		return 0, usagef("disk %q: want disk-N", s)
	}
	return n, nil
}

func runCat(ctx context.Context, env *cliEnv, r *engine.Repository, name string, n int) error {
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	d, err := r.OpenDisk(ctx, rp, n)
	if err != nil {
		return err
	}
	defer d.Close()
	buf := make([]byte, 4<<20)
	out := ctxWriter{ctx, env.Stdout} // a pipe nobody reads must not hang a cancelled cat
	for off := int64(0); off < d.Size(); {
		k, err := d.ReadAtContext(ctx, buf, off)
		if k > 0 {
			if _, werr := out.Write(buf[:k]); werr != nil {
				return fmt.Errorf("cat %s disk-%d: write: %w", rp.Name(), n, werr)
			}
			off += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return nil
}
