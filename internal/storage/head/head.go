// Package head holds the traces that are still receiving spans.
//
// Spans are kept as their OTLP wire bytes, appended to one buffer per trace, with the resource
// and scope they came with interned once and shared. That keeps the head to about the size of the
// data itself (no object graph per span) and makes handing a trace to the block writer free.
//
// A trace leaves the live set when it has been idle for a while, when it is old, or when the head
// is over its memory budget (oldest first). It then waits, still readable, in the flushing set
// until the block holding it is durable, and only then is it dropped. Spans that arrive for a
// trace after it left the live set start a new live entry: the reader merges both, and the block
// reader merges a trace split across blocks.
package head

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

const shardCount = 64

// Head is safe for concurrent use.
type Head struct {
	shards [shardCount]shard
	groups interner
	aggs   aggregates // span counts for TraceQL metrics (see aggregates.go)

	cands []cutCand // scratch for cutOldest

	bytes  atomic.Int64 // span bytes held, live and flushing
	spans  atomic.Int64
	traces atomic.Int64
	now    func() time.Time

	lastSweep atomic.Int64 // unix nanos of the last index sweep
	readAt    atomic.Int64 // unix nanos of the last read of the index (see lazy.go)
	unindexed atomic.Int64 // span bytes held and not yet indexed (see lazy.go)
}

type shard struct {
	mu       sync.Mutex
	live     map[[16]byte]*Trace
	flushing map[[16]byte][]*Trace
	// unchecked are the live traces begun since the last CheckSplits.
	unchecked [][16]byte
	index     shardIndex
	// dirty are the traces (live or flushing) with spans not yet indexed (see lazy.go).
	dirty []*Trace
	// idleQ and ageQ order the live traces by last and first append, for Cut (cutqueue.go).
	idleQ, ageQ cutQueue
	// byStart and splitIDs list traces for newest-first search (see startorder.go).
	byStart  map[int64][][16]byte
	splitIDs map[[16]byte]struct{}
	// maxSpans bounds the spans of any trace of the shard, its parts added up (see MaxSpans).
	maxSpans int
	// liveBytes is the span bytes of the live traces, and minSeq the oldest WAL segment of any
	// trace held (when minOK; recomputed when minDirty): the flush loop asks for both every
	// tick, and walking every trace for them cost a quarter of a core with 3M spans held.
	liveBytes       int64
	minSeq          uint64
	minOK, minDirty bool
}

// Trace is one trace's spans as held by the head. Its fields are read-only for everyone but the
// head; the summary fields are maintained as spans arrive so search needs no decoding.
type Trace struct {
	ID     [16]byte
	groups []*otlpwire.Group
	buf    []byte // records: uvarint group index, uvarint length, Span message

	SpanCount  int
	ErrorCount int
	Start, End uint64 // min start and max end over the spans, unix nanos
	// RootName and RootService are set from a span without a parent, when one arrives.
	RootName    string
	RootService string
	// Truncated marks a trace that reached the spans-per-trace limit: later spans were refused.
	Truncated bool
	// Split marks a trace that has other parts outside this entry: an earlier entry of the same
	// trace was cut from the live set (it waits for a block or is in one). Search judges such a
	// trace whole, with every part, instead of entry by entry.
	Split bool
	// SplitChecked is false until the blocks have been looked at for earlier parts (CheckSplits);
	// until then a reader must look itself.
	SplitChecked bool

	sig Signature // span names and attribute values, for search (see index.go)
	// indexed is how much of buf is in the index and the aggregates; dirtyAt is the trace's
	// place in its shard's dirty list, plus one (0: not listed). See lazy.go.
	indexed int
	dirtyAt int32

	firstSeq    uint64 // oldest WAL segment holding one of its spans
	firstAppend int64
	lastAppend  int64
}

// New returns an empty head.
func New() *Head {
	h := &Head{now: time.Now}
	for i := range h.shards {
		h.shards[i].live = map[[16]byte]*Trace{}
		h.shards[i].flushing = map[[16]byte][]*Trace{}
		h.shards[i].index.init()
		h.shards[i].byStart = map[int64][][16]byte{}
		h.shards[i].splitIDs = map[[16]byte]struct{}{}
	}
	h.groups.init()
	h.aggs.init()
	return h
}

