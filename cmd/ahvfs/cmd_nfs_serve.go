package main

import (
	"context"
	"errors"
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
				"NFS and MOUNT share the --listen port, which the portmapper (--portmap, port 111) tells\n" +
				"clients: 'qemu-img convert nfs://HOST/...' and 'mount -t nfs -o vers=3 HOST:/ DIR' need no\n" +
				"port options. Clients mount \"/\" or any directory of the tree.\n" +
				"Only clients in --allow may connect (default: this host). New restore points appear\n" +
				"without a restart, and file handles stay valid across restarts. Runs until SIGINT or SIGTERM.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "listen", Value: ":2049", Usage: "`ADDR` to listen on (HOST:PORT)"},
				&cli.StringFlag{Name: "portmap", Value: ":111", Usage: "`ADDR` of the portmapper (TCP and UDP) that tells clients the NFS and MOUNT port; \"off\" for none"},
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
	var pm *portmapListeners
	if a := c.String("portmap"); a != "off" {
		if pm, err = listenPortmap(a); err != nil {
			ln.Close()
			return fmt.Errorf("portmapper: %w (is the system's rpcbind running? stop it, or give --portmap off and tell clients the port)", err)
		}
	}
	clients := make([]string, len(allow))
	for i, p := range allow {
		clients[i] = p.String()
	}
	portmap := "off"
	if pm != nil {
		portmap = pm.tcp.Addr().String()
	}
	if env.JSON {
		writeJSON(env.Stdout, map[string]any{"listen": ln.Addr().String(), "portmap": portmap, "repo": r.Location(), "allow": clients})
	} else {
		fmt.Fprintf(env.Stdout, "serving %s over NFSv3 on %s (portmapper: %s), read-only (clients: %s); Ctrl-C or SIGTERM stops\n",
			r.Location(), ln.Addr(), portmap, strings.Join(clients, ", "))
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	errc := make(chan error, 3)
	run := func(serve func() error) {
		go func() {
			err := serve()
			cancel() // one stopped: stop the others
			errc <- err
		}()
	}
	n := 1
	if pm != nil {
		p := nfs.NewPortmap(ln.Addr().(*net.TCPAddr).Port, pm.tcp.Addr().(*net.TCPAddr).Port, env.Log)
		run(func() error { return p.ServeTCP(ctx, nfs.AllowListener(pm.tcp, allow, env.Log)) })
		run(func() error { return p.ServeUDP(ctx, pm.udp) })
		n += 2
	}
	run(func() error { return nfs.Serve(ctx, tree, ln, nfs.Options{Allow: allow, Logger: env.Log}) })
	var errs []error
	for range n {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

// portmapListeners are the portmapper's sockets.
type portmapListeners struct {
	tcp net.Listener
	udp net.PacketConn
}

// listenPortmap listens on addr over TCP and UDP (the same port).
func listenPortmap(addr string) (*portmapListeners, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenPacket("udp", tcp.Addr().String())
	if err != nil {
		tcp.Close()
		return nil, err
	}
	return &portmapListeners{tcp: tcp, udp: udp}, nil
}
