package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
)

type listEntry struct {
	Name  string `json:"name"`
	VM    string `json:"vm"`
	Time  string `json:"time"`
	Disks []struct {
		Disk string `json:"disk"`
		Size int64  `json:"size"`
	} `json:"disks"`
	Logical int64 `json:"logical_bytes"`
}

func parseList(b []byte) ([]listEntry, error) {
	var list []listEntry
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("list --json printed no list: %w", err)
	}
	return list, nil
}

// check verifies the repository (with the data every few trials and at
// the end), lists it, and reads back every disk of every restore point
// listed. It returns how many restore points it read back.
func (k *killer) check(ctx context.Context, r *repo, at where) int {
	args := []string{"verify", "--repo", r.dir}
	r.checks++
	if at.trial < 0 || k.o.ReadDataEvery > 0 && r.checks%k.o.ReadDataEvery == 0 {
		args = append(args, "--read-data")
	}
	if p, err := k.ahvfs(ctx, at, r, nil, args...); err != nil {
		k.fail(at, fmt.Sprintf("%s: %v", strings.Join(args[:1], " "), err), p.Report())
	}
	p, err := k.ahvfs(ctx, at, r, nil, "list", "--repo", r.dir, "--json")
	if err != nil {
		k.fail(at, fmt.Sprintf("list: %v", err), p.Report())
		return 0
	}
	list, err := parseList(p.Stdout.Bytes())
	if err != nil {
		k.fail(at, err.Error(), p.Report())
		return 0
	}
	listed := map[string]bool{}
	type job struct {
		name string
		disk int
		v    variant
	}
	var jobs []job
	r.listed, r.logical = len(list), 0
	for _, e := range list {
		r.logical += e.Logical
		if listed[e.Name] {
			k.fail(at, fmt.Sprintf("list shows restore point %s twice", e.Name), p.Report())
			continue
		}
		listed[e.Name] = true
		imp, ok := r.imports[e.Name]
		if !ok {
			k.fail(at, fmt.Sprintf("list shows restore point %s, which no import made", e.Name), p.Report())
			continue
		}
		if !imp.committed {
			imp.committed = true
			imp.late = imp.trial != at.trial
		}
		if len(e.Disks) != len(imp.disks) {
			k.fail(at, fmt.Sprintf("list shows restore point %s with %d disks, imported with %d", e.Name, len(e.Disks), len(imp.disks)), p.Report())
		}
		for i, v := range imp.disks {
			if i < len(e.Disks) && (e.Disks[i].Disk != fmt.Sprintf("disk-%d", i) || e.Disks[i].Size != v.src.size) {
				k.fail(at, fmt.Sprintf("list shows restore point %s disk %d as %s of %d bytes, imported as disk-%d of %d",
					e.Name, i, e.Disks[i].Disk, e.Disks[i].Size, i, v.src.size), p.Report())
			}
			jobs = append(jobs, job{e.Name, i, v})
		}
	}
	var missing []string
	for name, imp := range r.imports {
		if imp.committed && !listed[name] {
			missing = append(missing, fmt.Sprintf("%s (%s)", name, imp.origin()))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		k.fail(at, "committed restore points are no longer listed: "+strings.Join(missing, ", "), p.Report())
	}
	// Read back, two at a time.
	ch := make(chan job)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for j := range ch {
				c := newChecker(j.v)
				disk := fmt.Sprintf("disk-%d", j.disk)
				p, err := k.ahvfs(ctx, at, r, c, "cat", "--repo", r.dir, j.name, disk)
				k.mu.Lock()
				k.res.readBack += c.n
				k.mu.Unlock()
				switch {
				case err != nil:
					what := fmt.Sprintf("cat %s %s: %v", j.name, disk, err)
					if pr := c.problem(false); pr != "" {
						what += "; what came " + pr
					}
					k.fail(at, what, p.Report())
				case c.problem(true) != "":
					k.fail(at, fmt.Sprintf("cat %s %s %s", j.name, disk, c.problem(true)), p.Report())
				}
			}
		})
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	return len(list)
}
