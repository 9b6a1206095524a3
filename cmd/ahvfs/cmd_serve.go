package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/dr"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:      "serve",
			Usage:     "serve the repository to remote ahvfs clients (sync --to/--from https://...) over mutual TLS",
			ArgsUsage: " ",
			Description: "TLS 1.3 only; every client must present a certificate signed by a CA of --client-ca.\n" +
				"The repository is opened while requests come (a writer for those that write) and closed\n" +
				"after --idle-close without any, so local jobs get it between syncs. With --append-only,\n" +
				"clients may add restore points and extend locks but not forget anything: a compromised\n" +
				"source site cannot delete the DR copy (run prune and gc on this host instead). Without it,\n" +
				"clients may also forget, prune, gc (which runs alone: other requests wait) and unlock.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "listen", Usage: "`ADDR` to listen on (HOST:PORT)", Required: true},
				&cli.StringFlag{Name: "tls-cert", Usage: "`FILE`: the server's certificate", Required: true},
				&cli.StringFlag{Name: "tls-key", Usage: "`FILE`: its key", Required: true},
				&cli.StringFlag{Name: "client-ca", Usage: "`FILE`: the CA certificates clients' certificates must be signed by", Required: true},
				&cli.BoolFlag{Name: "append-only", Usage: "refuse forget and every other removal from clients"},
				&cli.DurationFlag{Name: "idle-close", Value: idleCloseDefault, Usage: "close the repository after `DURATION` without requests"},
				&cli.DurationFlag{Name: "gc-quiet", Value: time.Minute, Usage: "a client's gc runs only `DURATION` after the last client wrote (a sync's blobs wait for their restore point)"},
				repoPasswordFlag(),
			},
			Action: runServe,
		}
	})
}

func runServe(c *cli.Context) error {
	env := envFrom(c)
	if _, err := repoDir(c); err != nil {
		return err
	}
	tc, err := dr.ServerTLS(c.String("tls-cert"), c.String("tls-key"), c.String("client-ca"))
	if err != nil {
		return usagef("%v", err)
	}
	// The repository must open (password, format) before clients come.
	r, err := openRepo(c.Context, c, env, false)
	if err != nil {
		return err
	}
	r.Close()
	s := &dr.Server{AppendOnly: c.Bool("append-only"), IdleClose: c.Duration("idle-close"), GCQuiet: c.Duration("gc-quiet"), Log: env.Log,
		Open: func(ctx context.Context, writable bool) (*engine.Repository, error) {
			return openRepoWith(ctx, c, env, engine.OpenOptions{Writable: writable})
		},
		OpenGC: func(ctx context.Context) (*engine.Repository, error) {
			return openRepoWith(ctx, c, env, engine.OpenOptions{Writable: true, Exclusive: true})
		},
		Unlock: func(ctx context.Context) ([]string, []string, error) { return serverUnlock(ctx, c) }}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 30 * time.Second, TLSConfig: tc,
		ErrorLog: log.New(slogWriter{env.Log}, "", 0)}
	mode := ""
	if s.AppendOnly {
		mode = ", append-only"
	}
	fmt.Fprintf(env.Stdout, "serving %s on https://%s (client certificates of %s%s)\n", c.String("repo"), ln.Addr(), c.String("client-ca"), mode)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, tc)) }()
	select {
	case err = <-errc:
	case <-c.Context.Done():
		// A server stopped by a signal (a service manager's SIGTERM) that
		// shuts down cleanly has done its job: exit 0.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err = hs.Shutdown(ctx); err != nil {
			err = fmt.Errorf("stop serving: %w", err)
		}
		cancel()
		env.Log.Info("stopped serving " + c.String("repo"))
	}
	if cerr := s.Close(); cerr != nil && (err == nil || errors.Is(err, http.ErrServerClosed)) {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// slogWriter sends the HTTP server's own messages (TLS handshake
// failures: clients without a good certificate) to the log as warnings;
// a connection closed before its handshake began (a port probe, a load
// balancer's health check) only at debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := "https: " + string(trimNewline(p))
	if strings.Contains(msg, "TLS handshake error") && strings.HasSuffix(msg, ": EOF") {
		w.l.Debug(msg)
	} else {
		w.l.Warn(msg)
	}
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
