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
			Name:      "init",
			Usage:     "create a repository",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "chunk-size", Value: "1MiB", Usage: "fixed chunk size, a power of two from 64KiB to 8MiB"},
				&cli.StringFlag{Name: "parity", Value: "10+2", Usage: "Reed-Solomon data+parity shards protecting every pack"},
				&cli.StringFlag{Name: "compression", Value: engine.DefaultCompression, Usage: "s2, zstd or none"},
				&cli.StringFlag{Name: "pack-size", Value: "32MiB", Usage: "size at which packs are sealed"},
				&cli.BoolFlag{Name: "encrypt", Usage: "encrypt the repository (AES-256-GCM, key from argon2id)"},
				&cli.StringFlag{Name: "password-file", Usage: "file holding the new repository's password (with --encrypt)", EnvVars: []string{"AHVFS_REPO_PASSWORD_FILE"}},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				dir, err := repoDir(c)
				if err != nil {
					return err
				}
				o := engine.InitOptions{Compression: c.String("compression")}
				cs, err := parseSize(c.String("chunk-size"))
				if err != nil {
					return err
				}
				o.ChunkSize = int(cs)
				ps, err := parseSize(c.String("pack-size"))
				if err != nil {
					return err
				}
				o.PackSize = ps
				if o.ParityData, o.ParityShards, err = engine.ParseParity(c.String("parity")); err != nil {
					return usagef("%v", err)
				}
				if c.Bool("encrypt") {
					if c.String("password-file") == "" {
						return usagef("--encrypt needs --password-file F (passwords are never taken from the command line)")
					}
					if o.Password, err = readSecretFile(c.String("password-file")); err != nil {
						return err
					}
				}
				return runInit(c.Context, env, dir, o)
			},
		}
	})
}

func runInit(ctx context.Context, env *cliEnv, dir string, o engine.InitOptions) error {
	cfg, err := engine.Init(ctx, dir, o)
	if err != nil {
		return err
	}
	if env.JSON {
		return writeJSON(env.Stdout, cfg)
	}
	enc := "no"
	if cfg.Encryption != nil {
		enc = "AES-256-GCM, argon2id key"
	}
	fmt.Fprintf(env.Stdout, "created repository %s\n  id %s\n  chunk size %s, packs %s, parity %d+%d, compression %s, encryption %s\n",
		dir, cfg.ID, ibytes(int64(cfg.ChunkSize)), ibytes(cfg.PackSize), cfg.Parity.Data, cfg.Parity.Parity, cfg.Compression, enc)
	return nil
}
