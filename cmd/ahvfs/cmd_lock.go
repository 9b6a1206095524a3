package main

import (
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/retention"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "lock",
			Usage:     "set a retention lock: nothing removes the restore point, or any chunk it needs, before it ends",
			ArgsUsage: "VM@TIME",
			Description: "A retention lock cannot be shortened or removed before it expires (compliance mode):\n" +
				"forget, prune and gc never remove a locked restore point or anything it references.\n" +
				"A later lock extends it; an earlier one is refused. 'ahvfs list' shows locks.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "until", Usage: "end of the lock, `TIME` (RFC 3339)"},
				&cli.StringFlag{Name: "for", Usage: "length of the lock from now, `SPAN` (7d, 2w, 1y6m, 36h)"},
				repoPasswordFlag(),
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() != 1 {
					return usagef("lock: name one restore point, VM@TIME")
				}
				if err := checkRestorePointArg(c.Args().First()); err != nil {
					return err
				}
				rule, err := lockRule(c, "until", "for")
				if err != nil {
					return err
				}
				if rule == nil {
					return usagef("lock: give --until TIME or --for SPAN")
				}
				until := rule(time.Now())
				r, err := openRepo(c.Context, c, env, true)
				if err != nil {
					return err
				}
				defer r.Close()
				rp, err := r.Resolve(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				if err := r.LockRestorePoint(c.Context, rp, until); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "%s is locked until %s\n", rp.Name(), engine.FormatTime(until))
				return nil
			},
		}
	})
}

// lockFlags are the flags that commit a restore point with a retention
// lock (backup, import).
func lockFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "lock-until", Usage: "lock the new restore point until `TIME` (RFC 3339): see 'ahvfs lock'"},
		&cli.StringFlag{Name: "lock-for", Usage: "lock the new restore point for `SPAN` from its time (7d, 2w, 1y6m, 36h): see 'ahvfs lock'"},
	}
}

// lockRule reads a pair of lock flags: the end given as a time
// (untilFlag) or as a span (forFlag). It returns the end of the lock of a
// restore point taken at a given time (the span counts from then), or nil
// when neither flag is set.
func lockRule(c *cli.Context, untilFlag, forFlag string) (func(time.Time) time.Time, error) {
	u, f := c.String(untilFlag), c.String(forFlag)
	switch {
	case u != "" && f != "":
		return nil, usagef("--%s and --%s: give one of them", untilFlag, forFlag)
	case u != "":
		t, err := parseTimeFlag(untilFlag, u)
		if err != nil {
			return nil, err
		}
		if !t.After(time.Now()) {
			return nil, usagef("--%s %s: that time has passed", untilFlag, u)
		}
		return func(time.Time) time.Time { return t }, nil
	case f != "":
		span, err := retention.ParseSpan(f)
		if err != nil {
			return nil, usagef("--%s: %v", forFlag, err)
		}
		return span.After, nil
	}
	return nil, nil
}
