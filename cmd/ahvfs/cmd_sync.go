package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "sync",
			Usage:     "replicate restore points to (--to) or from (--from) another repository, sending only what it lacks",
			ArgsUsage: " ",
			Description: "TARGET and SOURCE are a repository directory or https://HOST:PORT of an 'ahvfs serve'\n" +
				"(with --tls-cert, --tls-key and --ca-cert). Repositories that store blobs alike (make the\n" +
				"DR one with 'ahvfs init --copy-params-from SOURCE') exchange only what the target lacks,\n" +
				"blobs (or whole packs) as stored, checked on arrival. Between repositories that do not\n" +
				"(other keys, another chunk size) every point is read, decoded, and re-encoded the target's\n" +
				"way, like a backup deduplicated against it; through a server, the decoded data crosses the\n" +
				"TLS connection (bytes_sent counts it, zero chunks excepted). A restore point appears on the target only\n" +
				"when everything it needs is durable there, so an interrupted sync is simply run again.\n" +
				"Points keep their names, times, levels, configuration and locks. Points older than the\n" +
				"target's newest point of their VM are skipped (they were pruned there).",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "to", Usage: "replicate --repo to `TARGET`"},
				&cli.StringFlag{Name: "from", Usage: "replicate `SOURCE` into --repo"},
				&cli.StringSliceFlag{Name: "vm", Usage: "only VMs matching `GLOB` (repeatable)"},
				&cli.StringFlag{Name: "since", Usage: "only restore points taken at or after `TIME` (RFC 3339)"},
				newRateFlag("bwlimit", "0", "cap the blob bytes sent per second (`RATE` such as 100MiB/s; 0: unlimited)"),
				&cli.BoolFlag{Name: "resync-corrupt", Usage: "read back on the target every blob of the points synced (those already there too) and send again the damaged ones"},
				repoPasswordFlag(),
				peerPasswordFlag(),
			}, clientTLSFlags()...),
			Action: runSync,
		}
	})
}

func runSync(c *cli.Context) error {
	start := time.Now() // the report's seconds include opening the repositories
	env := envFrom(c)
	to, from := c.String("to"), c.String("from")
	if (to == "") == (from == "") {
		return usagef("sync: give exactly one of --to TARGET and --from SOURCE")
	}
	o := dr.Options{VMs: c.StringSlice("vm"), BytesPerSecond: flagSize(c, "bwlimit"), ResyncCorrupt: c.Bool("resync-corrupt")}
	if s := c.String("since"); s != "" {
		t, err := parseTimeFlag("since", s)
		if err != nil {
			return err
		}
		o.Since = t
	}
	own, err := openRepo(c.Context, c, env, from != "")
	if err != nil {
		return err
	}
	defer own.Close()
	peer, err := syncEndpoint(c.Context, c, env, to+from, to != "")
	if err != nil {
		return err
	}
	defer peer.Close()
	var src dr.Source = &dr.Local{R: own}
	var dst dr.Target = peer
	if from != "" {
		src, dst = peer, &dr.Local{R: own}
	}
	prog := newProgress(c.Context, env)
	var (
		once sync.Once
		b    *bar
	)
	o.Progress = func(p dr.Progress) {
		once.Do(func() { b = prog.countBar("sync", int64(p.Points)) })
		b.set(int64(p.PointsDone))
	}
	rep, err := dr.Sync(c.Context, src, dst, o)
	if rep != nil {
		rep.Seconds = time.Since(start).Seconds()
	}
	if b != nil {
		b.finish()
	}
	prog.wait()
	if err != nil {
		if rep != nil && rep.RestorePoints > 0 {
			return fmt.Errorf("%w (%d restore points were synced before it; run sync again to go on)", err, rep.RestorePoints)
		}
		return err
	}
	if env.JSON {
		return writeJSON(env.Stdout, rep)
	}
	fmt.Fprintf(env.Stdout, "synced %d restore points from %s to %s in %.1fs: %d pages, %d chunks (%d packs whole), %s sent\n",
		rep.RestorePoints, rep.Source, rep.Target, rep.Seconds, rep.PagesSent, rep.ChunksSent, rep.PacksSent, ibytes(rep.BytesSent))
	for _, n := range rep.Synced {
		fmt.Fprintf(env.Stdout, "  %s\n", n)
	}
	if len(rep.AlreadyThere) > 0 {
		fmt.Fprintf(env.Stdout, "%d already there (%d locks extended)\n", len(rep.AlreadyThere), rep.LocksSet)
	}
	if rep.Resent > 0 {
		fmt.Fprintf(env.Stdout, "%d damaged blobs on the target sent again\n", rep.Resent)
	}
	if len(rep.Older) > 0 {
		fmt.Fprintf(env.Stdout, "skipped, older than the target's newest point of their VM: %s\n", strings.Join(rep.Older, ", "))
	}
	if len(rep.Conflicts) > 0 {
		fmt.Fprintf(env.Stderr, "ahvfs: warning: the target holds other restore points of these names, left alone: %s\n", strings.Join(rep.Conflicts, ", "))
	}
	return nil
}
