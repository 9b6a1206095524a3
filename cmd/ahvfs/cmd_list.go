package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "list",
			Usage:     "restore points: VM, time, level, consistency, disks, logical size, new data stored",
			ArgsUsage: "[VM]",
			Description: "With --repo https://HOST:PORT it lists the restore points of an 'ahvfs serve' (a DR\n" +
				"copy), with --tls-cert, --tls-key and --ca-cert.",
			Flags: append([]cli.Flag{repoPasswordFlag()}, clientTLSFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				vm := c.Args().First()
				if vm != "" {
					if err := engine.ValidateVMName(vm); err != nil {
						return usagef("list: %v", err)
					}
				}
				if loc := c.String("repo"); dr.IsRemote(loc) {
					rem, err := dialRemote(c, loc)
					if err != nil {
						return err
					}
					defer rem.Close()
					ps, err := rem.Points(c.Context)
					if err != nil {
						return err
					}
					var rps []*engine.RestorePoint
					for _, p := range ps {
						if vm == "" || p.VM == vm {
							p.RestorePoint.LockedUntil = p.LockedUntil
							rps = append(rps, p.RestorePoint)
						}
					}
					return printList(env, rps, nil, vm)
				}
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				rps, err := r.ListRestorePoints(c.Context, vm)
				if err != nil {
					return err
				}
				holds, err := r.Holds(c.Context)
				if err != nil {
					return err
				}
				return printList(env, rps, holds, vm)
			},
		}
	})
}

type listEntry struct {
	Name        string            `json:"name"`
	VM          string            `json:"vm"`
	Time        string            `json:"time"`
	Level       string            `json:"level"`
	Consistency string            `json:"consistency,omitempty"`
	Disks       []listDisk        `json:"disks"`
	Logical     int64             `json:"logical_bytes"`
	NewStored   int64             `json:"new_stored_bytes"`
	Stats       engine.WriteStats `json:"stats"`
	Meta        map[string]string `json:"meta,omitempty"`
	LockedUntil string            `json:"locked_until,omitempty"`
	// HeldBy says what holds the point (an instant restore's VM reading
	// from it): forget and prune leave it while it is held.
	HeldBy []string `json:"held_by,omitempty"`
}

type listDisk struct {
	Disk     string `json:"disk"`
	Bus      string `json:"bus,omitempty"`
	BusIndex int    `json:"bus_index"`
	Size     int64  `json:"size"`
	Reason   string `json:"reason,omitempty"`
}

// printList prints restore points (of VM vm, when not empty) and which
// of them holds keep.
func printList(env *cliEnv, rps []*engine.RestorePoint, holds []engine.Hold, vm string) error {
	if vm != "" && len(rps) == 0 {
		return fmt.Errorf("no restore points of VM %q", vm)
	}
	out := []listEntry{}
	for _, rp := range rps {
		e := listEntry{Name: rp.Name(), VM: rp.VM, Time: engine.FormatTime(rp.Time), Level: rp.Level, Consistency: rp.Consistency,
			Logical: rp.LogicalBytes(), NewStored: rp.Stats.NewStoredBytes, Stats: rp.Stats, Meta: rp.Meta}
		if rp.LockedUntil.After(time.Now()) {
			e.LockedUntil = engine.FormatTime(rp.LockedUntil)
		}
		for _, d := range rp.Disks {
			e.Disks = append(e.Disks, listDisk{Disk: d.Name(), Bus: d.Bus, BusIndex: d.BusIndex, Size: d.Size, Reason: d.Reason})
		}
		for _, h := range holds {
			if h.Keeps(rp.ID) {
				e.HeldBy = append(e.HeldBy, h.Reason)
			}
		}
		out = append(out, e)
	}
	if env.JSON {
		return writeJSON(env.Stdout, out)
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tTIME\tLEVEL\tCONSISTENCY\tDISKS\tLOGICAL\tNEW STORED\tLOCKED UNTIL")
	for _, e := range out {
		cons := e.Consistency
		if cons == "" {
			cons = "-"
		}
		var disks []string
		for _, d := range e.Disks {
			disks = append(disks, d.Disk+":"+ibytes(d.Size))
		}
		locked := e.LockedUntil
		if locked == "" {
			locked = "-"
		}
		if len(e.HeldBy) > 0 {
			locked += " (held)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.VM, e.Time, e.Level, cons, strings.Join(disks, " "), ibytes(e.Logical), ibytes(e.NewStored), locked)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range out {
		for _, why := range e.HeldBy {
			fmt.Fprintf(env.Stdout, "%s is held: %s\n", e.Name, why)
		}
	}
	return nil
}
