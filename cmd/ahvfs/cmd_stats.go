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
			Name:  "stats",
			Usage: "logical bytes, stored bytes, dedup and compression ratios, packs, chunks",
			Flags: []cli.Flag{repoPasswordFlag()},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				r, err := openRepo(c.Context, c, env, false)
				if err != nil {
					return err
				}
				defer r.Close()
				return runStats(c.Context, env, r)
			},
		}
	})
}

func runStats(ctx context.Context, env *cliEnv, r *engine.Repository) error {
	s, err := r.Stats(ctx)
	if err != nil {
		return err
	}
	g, err := r.GC(ctx, engine.GCOptions{DryRun: true})
	if err != nil {
		return err
	}
	if env.JSON {
		return writeJSON(env.Stdout, struct {
			*engine.Stats
			ReferencedStored int64 `json:"referenced_stored_bytes"`
			UnusedBlobs      int64 `json:"unused_blobs"`
			Reclaimable      int64 `json:"reclaimable_bytes"`
		}{s, g.ReferencedBytes, g.UnusedBlobs, g.ReclaimedBytes})
	}
	w := env.Stdout
	fmt.Fprintf(w, "VMs              %d\n", s.VMs)
	fmt.Fprintf(w, "restore points   %d\n", s.RestorePoints)
	fmt.Fprintf(w, "logical          %s (disk sizes of all restore points)\n", ibytes(s.LogicalBytes))
	fmt.Fprintf(w, "referenced data  %s (non-zero)\n", ibytes(s.ReferencedRaw))
	fmt.Fprintf(w, "unique data      %s in %d chunks\n", ibytes(s.UniqueRaw), s.Chunks)
	fmt.Fprintf(w, "stored           %s in %d packs, plus %s parity\n", ibytes(s.StoredBytes), s.Packs, ibytes(s.ParityBytes))
	fmt.Fprintf(w, "referenced       %s of the stored bytes; %d blobs no restore point needs\n", ibytes(g.ReferencedBytes), g.UnusedBlobs)
	fmt.Fprintf(w, "gc could reclaim %s with parity ('ahvfs gc')\n", ibytes(g.ReclaimedBytes))
	fmt.Fprintf(w, "dedup ratio      %.2fx\n", s.DedupRatio)
	fmt.Fprintf(w, "compression      %.2fx\n", s.Compression)
	return nil
}
