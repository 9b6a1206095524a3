package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "gc",
			Usage: "reclaim the space of chunks no restore point references",
			Description: "gc marks every chunk and manifest page a restore point references (locked ones\n" +
				"included), deletes the packs that hold none of them, and rewrites, with new parity,\n" +
				"the most-unused packs until at most --max-unused of what stays is unused (as restic's\n" +
				"prune does: the share is of the whole repository). It holds the writer lock from\n" +
				"start to end: a backup or import waits for it (--lock-wait) or fails at once.\n" +
				"A kill at any moment leaves a repository that verifies; the next gc finishes the job.\n" +
				"With --repo https://HOST:PORT the server (ahvfs serve) runs it on its repository; an\n" +
				"append-only server refuses all but --dry-run.",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "max-unused", Value: "5%", Usage: "rewrite packs until at most `SHARE` of the kept packs' bytes are unused (0% to 100%; 0% rewrites every pack with an unused byte, 100% none)"},
				&cli.BoolFlag{Name: "dry-run", Usage: "say what would be reclaimed, change nothing"},
				&cli.DurationFlag{Name: "reader-wait", Value: time.Minute, Usage: "how long to wait for readers of an older index (a mount) before leaving the packs they may read for the next gc (0: do not wait)"},
				&cli.DurationFlag{Name: "empty-quarantine", Usage: "also delete what writers set aside in quarantine/ more than `AGE` ago, such as 336h (default: keep it; 'ahvfs verify' lists it)"},
				repoPasswordFlag(),
			}, clientTLSFlags()...),
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				if c.NArg() > 0 {
					return usagef("gc: unexpected argument %q", c.Args().First())
				}
				share, err := parseShare(c.String("max-unused"))
				if err != nil {
					return usagef("--max-unused: %v", err)
				}
				if share == 0 {
					share = 1e-9 // 0%: rewrite every pack with any unused byte
				}
				dry := c.Bool("dry-run")
				wait := c.Duration("reader-wait")
				if wait == 0 {
					wait = -1 // the engine's zero is its default
				}
				if loc := c.String("repo"); dr.IsRemote(loc) {
					rem, err := dialRemote(c, loc)
					if err != nil {
						return err
					}
					defer rem.Close()
					rep, err := rem.GC(c.Context, dr.GCRequest{MaxUnused: share, ReaderWait: wait, QuarantineAge: c.Duration("empty-quarantine")}, dry)
					if err != nil {
						return err
					}
					return printGC(env, rep)
				}
				limitGCMemory()
				// On a shared repository gc holds the exclusive lock object:
				// no process of any host has the repository open meanwhile.
				r, err := openRepoWith(c.Context, c, env, engine.OpenOptions{Writable: !dry, Exclusive: !dry})
				if err != nil {
					return err
				}
				defer r.Close()
				rep, err := r.GC(c.Context, engine.GCOptions{MaxUnused: share, DryRun: dry, ReaderWait: wait, QuarantineAge: c.Duration("empty-quarantine")})
				if err != nil {
					return err
				}
				return printGC(env, rep)
			},
		}
	})
}

// gcMemoryLimit is the Go heap's soft limit during gc (unless GOMEMLIMIT
// sets another). What gc holds is bounded: three pack buffers, the Bloom
// filter (2 MiB per million chunks), one rewrite group, about 130 MiB on
// an index of 5 million chunks; the default GOGC lets the heap grow to
// twice that before collecting. The limit makes Go collect sooner, which
// cost no time in tools/bench/gcmem.sh (peak RSS 398 -> 241 MiB). Past
// ~15 million chunks the live set nears it and Go collects more often,
// within its bound on the collector's CPU share; it never fails.
const gcMemoryLimit = 160 << 20

func limitGCMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(gcMemoryLimit)
	}
}

// printGC prints what a gc did, as JSON with --json.
func printGC(env *cliEnv, rep *engine.GCReport) error {
	if env.JSON {
		return writeJSON(env.Stdout, rep)
	}
	w := env.Stdout
	fmt.Fprintf(w, "restore points   %d\n", rep.RestorePoints)
	fmt.Fprintf(w, "blobs            %d indexed, %d referenced by no restore point\n", rep.Blobs, rep.UnusedBlobs)
	fmt.Fprintf(w, "stored           %s in %d packs, %s of it referenced\n", ibytes(rep.StoredBytes), rep.Packs, ibytes(rep.ReferencedBytes))
	verb := ""
	if rep.DryRun {
		verb = "would be "
	}
	fmt.Fprintf(w, "packs %sdeleted %d, %srewritten %d (%s copied)\n", verb, rep.PacksDeleted, verb, rep.PacksRewritten, ibytes(rep.BytesRewritten))
	if rep.DryRun {
		fmt.Fprintf(w, "would reclaim    %s with parity (dry run: nothing changed)\n", ibytes(rep.ReclaimedBytes))
		return nil
	}
	fmt.Fprintf(w, "reclaimed        %s with parity in %.1fs\n", ibytes(rep.ReclaimedBytes), rep.Seconds)
	if rep.PacksLeft > 0 {
		fmt.Fprintf(w, "left             %d packs a reader of an older index may still read; the next gc deletes them\n", rep.PacksLeft)
	}
	if rep.Quarantine > 0 {
		fmt.Fprintf(w, "quarantine       %d old files deleted\n", rep.Quarantine)
	}
	return nil
}

// parseShare parses "5%" or "0.05" into a share from 0 to 1.
func parseShare(s string) (float64, error) {
	v, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a share such as 5%% or 0.05", s)
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 {
		return 0, fmt.Errorf("%q: want 0%% to 100%%", s)
	}
	return f, nil
}
