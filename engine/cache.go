package engine

import (
	"container/list"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ahvfs/ahvfs/engine/backend"
)

func numCPU() int { return runtime.GOMAXPROCS(0) }

// lru is a mutex-guarded LRU map bounded by a cost. Values are shared:
// callers must not modify what they get.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int64
	used  int64
	ll    *list.List
	items map[K]*list.Element
	cost  func(V) int64
	// hold and drop, when set, are called under the lock when get returns
	// a value and when the cache lets go of one.
	hold, drop func(V)
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int64, cost func(V) int64) *lru[K, V] {
	return &lru[K, V]{max: max, ll: list.New(), items: map[K]*list.Element{}, cost: cost}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		v := e.Value.(*lruEntry[K, V]).val
		if c.hold != nil {
			c.hold(v)
		}
		return v, true
	}
	var zero V
	return zero, false
}

// add caches v under k unless k is cached already (then it returns false
// and keeps the old value).
func (c *lru[K, V]) add(k K, v V) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return false
	}
	c.items[k] = c.ll.PushFront(&lruEntry[K, V]{k, v})
	c.used += c.cost(v)
	for c.used > c.max && c.ll.Len() > 1 {
		e := c.ll.Back()
		ent := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.items, ent.key)
		c.used -= c.cost(ent.val)
		if c.drop != nil {
			c.drop(ent.val)
		}
	}
	return true
}

// flight deduplicates concurrent loads of the same key.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func (f *flight[K, V]) do(k K, load func() (V, error)) (V, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[K]*flightCall[V]{}
	}
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	c := &flightCall[V]{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()
	c.val, c.err = load()
	f.mu.Lock()
	delete(f.calls, k)
	f.mu.Unlock()
	close(c.done)
	return c.val, c.err
}

// chunkCache holds decoded chunks, bounded in bytes. Their memory is
// recycled: a chunk's buffer goes back to the pool once the cache has
// evicted it and no reader holds it, which spares the allocator zeroing and
// the kernel faulting in a fresh megabyte per chunk read.
type chunkCache struct {
	lru    *lru[ID, *chunkBuf]
	flight flight[ID, *chunkBuf]
	pool   sync.Pool // of *[]byte with capacity size
	size   int
}

// chunkBuf is a decoded chunk shared by the cache and its readers,
// counted: the cache holds one reference while it keeps the chunk, each
// reader one until it calls release.
type chunkBuf struct {
	b    []byte
	refs atomic.Int32
	c    *chunkCache
}

// tryHold takes a reference unless the buffer was already recycled.
func (b *chunkBuf) tryHold() bool {
	for {
		n := b.refs.Load()
		if n <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one recycles the memory.
func (b *chunkBuf) release() {
	if b.refs.Add(-1) == 0 && cap(b.b) == b.c.size {
		s := b.b[:0]
		b.b = nil
		b.c.pool.Put(&s)
	}
}

func newChunkCache(max int64, chunkSize int) *chunkCache {
	c := &chunkCache{size: chunkSize}
	c.lru = newLRU[ID, *chunkBuf](max, func(b *chunkBuf) int64 { return int64(cap(b.b)) + 64 })
	c.lru.hold = func(b *chunkBuf) { b.refs.Add(1) } // the cache's reference keeps it above zero
	c.lru.drop = (*chunkBuf).release
	c.pool.New = func() any { s := make([]byte, 0, chunkSize); return &s }
	return c
}

// clear empties the cache of a repository that closes. Its buffers go to
// the garbage collector, not back to the pool, which would keep them
// reachable for two more collections: a process that opens and closes
// repositories (the daemon's console, a request each) would otherwise
// hold a closed cache's worth of memory per open in that time. A reader
// still holding a chunk recycles it when it lets go, as before.
func (c *chunkCache) clear() {
	c.lru.mu.Lock()
	defer c.lru.mu.Unlock()
	for e := c.lru.ll.Front(); e != nil; e = e.Next() {
		if b := e.Value.(*lruEntry[ID, *chunkBuf]).val; b.refs.Add(-1) == 0 {
			b.b = nil
		}
	}
	c.lru.ll.Init()
	clear(c.lru.items)
	c.lru.used = 0
}

// buffer returns an empty buffer of chunk capacity for a new chunk.
func (c *chunkCache) buffer() []byte { return *c.pool.Get().(*[]byte) }

// pageCache holds decoded manifest pages, bounded in count.
type pageCache struct {
	lru    *lru[ID, []ID]
	flight flight[ID, []ID]
}

func newPageCache(max int64) *pageCache {
	return &pageCache{lru: newLRU[ID, []ID](max, func([]ID) int64 { return 1 })}
}

// packFiles caches open packs (backend Objects). An Object is closed on
// eviction only when no reader holds it.
type packFiles struct {
	be    backend.Backend
	max   int
	mu    sync.Mutex
	files map[PackID]*packFile
	order *list.List
}

type packFile struct {
	o       backend.Object
	refs    int
	evicted bool
	elem    *list.Element
}

func newPackFiles(be backend.Backend, max int) *packFiles {
	return &packFiles{be: be, max: max, files: map[PackID]*packFile{}, order: list.New()}
}

// get returns an open pack; call the release func when done. ctx bounds
// the opening only.
func (pf *packFiles) get(ctx context.Context, p PackID) (backend.Object, func(), error) {
	pf.mu.Lock()
	if e, ok := pf.files[p]; ok {
		e.refs++
		pf.order.MoveToFront(e.elem)
		pf.mu.Unlock()
		return e.o, func() { pf.release(e) }, nil
	}
	pf.mu.Unlock()
	o, err := pf.be.Open(ctx, packName(p))
	if err != nil {
		return nil, nil, fmt.Errorf("open pack %s: %w", p, err)
	}
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if e, ok := pf.files[p]; ok { // lost a race: use the other one
		o.Close()
		e.refs++
		return e.o, func() { pf.release(e) }, nil
	}
	e := &packFile{o: o, refs: 1}
	e.elem = pf.order.PushFront(p)
	pf.files[p] = e
	for len(pf.files) > pf.max {
		back := pf.order.Back()
		id := back.Value.(PackID)
		old := pf.files[id]
		pf.order.Remove(back)
		delete(pf.files, id)
		old.evicted = true
		if old.refs == 0 {
			old.o.Close()
		}
	}
	return o, func() { pf.release(e) }, nil
}

func (pf *packFiles) release(e *packFile) {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.evicted {
		e.o.Close()
	}
}

// forget drops a pack's cached Object (after repair stored the pack
// again: an Object reads the version it opened; before gc deletes it: a
// local file's space is freed when its last descriptor closes).
func (pf *packFiles) forget(p PackID) {
	pf.mu.Lock()
	e, ok := pf.files[p]
	if !ok {
		pf.mu.Unlock()
		return
	}
	pf.order.Remove(e.elem)
	delete(pf.files, p)
	e.evicted = true
	idle := e.refs == 0
	pf.mu.Unlock()
	if idle {
		e.o.Close() // outside the lock: closing a deleted file frees its blocks
	}
}

func (pf *packFiles) close() {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	for id, e := range pf.files {
		e.evicted = true
		if e.refs == 0 {
			e.o.Close()
		}
		delete(pf.files, id)
	}
	pf.order.Init()
}
