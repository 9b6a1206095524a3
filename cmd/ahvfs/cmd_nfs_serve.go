package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/ahvfs/ahvfs/nfs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "nfs-serve",
			Usage:     "serve restore points over NFSv3, read-only: /<vm>/<time>/disk-N.raw, vm.json, disk-N/part-M/...",
			ArgsUsage: " ",
			Description: "The same tree as 'ahvfs mount', for NFS clients: a cluster mounting it as an external\n" +
				"repository, qemu-img (nfs://), libnfs tools, the kernel (mount -t nfs -o vers=3).\n" +
				"NFS and MOUNT share the --listen port; clients mount \"/\" or any directory of the tree.\n" +
				"Only clients in --allow may connect (default: this host). New restore points appear\n" +
				"without a restart, and file handles stay valid across restarts. Runs until SIGINT or SIGTERM.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "listen", Value: ":2049", Usage: "`ADDR` to listen on (HOST:PORT)"},
				&cli.StringSliceFlag{Name: "allow", Usage: "client networks or addresses admitted (`CIDR`,...; default: loopback only)"},
				repoPasswordFlag(),
			},
			Action: runNFSServe,
		}
	})
}

func runNFSServe(c *cli.Context) error {
	env := envFrom(c)
	allow, err := nfs.ParseAllow(c.StringSlice("allow"))
	if err != nil {
		return usagef("%v", err)
	}
	if len(allow) == 0 {
		allow = nfs.Loopback
	}
	r, err := openRepo(c.Context, c, env, false)
	if err != nil {
		return err
	}
	defer r.Close()
	tree, err := rptree.New(r, rptree.Options{Logger: env.Log})
	if err != nil {
		return err
	}
	defer tree.Close()
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	clients := make([]string, len(allow))
	for i, p := range allow {
		clients[i] = p.String()
	}
	if env.JSON {
		writeJSON(env.Stdout, map[string]any{"listen": ln.Addr().String(), "repo": r.Location(), "allow": clients})
	} else {
		fmt.Fprintf(env.Stdout, "serving %s over NFSv3 on %s, read-only (clients: %s); Ctrl-C or SIGTERM stops\n",
			r.Location(), ln.Addr(), strings.Join(clients, ", "))
	}
	return nfs.Serve(c.Context, tree, ln, nfs.Options{Allow: allow, Logger: env.Log})
}