func (h *Head) shard(id *[16]byte) *shard {
	// Trace IDs are random; their last byte spreads traces evenly.
	return &h.shards[id[15]%shardCount]
}

// Appender adds the spans of one request. It interns each resource/scope group once per request
// rather than once per span, and appends a run of spans of the same trace (SDKs and collectors
// send a trace's spans together) under one lock with one exactly-sized buffer growth, rather than
// letting the buffer double its way up span by span. Not safe for concurrent use; get one per
// request and call Commit at its end.
type Appender struct {
	h       *Head
	seq     uint64
	now     int64
	eager   bool // index the spans as they are appended (see lazy.go)
	last    *otlpwire.Group
	lastRes []byte
	lastSc  []byte

	run     [16]byte // trace of the buffered run
	runLen  int      // encoded size of the run
	pending []pendingSpan
}

type pendingSpan struct {
	g *otlpwire.Group
	s otlpwire.Span
}

// Appender returns an appender for spans that the WAL stored in segment seq.
func (h *Head) Appender(seq uint64) *Appender {
	now := h.now().UnixNano()
	return &Appender{h: h, seq: seq, now: now, eager: h.eager(now)}
}

// Append adds one validated span. g and s may be reused by the caller after the call, but the
// bytes they point into must stay valid until Commit.
func (a *Appender) Append(g *otlpwire.Group, s *otlpwire.Span) {
	if a.last == nil || !sameBytes(g.Resource, a.lastRes) || !sameBytes(g.Scope, a.lastSc) {
		a.last = a.h.groups.intern(g, a.now)
		a.lastRes, a.lastSc = g.Resource, g.Scope
	}
	if len(a.pending) > 0 && string(s.TraceID) != string(a.run[:]) {
		a.Commit()
	}
	if len(a.pending) == 0 {
		copy(a.run[:], s.TraceID)
	}
	a.pending = append(a.pending, pendingSpan{a.last, *s})
	a.runLen += 2*binary.MaxVarintLen32 + len(s.Raw)
}

// Commit adds the buffered run of spans to the head.
func (a *Appender) Commit() {
	if len(a.pending) == 0 {
		return
	}
	id := a.run
	sh := a.h.shard(&id)
	sh.mu.Lock()
	t := sh.live[id]
	created := t == nil
	if t == nil {
		t = &Trace{ID: id, firstSeq: a.seq, firstAppend: a.now, buf: make([]byte, 0, a.runLen)}
		if len(sh.flushing[id]) > 0 {
			// Late spans of a trace cut moments ago: the earlier part is still here.
			t.Split, t.SplitChecked = true, true
		} else {
			sh.unchecked = append(sh.unchecked, id)
		}
		sh.live[id] = t
		a.h.traces.Add(1)
	} else if free := cap(t.buf) - len(t.buf); free < a.runLen {
		// Grow by at least a quarter so a trace fed one span per request is not copied each time.
		t.buf = slices.Grow(t.buf, max(a.runLen, cap(t.buf)/4))
	}
	before := len(t.buf)
	sec := startSecond(t.Start)
	if created {
		sh.ageQ.push(id, a.now)
	}
	if created || t.lastAppend != a.now {
		sh.idleQ.push(id, a.now)
	}
	for i := range a.pending {
		t.add(a.pending[i].g, &a.pending[i].s, a.seq, a.now)
	}
	if a.eager && t.indexed == before {
		if !noIndex {
			for i := range a.pending {
				sh.index.indexSpan(t, &a.pending[i].s, a.now)
			}
		}
		a.aggregate()
		t.indexed = len(t.buf)
	} else {
		sh.listDirty(t)
		a.h.unindexed.Add(int64(len(t.buf) - before))
	}
	if created || startSecond(t.Start) != sec {
		sh.listStart(t)
	}
	if n := t.SpanCount; n > sh.maxSpans || len(sh.flushing) > 0 {
		for _, f := range sh.flushing[id] {
			n += f.SpanCount
		}
		sh.maxSpans = max(sh.maxSpans, n)
	}
	// Measured under the lock: once it is released, another request may append to the same
	// trace, and reading len(t.buf) then would count its bytes twice (once here, once there).
	added := int64(len(t.buf) - before)
	sh.liveBytes += added
	if !sh.minDirty && (!sh.minOK || a.seq < sh.minSeq) {
		sh.minSeq, sh.minOK = a.seq, true
	}
	sh.mu.Unlock()
	a.h.bytes.Add(added)
	a.h.spans.Add(int64(len(a.pending)))
	clear(a.pending)
	a.pending = a.pending[:0]
	a.runLen = 0
}

