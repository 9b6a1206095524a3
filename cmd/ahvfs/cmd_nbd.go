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

// runNBDCat copies length bytes of the export from offset (-1: to its
// end) to stdout.
func runNBDCat(ctx context.Context, env *cliEnv, o nbd.Options, offset, length int64) error {
	o.Logger = env.Log
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
	buf := make([]byte, nbdChunk)
	for pos := offset; pos < offset+length; {
		k := min(int64(len(buf)), offset+length-pos)
		if _, err := cl.ReadAtContext(ctx, buf[:k], pos); err != nil && err != io.EOF {
			return fmt.Errorf("nbd cat: read %d+%d: %w", pos, k, err)
		}
		if _, err := env.Stdout.Write(buf[:k]); err != nil {
			return err
		}
		pos += k
	}
	return nil
}
