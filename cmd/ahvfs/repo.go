package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// repoPasswordFlag is accepted by every command that opens a repository;
// --repo-password-file is the repository's password everywhere, and
// --password-file only ever Prism's.
func repoPasswordFlag() cli.Flag {
	return &cli.StringFlag{Name: "repo-password-file", Usage: "`FILE` holding the repository password (encrypted repositories)",
		EnvVars: []string{envRepoPasswordFile}}
}

const envRepoPasswordFile = "AHVFS_REPO_PASSWORD_FILE"

// repoDir returns --repo or fails with a usage error.
func repoDir(c *cli.Context) (string, error) {
	d := c.String("repo")
	if d == "" {
		return "", usagef("no repository: give --repo DIR or set AHVFS_REPO")
	}
	return d, nil
}

// readSecret reads a password file (at most 64KiB; trailing newline
// removed). It returns when ctx is done, so a FIFO nobody writes to does
// not hang the command.
func readSecret(ctx context.Context, path string) ([]byte, error) {
	b, err := readFileContext(ctx, path, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	return engine.ParsePassword(b, path)
}

// repoPassword returns the repository password from --repo-password-file or
// its environment variable, or nil.
func repoPassword(c *cli.Context) ([]byte, error) {
	if p := c.String("repo-password-file"); p != "" {
		return readSecret(c.Context, p)
	}
	return nil, nil
}

// openRepo opens the repository named by --repo.
func openRepo(ctx context.Context, c *cli.Context, env *cliEnv, writable bool) (*engine.Repository, error) {
	return openRepoWith(ctx, c, env, engine.OpenOptions{Writable: writable})
}

// openRepoWith opens the repository named by --repo with o (its password,
// logger, lock wait and backend filled in): a directory, or an s3://
// location through this host's cache.
func openRepoWith(ctx context.Context, c *cli.Context, env *cliEnv, o engine.OpenOptions) (*engine.Repository, error) {
	var err error
	if o.Password, err = repoPassword(c); err != nil {
		return nil, err
	}
	o.Logger, o.LockWait = env.Log, c.Duration("lock-wait")
	dir, err := remoteOptions(ctx, c, &o)
	if err != nil {
		return nil, err
	}
	r, err := engine.Open(ctx, dir, o)
	if err != nil {
		return nil, hintRepoError(c.String("repo"), o.Password != nil, err)
	}
	return r, nil
}

// remoteOptions fills in the backend and cache of an s3:// --repo and
// returns the directory to open (--repo itself for a local repository).
// Open then owns the backend.
func remoteOptions(ctx context.Context, c *cli.Context, o *engine.OpenOptions) (string, error) {
	dir, err := repoDir(c)
	if err != nil || !isS3Repo(c) {
		return dir, err
	}
	be, err := openS3Backend(ctx, c, false, false)
	if err != nil {
		return "", err
	}
	base, err := cacheBase(c)
	if err == nil {
		o.StateDir, err = stateBase(c)
	}
	if err != nil {
		be.Close()
		return "", err
	}
	o.Backend, o.Remote, o.OwnBackend = be, true, true
	return base, nil
}

// hintRepoError says what to do about the engine's errors in the CLI's
// terms: the password's flag and variable.
func hintRepoError(dir string, gavePassword bool, err error) error {
	if !errors.Is(err, engine.ErrWrongPassword) {
		return err
	}
	msg := "wrong repository password (check --repo-password-file or " + envRepoPasswordFile + ")"
	if !gavePassword {
		msg = "the repository is encrypted: give its password with --repo-password-file FILE or " + envRepoPasswordFile
	}
	return &hintedError{msg: "repository " + dir + ": " + msg, err: err}
}

// hintedError replaces an error's message and keeps it for errors.Is.
type hintedError struct {
	msg string
	err error
}

func (e *hintedError) Error() string { return e.msg }
func (e *hintedError) Unwrap() error { return e.err }

func ibytes(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}

// writeJSON prints v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress shows bars on a terminal (stderr) and nothing otherwise.
type progress struct {
	p *mpb.Progress
}

func newProgress(ctx context.Context, env *cliEnv) *progress {
	if !env.TTY || env.JSON {
		return &progress{}
	}
	return &progress{p: mpb.NewWithContext(ctx, mpb.WithOutput(env.Stderr), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))}
}

// bar is one progress bar; a nil-safe no-op when not on a terminal.
type bar struct {
	b     *mpb.Bar
	start time.Time
}

func (p *progress) bytesBar(name string, total int64) *bar {
	if p.p == nil {
		return &bar{}
	}
	b := p.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace)))
	return &bar{b: b, start: time.Now()}
}

func (p *progress) countBar(name string, total int64) *bar {
	if p.p == nil {
		return &bar{}
	}
	b := p.p.AddBar(total, mpb.PrependDecorators(decor.Name(name, decor.WC{C: decor.DindentRight | decor.DextraSpace}), decor.CountersNoUnit("%d / %d")),
		mpb.AppendDecorators(decor.Percentage()))
	return &bar{b: b, start: time.Now()}
}

// set moves the bar to done (monotonic, safe from many goroutines).
func (b *bar) set(done int64) {
	if b.b != nil {
		b.b.SetCurrent(done)
	}
}

func (b *bar) finish() {
	if b.b != nil {
		b.b.SetTotal(-1, true)
	}
}

func (p *progress) wait() {
	if p.p != nil {
		p.p.Wait()
	}
}

func errorsIsExists(err error) bool { return errors.Is(err, engine.ErrExists) }
