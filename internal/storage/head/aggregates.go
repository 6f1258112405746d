package head

import (
	"sync"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Span aggregates for TraceQL metrics: the head counts its spans per (resource and scope group,
// span name, status code, kind) and second of start, with the sum of their durations, as they
// arrive, and takes them out again when Release drops a trace. A metrics query such as
// { } | rate() by (name) then adds up a few thousand cells instead of decoding every span the
// head holds; package search decides which queries can be answered so (block.Index is the same
// for blocks). Counts and integer sums can be taken out exactly; minimum, maximum and quantiles
// cannot, so those queries still read the spans.
//
// The cells live in stripes of their own, apart from the shard locks, so that a query adding
// them up holds no shard and an append takes one stripe lock per run of spans.

// AggBucketWidth is the width of a head aggregate's time bucket: a cell holds the spans that
// started in (Bucket·AggBucketWidth, (Bucket+1)·AggBucketWidth] nanoseconds.
const AggBucketWidth = int64(1e9)

const aggStripes = 8

// maxAggNames caps the distinct span names a stripe aggregates: names holding IDs (a URL path
// per request) would grow the cells without bound. Spans of further names are counted in an
// overflow cell, which makes the aggregates incomplete (callers read spans instead) until the
// traces holding them are released.
const maxAggNames = 4096

// AggCell is one cell of the head's aggregates.
type AggCell struct {
	Group  *otlpwire.Group
	Name   string
	Status int32 // OTLP status code, 0 when unset
	Kind   int32
	Bucket int64
	Count  int64
	// DurationSum is the sum of the spans' durations (end − start) in nanoseconds.
	DurationSum int64
}

type aggKey struct {
	g            *otlpwire.Group
	name         int32 // index into nameOf; overflowName for spans of names past the cap
	status, kind int32
	bucket       int64
}

const overflowName = -1

type aggCell struct{ count, dur int64 }

type aggStripe struct {
	mu     sync.Mutex
	names  map[string]int32
	nameOf []string
	cells  map[aggKey]*aggCell
	// overflow counts the spans in overflowName cells. While there are any, no name is
	// added: a span must be taken out of the cell it was counted in, and a name added
	// meanwhile would send it elsewhere.
	overflow int64
}

type aggregates struct {
	stripes [aggStripes]aggStripe
}

func (a *aggregates) init() {
	for i := range a.stripes {
		a.stripes[i].names = map[string]int32{}
		a.stripes[i].cells = map[aggKey]*aggCell{}
	}
}

// aggBucket is the cell bucket of a span start, as search reads a start: as an int64.
func aggBucket(start uint64) int64 {
	s := int64(start)
	if s <= 0 {
		return -1
	}
	return (s - 1) / AggBucketWidth
}

// add counts a span (delta 1) or takes it out (delta −1).
func (st *aggStripe) add(g *otlpwire.Group, s *otlpwire.Span, delta int64) {
	ni, ok := st.names[string(s.Name)]
	if !ok {
		ni = overflowName
		if delta > 0 && st.overflow == 0 && len(st.nameOf) < maxAggNames {
			ni = int32(len(st.nameOf))
			name := string(s.Name)
			st.names[name] = ni
			st.nameOf = append(st.nameOf, name)
		}
	}
	if ni == overflowName {
		st.overflow += delta
	}
	k := aggKey{g, ni, s.StatusCode, s.Kind, aggBucket(s.Start)}
	c := st.cells[k]
	if c == nil {
		c = &aggCell{}
		st.cells[k] = c
	}
	c.count += delta
	c.dur += delta * int64(s.End-s.Start)
	if c.count == 0 {
		delete(st.cells, k)
	}
}

func (h *Head) stripe(id *[16]byte) *aggStripe {
	return &h.aggs.stripes[int(id[15]%shardCount)%aggStripes]
}

// aggregate adds the pending run's spans to the aggregates. It runs under the shard lock, so
// that a trace is never cut, and then released, between its spans' append and their count.
func (a *Appender) aggregate() {
	if noIndex {
		return
	}
	st := a.h.stripe(&a.run)
	st.mu.Lock()
	for i := range a.pending {
		st.add(a.pending[i].g, &a.pending[i].s, 1)
	}
	st.mu.Unlock()
}

// unaggregate takes a released trace's spans out of the aggregates: those in its first
// indexed bytes, the ones that were counted (see lazy.go).
func (h *Head) unaggregate(t *Trace, indexed int) {
	if noIndex || indexed == 0 {
		return
	}
	st := h.stripe(&t.ID)
	var s otlpwire.Span
	st.mu.Lock()
	defer st.mu.Unlock()
	part := *t
	part.buf = t.buf[:indexed]
	part.Spans(func(g *otlpwire.Group, raw []byte) {
		// The bytes scanned when they were appended; they are the same bytes now.
		if otlpwire.ScanSpan(raw, &s) == nil {
			st.add(g, &s, -1)
		}
	})
}

// sweepAggregates forgets the names no cell uses, so that a name seen once long ago does not
// hold a place under the cap.
func (h *Head) sweepAggregates() {
	for i := range h.aggs.stripes {
		st := &h.aggs.stripes[i]
		st.mu.Lock()
		renum := make([]int32, len(st.nameOf))
		for i := range renum {
			renum[i] = overflowName
		}
		for k := range st.cells {
			if k.name != overflowName {
				renum[k.name] = 0
			}
		}
		var kept []string
		clear(st.names)
		for i, n := range st.nameOf {
			if renum[i] == 0 {
				renum[i] = int32(len(kept))
				st.names[n] = renum[i]
				kept = append(kept, n)
			}
		}
		if len(kept) < len(st.nameOf) {
			cells := make(map[aggKey]*aggCell, len(st.cells))
			for k, c := range st.cells {
				if k.name != overflowName {
					k.name = renum[k.name]
				}
				cells[k] = c
			}
			st.cells = cells
		}
		st.nameOf = kept
		st.mu.Unlock()
	}
}

// Aggregates calls fn with every cell of the head's span aggregates and reports whether they
// are complete: false when they are kept off or some spans' names were past the cap, and a
// caller must read the spans instead. fn runs under a stripe lock and must not block.
func (h *Head) Aggregates(fn func(c *AggCell)) bool {
	if noIndex {
		return false
	}
	h.markRead()
	for i := range h.shards {
		// Spans appended while the index was kept lazily are counted first (see lazy.go).
		sh := &h.shards[i]
		sh.mu.Lock()
		h.catchUp(sh)
		sh.mu.Unlock()
	}
	for i := range h.aggs.stripes {
		st := &h.aggs.stripes[i]
		st.mu.Lock()
		over := st.overflow
		st.mu.Unlock()
		if over != 0 {
			return false
		}
	}
	var c AggCell
	for i := range h.aggs.stripes {
		st := &h.aggs.stripes[i]
		st.mu.Lock()
		if st.overflow != 0 {
			st.mu.Unlock()
			return false
		}
		for k, v := range st.cells {
			c = AggCell{Group: k.g, Name: st.nameOf[k.name], Status: k.status, Kind: k.kind, Bucket: k.bucket, Count: v.count, DurationSum: v.dur}
			fn(&c)
		}
		st.mu.Unlock()
	}
	return true
}
