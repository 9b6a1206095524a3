package rptree

import (
	"container/list"
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/guestfs"
)

// openDisk is one disk of one restore point: its engine reader (shared by
// every open file, so read-ahead sees one sequential stream) and, once
// needed, its decoded guest filesystems.
type openDisk struct {
	key  string
	dr   *engine.DiskReader
	refs int           // guarded by diskCache.mu; the cache's own reference included
	elem *list.Element // in diskCache.lru while cached; nil once evicted

	gopts guestfs.Options
	gmu   sync.Mutex
	g     *guestfs.Disk
}

// guest returns the disk's guest filesystems, reading the partition table
// on first use. A failure is not remembered (it may be a cancelled call).
func (d *openDisk) guest(ctx context.Context) (*guestfs.Disk, error) {
	d.gmu.Lock()
	defer d.gmu.Unlock()
	if d.g != nil {
		return d.g, nil
	}
	g, err := guestfs.OpenDisk(ctx, d.dr, d.dr.Size(), d.gopts)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", d.dr.RestorePoint().Name(), d.dr.Disk().Name(), err)
	}
	d.g = g
	return g, nil
}

// diskCache keeps recently used disks open, bounded by Options.OpenDisks
// for disks nobody uses; disks in use stay open until released.
type diskCache struct {
	repo  *engine.Repository
	opts  Options
	mu    sync.Mutex
	byKey map[string]*openDisk
	lru   *list.List // front: most recently used
}

func newDiskCache(repo *engine.Repository, o Options) *diskCache {
	return &diskCache{repo: repo, opts: o, byKey: map[string]*openDisk{}, lru: list.New()}
}

// acquire returns disk n of rp, opening it if needed; release must be
// called once when done.
func (c *diskCache) acquire(ctx context.Context, rp *engine.RestorePoint, n int) (*openDisk, func(), error) {
	key := rp.ID + "/" + strconv.Itoa(n)
	c.mu.Lock()
	d := c.byKey[key]
	if d != nil {
		d.refs++
		c.lru.MoveToFront(d.elem)
		c.mu.Unlock()
		return d, c.releaser(d), nil
	}
	c.mu.Unlock()

	dr, err := c.repo.OpenDisk(ctx, rp, n)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	if other := c.byKey[key]; other != nil { // lost a race: use the winner's
		other.refs++
		c.lru.MoveToFront(other.elem)
		c.mu.Unlock()
		dr.Close()
		return other, c.releaser(other), nil
	}
	d = &openDisk{key: key, dr: dr, refs: 2, gopts: c.opts.Guest} // the cache's and the caller's
	d.elem = c.lru.PushFront(d)
	c.byKey[key] = d
	var evicted []*openDisk
	for c.lru.Len() > c.opts.OpenDisks {
		old := c.lru.Remove(c.lru.Back()).(*openDisk)
		evicted = append(evicted, c.drop(old)...)
	}
	c.mu.Unlock()
	closeAll(evicted)
	return d, c.releaser(d), nil
}

// drop removes d from the cache (c.mu held) and returns it if it must be
// closed now.
func (c *diskCache) drop(d *openDisk) []*openDisk {
	delete(c.byKey, d.key)
	d.elem = nil
	d.refs--
	if d.refs == 0 {
		return []*openDisk{d}
	}
	return nil
}

func (c *diskCache) releaser(d *openDisk) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			d.refs--
			last := d.refs == 0
			c.mu.Unlock()
			if last {
				closeAll([]*openDisk{d})
			}
		})
	}
}

// purge drops every cached disk; disks in use close when released.
func (c *diskCache) purge() {
	c.mu.Lock()
	var evicted []*openDisk
	for e := c.lru.Front(); e != nil; e = c.lru.Front() {
		evicted = append(evicted, c.drop(c.lru.Remove(e).(*openDisk))...)
	}
	c.mu.Unlock()
	closeAll(evicted)
}

func closeAll(ds []*openDisk) {
	for _, d := range ds {
		d.dr.Close()
	}
}
