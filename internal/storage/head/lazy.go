package head

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// The search index (signatures and attribute values, index.go) and the span aggregates
// (aggregates.go) are for readers, and keeping them up to date cost a fifth of the head's
// ingest CPU. A head that nobody searches need not pay it, so they are brought up to date
// lazily: a trace records how much of its buffer is indexed, and a shard lists the traces with
// spans not yet indexed (dirty). Every reader of the index or the aggregates first indexes the
// dirty traces of the shard it reads, under the same lock it reads under, so what it reads is
// complete however the spans got there.
//
// Indexing at read time would make the first search after a busy spell pay for the whole head,
// so for a while after any read (eagerFor) appends index as they go, as the head always did:
// a server being searched keeps the index current and its searches fast; one that is only
// ingesting does no index work at all for traces that leave the head unsearched.

// eagerFor is how long after a read of the index appends keep it up to date as they go.
const eagerFor = time.Minute

// maxUnindexed bounds the backlog a first read has to index: past it appends index as they go
// whether or not anyone reads. A head within the default budgets (48 MiB held) stays under it;
// one configured to hold millions of spans (a long trace_idle) would otherwise make its first
// search index them all (seconds).
const maxUnindexed = 64 << 20

// markRead notes that the index is being read, so that appends keep it current for a while.
// The first read after a spell without any indexes the backlog on every core but one at once
// rather than shard by shard as the reader goes. One core is left to ingest: the catch-up holds
// each shard's lock while it indexes the shard, and on two cores two catch-up goroutines held up
// every export (4.7 s of the mutex profile's 17 s in an admission run, the largest item).
func (h *Head) markRead() {
	now := h.now().UnixNano()
	last := h.readAt.Load()
	if now-last <= int64(time.Second) || !h.readAt.CompareAndSwap(last, now) {
		return
	}
	if now-last < int64(eagerFor) {
		return
	}
	var wg sync.WaitGroup
	var next atomic.Int32
	for range min(max(1, runtime.GOMAXPROCS(0)-1), shardCount) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < shardCount; i = next.Add(1) - 1 {
				sh := &h.shards[i]
				sh.mu.Lock()
				h.catchUp(sh)
				sh.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// eager reports whether an append at now keeps the index current as it goes.
func (h *Head) eager(now int64) bool {
	return now-h.readAt.Load() < int64(eagerFor) || h.unindexed.Load() > maxUnindexed
}

// listDirty lists t as having spans not yet indexed; runs under the shard lock.
func (sh *shard) listDirty(t *Trace) {
	if t.dirtyAt == 0 {
		sh.dirty = append(sh.dirty, t)
		t.dirtyAt = int32(len(sh.dirty))
	}
}

// unlistDirty takes t off the dirty list (it was indexed, or released); runs under the shard lock.
func (sh *shard) unlistDirty(t *Trace) {
	i := int(t.dirtyAt) - 1
	if i < 0 {
		return
	}
	last := sh.dirty[len(sh.dirty)-1]
	sh.dirty[i], last.dirtyAt = last, int32(i+1)
	sh.dirty[len(sh.dirty)-1] = nil
	sh.dirty = sh.dirty[:len(sh.dirty)-1]
	t.dirtyAt = 0
}

// catchUp indexes and aggregates every span of the shard not yet indexed; runs under the
// shard lock.
func (h *Head) catchUp(sh *shard) {
	for len(sh.dirty) > 0 {
		h.indexRest(sh, sh.dirty[len(sh.dirty)-1])
	}
}

// indexRest indexes and aggregates the spans of t past t.indexed and takes it off the dirty
// list; runs under the shard lock.
func (h *Head) indexRest(sh *shard, t *Trace) {
	if t.indexed < len(t.buf) && !noIndex {
		var s otlpwire.Span
		st := h.stripe(&t.ID)
		st.mu.Lock()
		b := t.buf[t.indexed:]
		for len(b) > 0 {
			gi, n := binary.Uvarint(b)
			b = b[n:]
			l, n := binary.Uvarint(b)
			b = b[n:]
			raw := b[:l]
			b = b[l:]
			// The bytes were scanned before they were appended; they scan the same now.
			if otlpwire.ScanSpan(raw, &s) != nil {
				continue
			}
			// The values are stamped with the trace's last append rather than their own,
			// which is later: they are kept by the sweep at least as long as they should be.
			sh.index.indexSpan(t, &s, t.lastAppend)
			st.add(t.groups[gi], &s, 1)
		}
		st.mu.Unlock()
	}
	if t.dirtyAt != 0 {
		h.unindexed.Add(-int64(len(t.buf) - t.indexed))
	}
	t.indexed = len(t.buf)
	sh.unlistDirty(t)
}