// sameBytes reports whether a and b are the same slice of the same request (not equal content):
// a cheap way to notice that the scanner moved on to another group.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (t *Trace) add(g *otlpwire.Group, s *otlpwire.Span, seq uint64, now int64) {
	gi := -1
	for i, x := range t.groups {
		if x == g {
			gi = i
			break
		}
	}
	if gi < 0 {
		gi = len(t.groups)
		t.groups = append(t.groups, g)
	}
	t.buf = binary.AppendUvarint(t.buf, uint64(gi))
	t.buf = binary.AppendUvarint(t.buf, uint64(len(s.Raw)))
	t.buf = append(t.buf, s.Raw...)
	t.SpanCount++
	if s.StatusCode == otlpwire.StatusError {
		t.ErrorCount++
	}
	if t.Start == 0 || s.Start < t.Start {
		t.Start = s.Start
	}
	if s.End > t.End {
		t.End = s.End
	}
	if len(s.ParentID) == 0 && t.RootName == "" {
		t.RootName = string(s.Name)
		t.RootService = string(g.ServiceName)
	}
	if seq < t.firstSeq {
		t.firstSeq = seq
	}
	// Appends are stamped when their request began, so they may commit out of order: the
	// trace's last append is the latest of them (Cut's queue has an entry for it).
	t.lastAppend = max(t.lastAppend, now)
}

// Bytes is the size of the span data held.
func (t *Trace) Bytes() int { return len(t.buf) }

// FirstSeq is the oldest log position (WAL segment, or the replicated log's sequence) that
// holds one of the trace's spans.
func (t *Trace) FirstSeq() uint64 { return t.firstSeq }

// Spans calls fn for each span with its group and message bytes, in arrival order. raw is valid
// as long as the trace is.
func (t *Trace) Spans(fn func(g *otlpwire.Group, raw []byte)) {
	b := t.buf
	for len(b) > 0 {
		gi, n := binary.Uvarint(b)
		b = b[n:]
		l, n := binary.Uvarint(b)
		b = b[n:]
		fn(t.groups[gi], b[:l])
		b = b[l:]
	}
}

