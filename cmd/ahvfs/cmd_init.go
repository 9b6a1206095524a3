package main

import (
	"context"
	"fmt"
	"os"

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
				newSizeFlag("chunk-size", "1MiB", "fixed chunk `SIZE`, a power of two from 64KiB to 8MiB"),
				&cli.StringFlag{Name: "parity", Value: "10+2", Usage: "Reed-Solomon `DATA+PARITY` shards protecting every pack"},
				&cli.StringFlag{Name: "compression", Value: engine.DefaultCompression, Usage: "`ALGORITHM`: s2, zstd or none"},
				newSizeFlag("pack-size", "32MiB", "`SIZE` at which packs are sealed"),
				&cli.BoolFlag{Name: "encrypt", Usage: "encrypt the repository (AES-256-GCM, key from argon2id); the password comes from --repo-password-file"},
				repoPasswordFlag(),
				// The name init used to give the repository password; elsewhere
				// --password-file is Prism's. Kept so that scripts still work.
				&cli.StringFlag{Name: "password-file", Hidden: true, Usage: "deprecated: use --repo-password-file"},
				&cli.StringFlag{Name: "copy-params-from", Usage: "make a DR copy of the repository `SOURCE` (a directory): the same chunk size, packs, parity and compression, and, when SOURCE is encrypted, its keys (under this repository's own password), so that 'ahvfs sync' moves blobs as they are"},
				peerPasswordFlag(),
				&cli.BoolFlag{Name: "s3-object-lock", Usage: "create the bucket of an s3:// repository with object lock enabled (locked restore points then cannot be deleted, even by the store's users)"},
			},
			Action: func(c *cli.Context) error {
				env := envFrom(c)
				dir, err := repoDir(c)
				if err != nil {
					return err
				}
				o := engine.InitOptions{Compression: c.String("compression"), ChunkSize: int(flagSize(c, "chunk-size")), PackSize: flagSize(c, "pack-size")}
				if o.ParityData, o.ParityShards, err = engine.ParseParity(c.String("parity")); err != nil {
					return usagef("%v", err)
				}
				pwFile, err := initPasswordFile(c, env)
				if err != nil {
					return err
				}
				switch {
				case c.Bool("encrypt") && pwFile == "":
					return usagef("--encrypt needs --repo-password-file FILE or %s (passwords are never taken from the command line)", envRepoPasswordFile)
				case c.Bool("encrypt"):
					if o.Password, err = readSecret(c.Context, pwFile); err != nil {
						return err
					}
				case pwFile != "" && pwFile != os.Getenv(envRepoPasswordFile):
					// Given on the command line, not only inherited from the
					// environment: the user meant to encrypt.
					return usagef("init: a repository password file was given without --encrypt: add --encrypt to encrypt the repository")
				}
				if src := c.String("copy-params-from"); src != "" {
					for _, f := range []string{"chunk-size", "parity", "compression", "pack-size"} {
						if c.IsSet(f) {
							return usagef("init: --%s cannot be chosen with --copy-params-from: the parameters are the source's", f)
						}
					}
					r, err := openPeer(c.Context, c, env, src, false)
					if err != nil {
						return err
					}
					defer r.Close()
					if r.Encrypted() && len(o.Password) == 0 {
						return usagef("init: %s is encrypted, so its copy is too: add --encrypt and --repo-password-file (the password may differ from the source's)", src)
					}
					o.CopyFrom = r
				}
				if isS3Repo(c) {
					be, err := openS3Backend(c.Context, c, true, c.Bool("s3-object-lock"))
					if err != nil {
						return err
					}
					defer be.Close()
					if dir, err = cacheBase(c); err != nil {
						return err
					}
					o.Backend, o.Remote = be, true
				} else if c.Bool("s3-object-lock") {
					return usagef("--s3-object-lock is for an s3:// repository")
				}
				return runInit(c.Context, env, c.String("repo"), dir, o)
			},
		}
	})
}

// initPasswordFile is --repo-password-file, or the deprecated
// --password-file with a warning.
func initPasswordFile(c *cli.Context, env *cliEnv) (string, error) {
	old, cur := c.String("password-file"), c.String("repo-password-file")
	if old == "" {
		return cur, nil
	}
	if cur != "" && cur != old {
		return "", usagef("init: --password-file is the deprecated name of --repo-password-file: give only --repo-password-file")
	}
	fmt.Fprintln(env.Stderr, "ahvfs: warning: init --password-file is deprecated (it names Prism's password elsewhere): use --repo-password-file")
	return old, nil
}

// runInit creates the repository named name (--repo) in dir (for an
// s3:// one, the base of this host's caches).
func runInit(ctx context.Context, env *cliEnv, name, dir string, o engine.InitOptions) error {
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
		name, cfg.ID, ibytes(int64(cfg.ChunkSize)), ibytes(cfg.PackSize), cfg.Parity.Data, cfg.Parity.Parity, cfg.Compression, enc)
	return nil
}
