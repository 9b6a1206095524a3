package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "verify",
			Usage: "check the index and every restore point; --read-data re-hashes every chunk; --repair rebuilds damaged packs from parity",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "read-data", Usage: "read every pack and re-hash every chunk"},
				&cli.BoolFlag{Name: "repair", Usage: "rebuild damaged packs and parity from parity (implies --read-data)"},
				repoPasswordFlag(),
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				repair := c.Bool("repair")
				r, err := openRepo(c.Context, c, env, repair)
				if err != nil {
					return err
				}
				defer r.Close()
				return runVerify(c.Context, env, r, engine.VerifyOptions{ReadData: c.Bool("read-data"), Repair: repair})
			},
		}
	})
}

func runVerify(ctx context.Context, env *cliEnv, r *engine.Repository, o engine.VerifyOptions) error {
	prog := newProgress(ctx, env)
	b := prog.countBar("packs", 0)
	o.Progress = func(done, total int) {
		if b.b != nil {
			b.b.SetTotal(int64(total), false)
		}
		b.set(int64(done))
	}
	rep, err := r.Verify(ctx, o)
	b.finish()
	prog.wait()
	if err != nil {
		return err
	}
	if env.JSON {
		if err := writeJSON(env.Stdout, struct {
			OK bool `json:"ok"`
			*engine.VerifyReport
		}{rep.OK(), rep}); err != nil {
			return err
		}
	} else {
		w := env.Stdout
		what := "structure"
		if o.ReadData || o.Repair {
			what = "structure and data"
		}
		fmt.Fprintf(w, "checked %s: %d packs (%s), %d blobs, %d restore points\n", what, rep.Packs, ibytes(rep.CheckedBytes), rep.Blobs, rep.RestorePoints)
		for _, d := range rep.Damaged {
			fmt.Fprintf(w, "pack %s: %s (%s)\n", d.Pack, d.Problem, damageState(d.State, o.Repair))
			for _, s := range d.Stripes {
				var what []string
				if len(s.DataShards) > 0 {
					what = append(what, fmt.Sprintf("data shard(s) %s", joinInts(s.DataShards)))
				}
				if len(s.ParityShards) > 0 {
					what = append(what, fmt.Sprintf("parity shard(s) %s", joinInts(s.ParityShards)))
				}
				fmt.Fprintf(w, "  stripe %d (pack bytes %d-%d): %s damaged, %d damaged blob(s): %s\n",
					s.Stripe, s.Offset, s.Offset+s.Length-1, strings.Join(what, " and "), s.Blobs, s.State)
			}
		}
		for _, a := range rep.Affected {
			fmt.Fprintf(w, "restore point %s: %d damaged (%d of them repairable), %d missing chunk(s)\n",
				a.Name, a.DamagedChunks, a.RepairableChunks, a.MissingChunks)
			for _, g := range a.Ranges {
				fmt.Fprintf(w, "  %s bytes %d-%d (%s): %s\n", g.Disk, g.Offset, g.Offset+g.Length-1, ibytes(g.Length), g.State)
			}
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "problem: %s\n", p)
		}
		for _, p := range rep.Pending {
			fmt.Fprintf(w, "pending: %s\n", p)
		}
		if rep.OK() {
			fmt.Fprintln(w, "no errors")
		}
	}
	if !rep.OK() {
		if len(rep.Affected) > 0 {
			return fmt.Errorf("verify: %d restore point(s) have damaged or missing data", len(rep.Affected))
		}
		return fmt.Errorf("verify: the repository has damage (see above)")
	}
	return nil
}

// damageState says what a pack's damage state means for the user.
func damageState(state string, repair bool) string {
	switch state {
	case engine.DamageRepaired:
		return "repaired"
	case engine.DamageRepairable:
		if repair {
			return "repairable, but the repair failed"
		}
		return "repairable: run 'ahvfs verify --repair'"
	case engine.DamagePartlyRepaired:
		return "partly repaired: the stripes beyond parity are lost"
	case engine.DamagePartlyRepairable:
		if repair {
			return "partly repairable, but the repair failed; the stripes beyond parity are lost"
		}
		return "partly repairable: run 'ahvfs verify --repair'; the stripes beyond parity are lost"
	case engine.DamageUnchecked:
		return "run 'ahvfs verify --read-data' to see whether parity can repair it"
	default:
		return "NOT repairable: damage beyond parity"
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
