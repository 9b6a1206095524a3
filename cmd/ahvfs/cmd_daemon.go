package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ahvfs/ahvfs/daemon"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/urfave/cli/v2"
)

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "daemon",
			Usage: "run protection policies on their schedules, serve /metrics and /healthz",
			Description: "Reads the configuration (docs/daemon.md; contrib/ahvfs.toml is an example), checks it\n" +
				"(every problem at once), and runs each policy's backups, retention, sync and the daily\n" +
				"verify share on their schedules, keeping the job history in the repository (`ahvfs jobs`).\n" +
				"SIGHUP reloads the configuration; SIGTERM lets running jobs finish for shutdown_timeout,\n" +
				"then cancels them (a cancelled backup removes what it created on the cluster).",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Required: true, Usage: "configuration `FILE` (TOML; docs/daemon.md)"},
				&cli.StringFlag{Name: "http", Usage: "serve /metrics and /healthz on `ADDR` (overrides http.listen)"},
			},
			Action: runDaemon,
		}
	})
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "config",
			Usage: "check a daemon configuration",
			Subcommands: []*cli.Command{{
				Name:      "check",
				Usage:     "validate a daemon configuration, every problem at once",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					env := envFrom(c)
					if c.NArg() != 1 {
						return usagef("config check: give the configuration FILE")
					}
					cfg, err := daemon.Load(c.Args().First())
					if err != nil {
						return usagef("%v", err)
					}
					if env.JSON {
						return writeJSON(env.Stdout, daemon.Summary(cfg))
					}
					for _, line := range daemon.Summary(cfg).Lines() {
						fmt.Fprintln(env.Stdout, line)
					}
					return nil
				},
			}},
		}
	})
}

// daemonLogger is the daemon's log on stderr: the configuration's format
// and level, unless --log-level is given.
func daemonLogger(c *cli.Context, cfg *daemon.Config, w io.Writer) *slog.Logger {
	name := cfg.Log.Level
	if c.IsSet("log-level") || name == "" {
		name = c.String("log-level")
		if !c.IsSet("log-level") {
			name = "info"
		}
	}
	var level slog.Level
	level.UnmarshalText([]byte(name))
	o := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func runDaemon(c *cli.Context) error {
	env := envFrom(c)
	file := c.String("config")
	cfg, err := daemon.Load(file)
	if err != nil {
		return usagef("%v", err)
	}
	log := daemonLogger(c, cfg, env.Stderr)
	env.Log = log
	// The repository settings come from the configuration, through the
	// flags every repository command reads.
	for flag, v := range map[string]string{"repo": cfg.Repository, "repo-password-file": cfg.PasswordFile, "s3-endpoint": cfg.S3Endpoint,
		"s3-ca-cert": cfg.S3CACert, "s3-credentials-file": cfg.S3CredentialsFile, "cache-dir": cfg.CacheDir} {
		if v != "" {
			if err := c.Set(flag, v); err != nil {
				return fmt.Errorf("daemon: %s: %w", flag, err)
			}
		}
	}
	if !c.IsSet("lock-wait") {
		c.Set("lock-wait", "30m") // a person's prune or gc: wait for it
	}
	d := daemon.New(cfg, daemon.Options{
		OpenRepo: func(ctx context.Context, _ *daemon.Config, writable bool) (*engine.Repository, error) {
			return openRepo(ctx, c, env, writable)
		},
		// A console request (a browse, a download) reads with a 64 MiB
		// cache: enough for its read-ahead of 32 chunks of 1 MiB, and
		// four of them at once stay small beside the jobs.
		OpenReader: func(ctx context.Context, _ *daemon.Config) (*engine.Repository, error) {
			return openRepoWith(ctx, c, env, engine.OpenOptions{CacheBytes: 64 << 20})
		},
		Logger: log,
	})
	ctx := c.Context
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hups:
				next, err := daemon.Load(file)
				if err != nil {
					log.Error("configuration not reloaded: the daemon goes on with the one it has", "err", err)
					continue
				}
				if next.Repository != cfg.Repository {
					log.Warn("a new repository takes a restart of the daemon; this one goes on with the old", "repository", cfg.Repository)
					next.Repository = cfg.Repository
				}
				d.Reload(next)
			}
		}
	}()
	httpCtx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	httpDone := make(chan error, 1)
	if addr := c.String("http"); addr != "" {
		cfg.HTTP.Listen = addr
	}
	if cfg.HTTP.Listen != "" {
		ready := make(chan string, 1)
		go func() { httpDone <- d.Serve(httpCtx, cfg.HTTP, func(a string) { ready <- a }) }()
		select {
		case a := <-ready:
			fmt.Fprintf(env.Stdout, "serving /metrics and /healthz on %s\n", a)
		case err := <-httpDone:
			return err
		}
	} else {
		httpDone <- nil
	}
	err = d.Run(ctx)
	stopHTTP()
	if herr := <-httpDone; err == nil {
		err = herr
	}
	return err
}
