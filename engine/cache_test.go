package engine

import (
	"testing"
)

// TestChunkCacheClear: clearing the cache (a repository that closes)
// empties it and lets its buffers go; a reader's buffer stays whole until
// it releases it.
func TestChunkCacheClear(t *testing.T) {
	c := newChunkCache(1<<20, 1024)
	var held *chunkBuf
	for i := range 8 {
		b := &chunkBuf{b: c.buffer()[:1024], c: c}
		b.b[0] = byte(i)
		c.lru.hold(b)
		c.lru.add(ID{byte(i)}, b)
		if i == 3 {
			b.refs.Add(1) // a reader's
			held = b
		}
	}
	if c.lru.used == 0 || c.lru.ll.Len() != 8 {
		t.Fatalf("the cache holds %d chunks, %d bytes", c.lru.ll.Len(), c.lru.used)
	}
	c.clear()
	if c.lru.used != 0 || c.lru.ll.Len() != 0 || len(c.lru.items) != 0 {
		t.Fatalf("after clear: %d chunks, %d bytes", c.lru.ll.Len(), c.lru.used)
	}
	if _, ok := c.lru.get(ID{1}); ok {
		t.Fatal("a cleared chunk is still found")
	}
	if held.b == nil || held.b[0] != 3 || held.refs.Load() != 1 {
		t.Fatalf("the reader's chunk was taken from it: %v refs %d", held.b == nil, held.refs.Load())
	}
	held.release()
}
