package main

import (
	"context"
	"fmt"

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
		if o.ReadData {
			what = "structure and data"
		}
		fmt.Fprintf(w, "checked %s: %d packs (%s), %d blobs, %d restore points\n", what, rep.Packs, ibytes(rep.CheckedBytes), rep.Blobs, rep.RestorePoints)
		for _, d := range rep.Damaged {
			state := "NOT repaired"
			if d.Repaired {
				state = "repaired"
			} else if !o.Repair && d.DamagedBlobs == 0 {
				state = "repairable: run 'ahvfs verify --repair'"
			}
			fmt.Fprintf(w, "pack %s: %s (%s)\n", d.Pack, d.Problem, state)
		}
		for _, a := range rep.Affected {
			fmt.Fprintf(w, "restore point %s: %d damaged, %d missing chunk(s)\n", a.Name, a.DamagedChunks, a.MissingChunks)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "problem: %s\n", p)
		}
		if rep.OK() {
			fmt.Fprintln(w, "no errors")
		}
	}
	if !rep.OK() {
		if len(rep.Affected) > 0 {
			return fmt.Errorf("verify: %d restore point(s) have unreadable data", len(rep.Affected))
		}
		return fmt.Errorf("verify: the repository has damage (see above)")
	}
	return nil
}
