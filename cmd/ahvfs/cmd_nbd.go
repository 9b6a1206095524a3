package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ahvfs/ahvfs/nbd"
	"github.com/urfave/cli/v2"
)

func init() { registerFunc(nbdCommand) }

// nbdChunk is how much nbd cat asks for at once (the client splits it
// into requests in flight together).
const nbdChunk = 8 << 20

func nbdCommand() *cli.Command {
	return &cli.Command{
		Name:  "nbd",
		Usage: "talk to an NBD export directly (the userspace client; debugging)",
		Subcommands: []*cli.Command{
			{
				Name:      "cat",
				Usage:     "write an NBD export's bytes to stdout",
				ArgsUsage: "nbd://HOST[:PORT]/EXPORT | nbds://... (TLS) | nbd+unix:///EXPORT?socket=PATH",
				Description: "Reads without a kernel module: fixed newstyle, NBD_OPT_GO, structured replies.\n" +
					"nbds:// uses TLS and verifies the server's certificate: against --ca-cert, or the\n" +
					"system's CAs; ?tls-hostname=NAME gives the name it must carry.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-cert", Usage: "`FILE`: the CA certificates that signed the server's (nbds://; default: the system's)", EnvVars: []string{"AHVFS_CA_CERT"}},
					newSizeFlag("offset", "0", "first byte to read, a `SIZE`"),
					newSizeFlag("length", "", "`SIZE` to read (default: to the end of the export)"),
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usagef("nbd cat: want one nbd:// URI")
					}
					o, err := nbd.ParseURI(c.Args().First())
					if err != nil {
						return usagef("nbd cat: %v", err)
					}
					if f := c.String("ca-cert"); f != "" {
						o.CAFile = f
					}
					length := int64(-1)
					if c.IsSet("length") {
						length = flagSize(c, "length")
					}
					return runNBDCat(c.Context, envFrom(c), o, flagSize(c, "offset"), length)
				},
			},
		},
	}
}

// nbdAhead is how many chunks nbd cat keeps reading while it writes one:
// each chunk's requests are in flight together, and the next chunks'
// join them, so the connection never drains between chunks.
const nbdAhead = 4

// runNBDCat copies length bytes of the export from offset (-1: to its
// end) to stdout, in order, nbdAhead chunks read ahead.
func runNBDCat(ctx context.Context, env *cliEnv, o nbd.Options, offset, length int64) error {
	o.Logger = env.Log
	if o.QueueDepth == 0 {
		o.QueueDepth = 32
	}
	cl, err := nbd.Dial(ctx, o)
	if err != nil {
		return fmt.Errorf("nbd cat: %w", err)
	}
	defer cl.Close()
	size := cl.Size()
	if length < 0 {
		length = size - offset
	}
	if offset < 0 || offset > size || length < 0 || offset+length > size {
		return usagef("nbd cat: range %d+%d is outside the export (%d bytes)", offset, length, size)
	}
	type chunk struct {
		buf  []byte
		pos  int64
		done chan error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan []byte, nbdAhead+1)
	for range nbdAhead + 1 {
		free <- make([]byte, nbdChunk)
	}
	queue := make(chan *chunk, nbdAhead)
	go func() {
		defer close(queue)
		for pos, end := offset, offset+length; pos < end; {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			c := &chunk{buf: buf[:min(int64(len(buf)), end-pos)], pos: pos, done: make(chan error, 1)}
			go func() {
				_, err := cl.ReadAtContext(ctx, c.buf, c.pos)
				if err == io.EOF {
					err = nil
				}
				c.done <- err
			}()
			select {
			case queue <- c:
			case <-ctx.Done(): // the writer gave up
				return
			}
			pos += int64(len(c.buf))
		}
	}()
	for c := range queue {
		if err := <-c.done; err != nil {
			return fmt.Errorf("nbd cat: read %d+%d: %w", c.pos, len(c.buf), err)
		}
		if _, err := env.Stdout.Write(c.buf); err != nil {
			return err
		}
		free <- c.buf[:cap(c.buf)]
	}
	return ctx.Err()
}
