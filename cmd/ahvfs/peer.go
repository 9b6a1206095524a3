package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

// clientTLSFlags are the client side of mutual TLS with ahvfs serve.
func clientTLSFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert", Usage: "`FILE`: this client's certificate, for an https:// repository (ahvfs serve)"},
		&cli.StringFlag{Name: "tls-key", Usage: "`FILE`: the key of --tls-cert"},
		&cli.StringFlag{Name: "ca-cert", Usage: "`FILE`: the CA certificates that signed the server's (default: the system's)", EnvVars: []string{"AHVFS_CA_CERT"}},
	}
}

// peerPasswordFlag is the password of the other repository of init
// --copy-params-from and of a local sync peer.
func peerPasswordFlag() cli.Flag {
	return &cli.StringFlag{Name: "peer-password-file", Usage: "`FILE` holding the password of the other repository (--copy-params-from, or a local --to/--from), when it is encrypted",
		EnvVars: []string{"AHVFS_PEER_PASSWORD_FILE"}}
}

// dialRemote makes a client of the ahvfs serve at loc.
func dialRemote(c *cli.Context, loc string) (*dr.Remote, error) {
	tc, err := dr.ClientTLS(c.String("tls-cert"), c.String("tls-key"), c.String("ca-cert"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	return dr.Dial(loc, tc)
}

// openPeer opens the other repository of a sync or init: a local
// directory with --peer-password-file.
func openPeer(ctx context.Context, c *cli.Context, env *cliEnv, dir string, writable bool) (*engine.Repository, error) {
	var pw []byte
	if f := c.String("peer-password-file"); f != "" {
		var err error
		if pw, err = readSecret(ctx, f); err != nil {
			return nil, err
		}
	}
	r, err := engine.Open(ctx, dir, engine.OpenOptions{Writable: writable, Password: pw, Logger: env.Log, LockWait: c.Duration("lock-wait")})
	if err != nil {
		return nil, fmt.Errorf("%s: %w (its password comes from --peer-password-file)", dir, err)
	}
	return r, nil
}

// syncEndpoint opens loc as one side of a sync: a server, or a local
// repository (writable when it is the target).
func syncEndpoint(ctx context.Context, c *cli.Context, env *cliEnv, loc string, target bool) (interface {
	dr.Source
	dr.Target
}, error) {
	if dr.IsRemote(loc) {
		return dialRemote(c, loc)
	}
	r, err := openPeer(ctx, c, env, loc, target)
	if err != nil {
		return nil, err
	}
	return &dr.Local{R: r, Own: true}, nil
}

// idleCloseDefault is how long ahvfs serve keeps the repository open
// without requests.
const idleCloseDefault = 30 * time.Second
