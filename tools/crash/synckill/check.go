package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// checkTarget: whatever the target lists verifies with its data and reads
// back as the source's point of that name.
func (k *killer) checkTarget(ctx context.Context, at string, t *target) {
	if p, err := k.ahvfs(ctx, at, "verify", "--repo", t.repo, "--read-data"); err != nil {
		k.chk.Fail(at, fmt.Sprintf("verify --read-data of the target: %v", err), p.Report())
	}
	p, err := k.ahvfs(ctx, at, "list", "--repo", t.repo, "--json")
	if err != nil {
		k.chk.Fail(at, fmt.Sprintf("list of the target: %v", err), p.Report())
		return
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(p.Stdout.Bytes(), &list); err != nil {
		k.chk.Fail(at, fmt.Sprintf("list --json of the target: %v", err), p.Report())
		return
	}
	for _, e := range list {
		want, ok := k.points[e.Name]
		if !ok {
			k.chk.Fail(at, "the target lists "+e.Name+", which the source does not hold", p.Report())
			continue
		}
		var got bytes.Buffer
		if c, err := k.ahvfsTo(ctx, at, &got, "cat", "--repo", t.repo, e.Name, "disk-0"); err != nil {
			k.chk.Fail(at, fmt.Sprintf("cat %s on the target: %v", e.Name, err), c.Report())
			continue
		}
		k.res.readBack += int64(got.Len())
		if !bytes.Equal(got.Bytes(), want) {
			k.chk.Fail(at, fmt.Sprintf("cat %s on the target: not the source's bytes", e.Name), "")
		}
	}
}

// finish runs the sync again to its end: the target then holds what the
// source holds.
func (k *killer) finish(ctx context.Context, at string, t *target) {
	at += ", the sync run again"
	p, err := k.ahvfs(ctx, at, k.syncArgs(t.url)...)
	if err != nil {
		k.chk.Fail(at, err.Error(), p.Report())
		return
	}
	var rep struct {
		Synced       []string `json:"synced"`
		AlreadyThere []string `json:"already_there"`
		Older        []string `json:"skipped_older"`
		Conflicts    []string `json:"conflicts"`
	}
	if err := json.Unmarshal(p.Stdout.Bytes(), &rep); err != nil {
		k.chk.Fail(at, "its --json report: "+err.Error(), p.Report())
		return
	}
	all := slices.Sorted(slices.Values(append(rep.Synced, rep.AlreadyThere...)))
	if len(all) != len(k.points) || len(rep.Older)+len(rep.Conflicts) > 0 {
		k.chk.Fail(at, fmt.Sprintf("synced %v, already there %v, skipped %v, conflicts %v: want all %d of the source's",
			rep.Synced, rep.AlreadyThere, rep.Older, rep.Conflicts, len(k.points)), p.Report())
	}
	k.checkTarget(ctx, at, t)
	l, err := k.ahvfs(ctx, at, "list", "--repo", t.repo, "--json")
	if err == nil && !bytes.Equal(l.Stdout.Bytes(), k.srcList) {
		k.chk.Fail(at, fmt.Sprintf("the target lists\n%s\nthe source\n%s", l.Stdout.Bytes(), k.srcList), "")
	}
}

// start starts an ahvfs command.
func (k *killer) start(args ...string) (*crashproc.Proc, error) {
	return crashproc.Start(k.o.Ahvfs, nil, nil, args...)
}

// ahvfs runs a command to its end and checks its output for crashes.
func (k *killer) ahvfs(ctx context.Context, at string, args ...string) (*crashproc.Proc, error) {
	return k.ahvfsTo(ctx, at, nil, args...)
}

// ahvfsTo is ahvfs with stdout to w.
func (k *killer) ahvfsTo(ctx context.Context, at string, w io.Writer, args ...string) (*crashproc.Proc, error) {
	return k.chk.Run(ctx, k.o.Ahvfs, at, w, cmdTimeout, args...)
}