// Get returns the head's parts of a trace: its live entry and any entries waiting for a block.
func (h *Head) Get(id [16]byte) []*Trace {
	sh := h.shard(&id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out []*Trace
	// A reader of a trace may read its signature: bring its parts' index up to date (a few
	// spans, not the shard's backlog).
	if t := sh.live[id]; t != nil {
		if t.dirtyAt != 0 {
			h.indexRest(sh, t)
		}
		out = append(out, t.snapshot())
	}
	for _, t := range sh.flushing[id] {
		if t.dirtyAt != 0 {
			h.indexRest(sh, t)
		}
		out = append(out, t)
	}
	return out
}

// snapshot copies what a reader needs so appends after the lock is released cannot race with it.
// Spans only ever get appended, so a reader may share the buffer prefix.
func (t *Trace) snapshot() *Trace {
	c := *t
	c.buf = t.buf[:len(t.buf):len(t.buf)]
	c.groups = t.groups[:len(t.groups):len(t.groups)]
	return &c
}

// CheckSplits settles Split for every live trace begun since the last call: inBlocks sets
// found[i] when blocks already hold part of trace ids[i]. It runs off the ingest path (the store
// calls it from its flush loop), so appending a span never waits for block lookups, and it is
// given every shard's new traces at once so that the store can test them block by block: one
// block's bloom filter stays in cache for all of them, where testing each trace against every
// block in turn missed the cache once per block.
func (h *Head) CheckSplits(inBlocks func(ids [][16]byte, found []bool)) {
	counts := make([]int, len(h.shards))
	var ids [][16]byte
	for i := range h.shards {
		sh := &h.shards[i]
		// The IDs stay listed until they are marked, so that SplitSummaries sees them meanwhile.
		sh.mu.Lock()
		ids = append(ids, sh.unchecked...)
		counts[i] = len(sh.unchecked)
		sh.mu.Unlock()
	}
	if len(ids) == 0 {
		return
	}
	found := make([]bool, len(ids))
	inBlocks(ids, found)
	off := 0
	for i, n := range counts {
		if n == 0 {
			continue
		}
		sh := &h.shards[i]
		sh.mu.Lock()
		for j, id := range ids[off : off+n] {
			if t := sh.live[id]; t != nil {
				t.SplitChecked = true
				if found[off+j] {
					t.Split = true
					sh.splitIDs[id] = struct{}{}
				}
			}
		}
		// Only this loop takes IDs off, and appends go to the end.
		sh.unchecked = slices.Clone(sh.unchecked[n:])
		sh.mu.Unlock()
		off += n
	}
}

// SpanCount is how many spans of a trace the head holds, live and waiting for a block.
func (h *Head) SpanCount(id [16]byte) int {
	sh := h.shard(&id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := 0
	if t := sh.live[id]; t != nil {
		n = t.SpanCount
	}
	for _, t := range sh.flushing[id] {
		n += t.SpanCount
	}
	return n
}

// MarkTruncated flags the live entry of a trace as having lost spans to a limit.
func (h *Head) MarkTruncated(id [16]byte) {
	sh := h.shard(&id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if t := sh.live[id]; t != nil {
		t.Truncated = true
	}
}

// Each calls fn with every trace held, live and flushing, for search, until fn returns false.
// fn runs outside the shard locks, on snapshots taken a shard at a time (see Trace.snapshot),
// so a slow reader never holds up ingest, whose every request takes most shards' locks; a
// snapshot is reused after fn returns.
func (h *Head) Each(fn func(t *Trace) bool) {
	var snaps []Trace
	for i := range h.shards {
		sh := &h.shards[i]
		snaps = snaps[:0]
		sh.mu.Lock()
		for _, t := range sh.live {
			snaps = append(snaps, *t)
			s := &snaps[len(snaps)-1]
			s.buf, s.groups = t.buf[:len(t.buf):len(t.buf)], t.groups[:len(t.groups):len(t.groups)]
		}
		for _, ts := range sh.flushing {
			for _, t := range ts {
				snaps = append(snaps, *t) // no longer appended to
			}
		}
		sh.mu.Unlock()
		for j := range snaps {
			if !fn(&snaps[j]) {
				return
			}
		}
	}
}

// CutPolicy says when a live trace is complete.
type CutPolicy struct {
	Idle     time.Duration // no span for this long
	MaxAge   time.Duration // first span this long ago, however busy
	MaxBytes int64         // head budget: past it, the least recently appended traces go first
	All      bool          // everything (shutdown)
}

// Cut moves the traces that the policy says are complete from the live set to the flushing set
// and returns them. They stay readable until Release.
func (h *Head) Cut(p CutPolicy) []*Trace {
	now := h.now().UnixNano()
	idleBefore := now - int64(p.Idle)
	ageBefore := now - int64(p.MaxAge)
	var out []*Trace
	var cutBytes int64
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		if !p.All {
			var n int64
			out, n = sh.cutDue(idleBefore, ageBefore, p.MaxAge > 0, out)
			cutBytes += n
			sh.mu.Unlock()
			continue
		}
		for id, t := range sh.live {
			delete(sh.live, id)
			sh.liveBytes -= int64(len(t.buf))
			sh.flushing[id] = append(sh.flushing[id], t)
			out = append(out, t)
			cutBytes += int64(len(t.buf))
		}
		sh.idleQ.reset()
		sh.ageQ.reset()
		sh.mu.Unlock()
	}
	if p.MaxBytes > 0 {
		if over := h.liveBytes() - cutBytes - p.MaxBytes; over > 0 {
			out = append(out, h.cutOldest(over)...)
		}
	}
	return out
}

func (h *Head) liveBytes() int64 {
	var n int64
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		n += sh.liveBytes
		sh.mu.Unlock()
	}
	return n
}

// cutCand is a live trace considered by cutOldest.
type cutCand struct {
	id   [16]byte
	last int64
}

func (h *Head) cutOldest(bytes int64) []*Trace {
	// Under sustained load this runs on every flush; reuse the candidate list (Cut is never
	// called concurrently: the store's flush holds its lock).
	cands := h.cands[:0]
	defer func() { h.cands = cands[:0] }()
	// The least recently appended traces are at the fronts of the shards' idle queues (see
	// cutqueue.go). Traces spread evenly over the shards, so each offers its oldest up to twice
	// its share of the bytes to cut, rather than every trace it holds; what a skewed shard
	// leaves over is cut at the next tick.
	share := 2*bytes/shardCount + 1
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		var offered int64
		for j := 0; j < sh.idleQ.len() && offered < share; {
			e := &sh.idleQ.e[sh.idleQ.head+j]
			t := sh.live[e.id]
			if t == nil || t.lastAppend != e.at {
				if j == 0 {
					sh.idleQ.pop() // stale and first: nothing stands for it
				} else {
					j++
				}
				continue
			}
			cands = append(cands, cutCand{e.id, e.at})
			offered += int64(len(t.buf))
			j++
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(cands, func(a, b cutCand) int { return cmp.Compare(a.last, b.last) })
	var out []*Trace
	for _, c := range cands {
		if bytes <= 0 {
			break
		}
		sh := h.shard(&c.id)
		sh.mu.Lock()
		if t := sh.live[c.id]; t != nil && t.lastAppend == c.last {
			delete(sh.live, c.id)
			sh.liveBytes -= int64(len(t.buf))
			sh.flushing[c.id] = append(sh.flushing[c.id], t)
			out = append(out, t)
			bytes -= int64(len(t.buf))
		}
		sh.mu.Unlock()
	}
	return out
}

// Release drops traces returned by Cut once they are durable elsewhere (or deliberately dropped).
func (h *Head) Release(ts []*Trace) {
	for _, t := range ts {
		sh := h.shard(&t.ID)
		sh.mu.Lock()
		list := sh.flushing[t.ID]
		held := false
		for i, x := range list {
			if x == t {
				list = append(list[:i], list[i+1:]...)
				held = true
				break
			}
		}
		indexed := t.indexed
		if held {
			sh.minDirty = true
			sh.unlistDirty(t)
			h.unindexed.Add(-int64(len(t.buf) - indexed))
		}
		if len(list) == 0 {
			delete(sh.flushing, t.ID)
		} else {
			sh.flushing[t.ID] = list
		}
		sh.mu.Unlock()
		if held {
			h.unaggregate(t, indexed)
		}
		h.bytes.Add(-int64(len(t.buf)))
		h.spans.Add(-int64(t.SpanCount))
		h.traces.Add(-1)
	}
	now := h.now()
	h.groups.sweep(now.Add(-10 * time.Minute).UnixNano())
	// Forgetting index values costs a pass over each shard's traces; every few seconds is
	// plenty, since a stale value only makes a search look at the head when it need not.
	if last := h.lastSweep.Load(); now.UnixNano()-last >= int64(10*time.Second) && h.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		for i := range h.shards {
			sh := &h.shards[i]
			sh.mu.Lock()
			sh.index.sweep(sh)
			sh.sweepStarts()
			sh.mu.Unlock()
		}
		h.sweepAggregates()
	}
}

// MinSegment is the oldest WAL segment that still holds spans of a trace in the head, or ok=false
// when the head is empty. Everything older is in blocks.
func (h *Head) MinSegment() (seq uint64, ok bool) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		if sh.minDirty {
			sh.minOK, sh.minDirty = false, false
			for _, t := range sh.live {
				if !sh.minOK || t.firstSeq < sh.minSeq {
					sh.minSeq, sh.minOK = t.firstSeq, true
				}
			}
			for _, ts := range sh.flushing {
				for _, t := range ts {
					if !sh.minOK || t.firstSeq < sh.minSeq {
						sh.minSeq, sh.minOK = t.firstSeq, true
					}
				}
			}
		}
		if sh.minOK && (!ok || sh.minSeq < seq) {
			seq, ok = sh.minSeq, true
		}
		sh.mu.Unlock()
	}
	return seq, ok
}

// Stats are the head's sizes.
type Stats struct {
	Traces, Spans, Bytes int64
	Groups               int
}

// Stats returns the current sizes.
func (h *Head) Stats() Stats {
	return Stats{Traces: h.traces.Load(), Spans: h.spans.Load(), Bytes: h.bytes.Load(), Groups: h.groups.len()}
}

// Bytes is the span data held, cheap enough to call on every request for backpressure.
func (h *Head) Bytes() int64 { return h.bytes.Load() }
