package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// repo is a repository and what the run put into it.
type repo struct {
	name    string
	dir     string              // --repo: a directory, or s3://BUCKET/NAME (with -s3)
	extra   []string            // more arguments of every command: the S3 endpoint and this host's cache
	env     []string            // the environment of its commands (the password, never argv)
	imports map[string]*attempt // VM@TIME of every import started
	dur     map[*source]time.Duration
	count   int // imports started, for their times
	checks  int // checks made, for verify --read-data every few
	listed  int // restore points at the last check
	logical int64
}

// attempt is one import: what it stored and what became of it.
type attempt struct {
	disks     []variant
	trial     int  // or setup
	whole     bool // not to be killed: setup, growth, final
	killed    bool // by the trial's SIGKILL
	failed    bool // exited non-zero, not killed
	committed bool // exited 0, or listed since
	late      bool // not listed at its trial's check, listed later
}

var vms = []string{"web01", "db01", "files01"}

func (k *killer) newRepo(ctx context.Context, name string) (*repo, error) {
	r := &repo{name: name, dir: filepath.Join(k.work, name), imports: map[string]*attempt{}, dur: map[*source]time.Duration{}}
	if k.o.S3 != "" {
		r.dir = "s3://importkill/" + name
		r.extra = []string{"--s3-endpoint", k.o.S3, "--cache-dir", filepath.Join(k.work, "cache"), "--state-dir", filepath.Join(k.work, "state")}
	}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AHVFS_") {
			r.env = append(r.env, e)
		}
	}
	args := []string{"init", "--repo", r.dir, "--chunk-size", fmt.Sprint(chunkSize),
		"--pack-size", fmt.Sprint(max(chunkSize, int64(k.o.SizeMiB)<<20/32))}
	if name == "encrypted" {
		pw := filepath.Join(k.work, name+".password")
		if err := os.WriteFile(pw, fmt.Appendf(nil, "%016x%016x\n", k.rnd.Uint64(), k.rnd.Uint64()), 0o600); err != nil {
			return nil, err
		}
		r.env = append(r.env, "AHVFS_REPO_PASSWORD_FILE="+pw)
		args = append(args, "--encrypt")
	}
	at := where{trial: setup, repo: name}
	if p, err := k.ahvfs(ctx, at, r, nil, args...); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.Report())
	}
	// The sources as they are, as the disks of one restore point
	// (everything new), then a variant of each, timed: what a trial's
	// import costs.
	var all []variant
	for _, s := range k.sources {
		all = append(all, variant{src: s})
	}
	if _, err := k.importOf(ctx, r, at, all); err != nil {
		return nil, err
	}
	for _, s := range k.sources {
		v := k.newVariant(s)
		took, err := k.importOf(ctx, r, at, []variant{v})
		if err != nil {
			return nil, err
		}
		r.dur[s] = took
	}
	return r, nil
}

// origin says where an import came from.
func (a *attempt) origin() string {
	switch {
	case a.trial == setup:
		return "setup"
	case a.trial == final:
		return "the final import"
	case a.whole:
		return fmt.Sprintf("unkilled import after trial %d", a.trial)
	}
	return fmt.Sprintf("trial %d", a.trial)
}

// durs lists the import durations the kill delays are drawn from.
func (r *repo) durs() string {
	var s []string
	for src, d := range r.dur {
		s = append(s, fmt.Sprintf("%v (%s)", d.Round(time.Millisecond), src.name))
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// next names a new restore point: a VM and a time of its own.
func (r *repo) next(rnd *rand.Rand) (vm, at string) {
	r.count++
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.count) * time.Minute)
	return vms[rnd.IntN(len(vms))], t.Format(time.RFC3339)
}

// prepare writes a new import's images and returns its restore point's
// name, the files and its disks.
func (k *killer) prepare(r *repo, disks []variant) (name string, args []string, err error) {
	vm, at := r.next(k.rnd)
	name = vm + "@" + at
	args = []string{"import", "--repo", r.dir, "--json", "--vm", vm, "--time", at}
	for i, v := range disks {
		path := filepath.Join(k.work, fmt.Sprintf("%s-%d-disk-%d.raw", r.name, r.count, i))
		if err := v.content().write(path); err != nil {
			return "", nil, err
		}
		args = append(args, path)
	}
	return name, args, nil
}

// removeImages removes an import's image files (the trailing arguments).
func removeImages(args []string, n int) {
	for _, p := range args[len(args)-n:] {
		os.Remove(p)
	}
}

// importOf imports disks unkilled; it must succeed.
func (k *killer) importOf(ctx context.Context, r *repo, at where, disks []variant) (time.Duration, error) {
	name, args, err := k.prepare(r, disks)
	if err != nil {
		return 0, err
	}
	defer removeImages(args, len(disks))
	imp := &attempt{disks: disks, trial: at.trial, whole: true}
	r.imports[name] = imp
	p, err := k.ahvfs(ctx, at, r, nil, args...)
	if err != nil {
		imp.failed = true
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if at.trial == setup {
			return 0, fmt.Errorf("%v: import: %w\n%s", at, err, p.Report())
		}
		k.fail(at, fmt.Sprintf("an unkilled import of %s failed: %v", name, err), p.Report())
		return 0, nil
	}
	k.importDone(r, at, name, imp, p)
	return p.Took, nil
}

// importDone records an import that exited 0 and checks what it printed.
func (k *killer) importDone(r *repo, at where, name string, imp *attempt, p *proc) {
	imp.committed = true
	var res struct {
		RestorePoint string `json:"restore_point"`
	}
	if err := json.Unmarshal(p.Stdout.Bytes(), &res); err != nil || res.RestorePoint != name {
		k.fail(at, fmt.Sprintf("import of %s printed restore point %q (%v)", name, res.RestorePoint, err), p.Report())
	}
	if len(imp.disks) == 1 {
		// Each finished import teaches how long one takes, so that the
		// kills keep spreading over imports when the load changes.
		s := imp.disks[0].src
		r.dur[s] = (3*r.dur[s] + p.Took) / 4
	}
}

// importWhole is the unkilled import that grows the repository.
func (k *killer) importWhole(ctx context.Context, r *repo, at where) error {
	_, err := k.importOf(ctx, r, at, k.newDisks())
	return err
}

// newDisks draws the disks of an import: one, or a fifth of the time two.
func (k *killer) newDisks() []variant {
	disks := []variant{k.newVariant(nil)}
	if k.rnd.IntN(5) == 0 {
		disks = append(disks, k.newVariant(nil))
	}
	return disks
}
