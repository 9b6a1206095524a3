package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/engine/backend"
	"github.com/urfave/cli/v2"
)

// maxClockSkew is the clock difference repo check calls a problem: S3
// refuses requests signed 15 minutes off, and lock ages would mislead.
const maxClockSkew = 5 * time.Minute

func init() {
	registerFunc(func() *cli.Command {
		return &cli.Command{
			Name:  "repo",
			Usage: "diagnostics of the repository's storage",
			Subcommands: []*cli.Command{{
				Name:      "check",
				Usage:     "is the repository's store ready: reachable, credentials, a repository there, versioning and object lock, clock skew, locks",
				ArgsUsage: " ",
				Description: "For an s3:// repository: connects (TLS verified), checks the credentials may read, write and\n" +
					"delete under the prefix (with a probe object), reads config.json, the bucket's versioning and\n" +
					"object-lock settings, the store's clock against this host's, multipart uploads left by killed\n" +
					"processes, and the lock objects. Exit 0 when nothing is wrong.",
				Action: func(c *cli.Context) error {
					env := envFrom(c)
					if c.NArg() > 0 {
						return usagef("repo check: unexpected argument %q", c.Args().First())
					}
					if _, err := repoDir(c); err != nil {
						return err
					}
					if !isS3Repo(c) {
						return checkLocalRepo(c.Context, env, c.String("repo"))
					}
					return checkS3Repo(c, env)
				},
			}},
		}
	})
}

// repoCheck is repo check's report.
type repoCheck struct {
	Repository string              `json:"repository"`
	ID         string              `json:"id,omitempty"`
	Store      *backend.S3Status   `json:"store,omitempty"`
	Locks      []engine.LockHolder `json:"locks"`
	Problems   []string            `json:"problems"`
	OK         bool                `json:"ok"`
}

func checkS3Repo(c *cli.Context, env *cliEnv) error {
	ctx := c.Context
	rep := &repoCheck{Repository: c.String("repo"), Locks: []engine.LockHolder{}, Problems: []string{}}
	be, err := openS3Backend(ctx, c, false, false)
	if err != nil {
		return err
	}
	defer be.Close()
	if cfg, err := engine.ReadConfig(ctx, be); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	} else {
		rep.ID = cfg.ID
	}
	if rep.Store, err = be.Status(ctx); err != nil {
		return err
	}
	if s := rep.Store.ClockSkew; s > maxClockSkew || s < -maxClockSkew {
		rep.Problems = append(rep.Problems, fmt.Sprintf("this host's clock is %s off the store's: fix it (NTP); S3 refuses requests signed 15 minutes off", s.Abs().Round(time.Second)))
	}
	// RepoLocks stores and deletes a probe object: it proves the
	// credentials may write and delete.
	if locks, err := engine.RepoLocks(ctx, be); err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the credentials cannot write and delete under the prefix: %v", err))
	} else {
		rep.Locks = nonNil(locks)
		for _, h := range locks {
			if h.Stale {
				rep.Problems = append(rep.Problems, fmt.Sprintf("stale %s: 'ahvfs unlock' removes it", h))
			}
		}
	}
	return finishCheck(env, rep, func() {
		st := rep.Store
		fmt.Fprintf(env.Stdout, "store      %s, bucket %s, prefix %q: reachable, credentials accepted\n", st.Endpoint, st.Bucket, st.Prefix)
		if rep.ID != "" {
			fmt.Fprintf(env.Stdout, "repository %s\n", rep.ID)
		}
		ver := st.Versioning
		if ver == "" {
			ver = "off"
		}
		lock := "off (restore-point locks are kept by ahvfs only)"
		if st.ObjectLock {
			lock = "enabled (the store itself refuses to delete locked restore points)"
			if st.DefaultRetention != "" {
				lock += "; default retention " + st.DefaultRetention
			}
		}
		fmt.Fprintf(env.Stdout, "versioning %s\nobject lock %s\nclock skew %s (to the second: the store's clock has that resolution)\n", ver, lock, st.ClockSkew)
		if st.PendingUploads > 0 {
			fmt.Fprintf(env.Stdout, "uploads    %d unfinished multipart upload(s) (killed processes); gc aborts those older than a day\n", st.PendingUploads)
		}
		for _, h := range rep.Locks {
			fmt.Fprintf(env.Stdout, "lock       %s\n", h)
		}
	})
}

// finishCheck prints the report (as JSON, or with text, then its
// problems) and fails when it has problems.
func finishCheck(env *cliEnv, rep *repoCheck, text func()) error {
	rep.OK = len(rep.Problems) == 0
	if env.JSON {
		if err := writeJSON(env.Stdout, rep); err != nil {
			return err
		}
	} else {
		text()
		for _, p := range rep.Problems {
			fmt.Fprintf(env.Stdout, "problem: %s\n", p)
		}
	}
	if !rep.OK {
		return fmt.Errorf("repo check: %d problem(s) (see above)", len(rep.Problems))
	}
	return nil
}

// checkLocalRepo checks a directory repository: config.json and the
// writer lock.
func checkLocalRepo(ctx context.Context, env *cliEnv, dir string) error {
	rep := &repoCheck{Repository: dir, Locks: []engine.LockHolder{}, Problems: []string{}}
	be, err := backend.OpenLocal(dir)
	if err != nil {
		return err
	}
	defer be.Close()
	if cfg, err := engine.ReadConfig(ctx, be); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	} else {
		rep.ID = cfg.ID
	}
	holder, held := engine.LocalLockHolder(dir)
	return finishCheck(env, rep, func() {
		fmt.Fprintf(env.Stdout, "local repository %s (id %s)\n", dir, rep.ID)
		if held {
			fmt.Fprintf(env.Stdout, "locked by %s\n", holder)
		}
	})
}
