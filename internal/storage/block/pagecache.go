package block

import (
	"container/list"
	"sync"
)

// pageCache keeps decoded integer pages of blocks, shared by every reader: a search that reads
// a block's newest traces first (StartOrder) touches one page per trace in each column, in
// chunks, and repeated searches (a dashboard refreshing, a user refining a query) touch the
// same newest pages again. Integer columns are the ones every scan reads (row ranges, starts,
// durations, parents, attribute owners and types); strings keep their dictionary form per
// cursor. Blocks are immutable, so an entry never goes stale; it only ages out.
type pageCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	lru   *list.List // front: most recently used *pageEntry
	m     map[pageKey]*list.Element
}

type pageKey struct {
	p    *pfile
	col  int
	rg   int
	page int
}

type pageEntry struct {
	key   pageKey
	first int64 // global row of the page's first value
	i64   []int64
	i32   []int32
}

func (e *pageEntry) size() int64 { return int64(8*len(e.i64)+4*len(e.i32)) + 96 }

// pageCacheBytes bounds the decoded pages kept, for all blocks together.
const pageCacheBytes = 48 << 20

var pages = &pageCache{max: pageCacheBytes, lru: list.New(), m: map[pageKey]*list.Element{}}

// PageCacheBytes is what the shared cache of decoded integer pages holds now, for /metrics.
func PageCacheBytes() int64 {
	pages.mu.Lock()
	defer pages.mu.Unlock()
	return pages.bytes
}

func (c *pageCache) get(k pageKey) *pageEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*pageEntry)
}

func (c *pageCache) put(e *pageEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[e.key]; ok {
		return
	}
	c.m[e.key] = c.lru.PushFront(e)
	c.bytes += e.size()
	for c.bytes > c.max {
		old := c.lru.Back()
		oe := old.Value.(*pageEntry)
		c.lru.Remove(old)
		delete(c.m, oe.key)
		c.bytes -= oe.size()
	}
}

// forget drops the pages of a closed file, so that they do not keep its reader alive.
func (c *pageCache) forget(p *pfile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.m {
		if k.p == p {
			c.lru.Remove(el)
			delete(c.m, k)
			c.bytes -= el.Value.(*pageEntry).size()
		}
	}
}
