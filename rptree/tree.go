package rptree

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Tree is a repository's restore points as a read-only io/fs.FS (see the
// package documentation for the layout and the guarantees). It implements
// fs.ReadDirFS, fs.StatFS and fs.ReadLinkFS, and each method has a
// ...Context form for servers. A Tree is safe for concurrent use.
type Tree struct {
	repo  *engine.Repository
	opts  Options
	disks *diskCache

	refreshMu   sync.Mutex
	lastRefresh time.Time

	mu     sync.Mutex
	vms    map[string]engine.VM // by directory name; nil: not loaded
	rpSets map[string]*rpSet    // by VM name
}

// rpSet is one VM's restore points by directory name.
type rpSet struct {
	byName map[string]*engine.RestorePoint
	names  []string // sorted
}

var (
	_ fs.ReadDirFS  = (*Tree)(nil)
	_ fs.StatFS     = (*Tree)(nil)
	_ fs.ReadLinkFS = (*Tree)(nil)
)

// New returns the tree of repo's restore points. It reads nothing yet.
// repo must stay open until the Tree is closed; a repository opened
// read-only is refreshed as the tree is listed, so new restore points
// appear.
func New(repo *engine.Repository, o Options) (*Tree, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("rptree: options: %w", err)
	}
	o = o.withDefaults()
	t := &Tree{repo: repo, opts: o, rpSets: map[string]*rpSet{}}
	t.disks = newDiskCache(repo, o)
	t.lastRefresh = time.Now()
	return t, nil
}

// Repository is the repository the tree shows.
func (t *Tree) Repository() *engine.Repository { return t.repo }

// Close releases the disks the tree keeps open. Files opened from it keep
// working until they are closed.
func (t *Tree) Close() error {
	t.disks.purge()
	return nil
}

// maybeRefresh checks for new restore points, at most once per
// RefreshInterval, and drops the cached listings when there are some.
func (t *Tree) maybeRefresh(ctx context.Context) {
	if t.opts.RefreshInterval < 0 {
		return
	}
	t.refreshMu.Lock()
	defer t.refreshMu.Unlock()
	if time.Since(t.lastRefresh) < t.opts.RefreshInterval {
		return
	}
	t.lastRefresh = time.Now()
	changed, err := t.repo.Refresh(ctx)
	if err != nil {
		t.opts.Logger.Warn("refresh repository", "err", err)
		return
	}
	if changed {
		t.mu.Lock()
		t.vms = nil
		t.rpSets = map[string]*rpSet{}
		t.mu.Unlock()
	}
}

// vmDirs returns the VMs by directory name.
func (t *Tree) vmDirs(ctx context.Context) (map[string]engine.VM, error) {
	t.mu.Lock()
	vms := t.vms
	t.mu.Unlock()
	if vms != nil {
		return vms, nil
	}
	list, err := t.repo.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list VMs: %w", err)
	}
	vms = make(map[string]engine.VM, len(list))
	for _, v := range list {
		if v.RestorePoints > 0 {
			vms[VMDirName(v.Name)] = v
		}
	}
	t.mu.Lock()
	t.vms = vms
	t.mu.Unlock()
	return vms, nil
}

// maxRPSets bounds how many VMs' restore-point lists stay decoded.
const maxRPSets = 256

// restorePoints returns vm's restore points by directory name.
func (t *Tree) restorePoints(ctx context.Context, vm string) (*rpSet, error) {
	t.mu.Lock()
	set := t.rpSets[vm]
	t.mu.Unlock()
	if set != nil {
		return set, nil
	}
	list, err := t.repo.ListRestorePoints(ctx, vm)
	if err != nil {
		return nil, fmt.Errorf("list restore points of %s: %w", vm, err)
	}
	set = &rpSet{byName: make(map[string]*engine.RestorePoint, len(list))}
	for _, rp := range list {
		n := engine.FormatTime(rp.Time)
		if _, dup := set.byName[n]; !dup {
			set.names = append(set.names, n)
		}
		set.byName[n] = rp // two in one second: the later one wins
	}
	sort.Strings(set.names)
	t.mu.Lock()
	if len(t.rpSets) >= maxRPSets {
		clear(t.rpSets)
	}
	t.rpSets[vm] = set
	t.mu.Unlock()
	return set, nil
}
