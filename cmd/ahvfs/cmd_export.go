package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/export"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "export",
			Usage:     "convert a restore point's disks for another hypervisor (qemu-img), plus an OVF and a libvirt domain XML",
			ArgsUsage: "VM@TIME",
			Flags: []cli.Flag{repoPasswordFlag(),
				&cli.StringFlag{Name: "format", Value: "qcow2", Usage: "disk format: qcow2, vmdk (streamOptimized), vhdx or raw"},
				&cli.StringFlag{Name: "out", Usage: "output `DIR` (created if missing)", Required: true},
				&cli.StringSliceFlag{Name: "disks", Usage: "only these disks (disk-0,disk-2)"},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 1 {
					return usagef("export: want VM@TIME")
				}
				o := export.Options{Format: c.String("format"), OutDir: c.String("out"), Logger: env.Log}
				if err := o.Validate(); err != nil {
					return usagef("export: %v", err)
				}
				disks, err := parseDiskList(c.StringSlice("disks"))
				if err != nil {
					return err
				}
				o.Disks = disks
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runExport(c.Context, env, r, c.Args().First(), o)
			},
		}
	})
}

// parseDiskList parses --disks values ("disk-0,disk-2" or repeated).
func parseDiskList(vals []string) ([]int, error) {
	var out []int
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			n, err := parseDiskName(s)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// diskBars shows one progress bar per disk (nothing off a terminal).
func diskBars(ctx context.Context, env *cliEnv, rp *engine.RestorePoint) (func(disk int, done, total int64), func()) {
	pr := newProgress(ctx, env)
	var mu sync.Mutex
	bars := map[int]*bar{}
	return func(disk int, done, total int64) {
			mu.Lock()
			b := bars[disk]
			if b == nil {
				b = pr.bytesBar(fmt.Sprintf("%s disk-%d", rp.VM, disk), total)
				bars[disk] = b
			}
			mu.Unlock()
			b.set(done)
		}, func() {
			mu.Lock()
			for _, b := range bars {
				b.finish()
			}
			mu.Unlock()
			pr.wait()
		}
}

func runExport(ctx context.Context, env *cliEnv, r *engine.Repository, name string, o export.Options) error {
	rp, err := r.Resolve(ctx, name)
	if err != nil {
		return err
	}
	var done func()
	o.Progress, done = diskBars(ctx, env, rp)
	res, err := export.Export(ctx, r, rp, o)
	done()
	if err != nil {
		return err
	}
	if env.JSON {
		return writeJSON(env.Stdout, res)
	}
	for _, d := range res.Disks {
		fmt.Fprintf(env.Stdout, "%s  %s  %s\n", d.Name, ibytes(d.Size), d.File)
	}
	fmt.Fprintf(env.Stdout, "OVF      %s\n", res.OVF)
	if res.Libvirt != "" {
		fmt.Fprintf(env.Stdout, "libvirt  %s\n", res.Libvirt)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(env.Stdout, "note: %s\n", n)
	}
	fmt.Fprintf(env.Stdout, "exported %s (%s) in %s\n", res.RestorePoint, ibytes(res.Bytes), res.Duration.Round(1e7))
	return nil
}
