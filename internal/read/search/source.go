package search

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Source is what the engine reads: the store's head and its open blocks.
type Source interface {
	Head() *head.Head
	// AcquireBlocks returns the blocks, held open until release is called.
	AcquireBlocks() (blocks []*block.Reader, release func())
}

// HeadSource is a Source whose head depends on the request: on a cluster node, its own head
// merged with what the ingest nodes it asks still hold (built once per request, with the
// request's deadline and partial report). The engine asks it instead of Head when it can.
type HeadSource interface {
	HeadFor(ctx context.Context) *head.Head
}

// head is the head one request reads.
func (e *Engine) head(ctx context.Context) *head.Head {
	if hs, ok := e.src.(HeadSource); ok {
		return hs.HeadFor(ctx)
	}
	return e.src.Head()
}

// columnsOf maps what a query reads to the block columns that hold it. Span IDs and names are
// always read: every result span carries them.
func columnsOf(cols traceql.Columns) block.ScanColumns {
	c := block.ScanColumns{SpanID: true, Name: true}
	for _, i := range cols.Intrinsics {
		switch i {
		case traceql.IntrinsicKind:
			c.Kind = true
		case traceql.IntrinsicStatus:
			c.Status = true
		case traceql.IntrinsicStatusMessage:
			c.StatusMessage = true
		case traceql.IntrinsicEventName, traceql.IntrinsicEventTimeSinceStart:
			c.Events = true
		case traceql.IntrinsicLinkTraceID, traceql.IntrinsicLinkSpanID:
			c.Links = true
		}
	}
	for _, a := range cols.Attributes {
		switch a.Scope {
		case traceql.ScopeSpan, traceql.ScopeNone:
			c.SpanAttrs = append(c.SpanAttrs, a.Name)
		case traceql.ScopeEvent:
			c.Events = true
			c.EventAttrs = append(c.EventAttrs, a.Name)
		case traceql.ScopeLink:
			c.Links = true
			c.LinkAttrs = append(c.LinkAttrs, a.Name)
		}
	}
	return c
}

// groupCache holds each block's decoded resources; blocks are immutable, so an entry is good
// for as long as the reader lives.
type groupCache struct {
	mu sync.Mutex
	m  map[*block.Reader][]*resource
}

func (g *groupCache) get(r *block.Reader) ([]*resource, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if res, ok := g.m[r]; ok {
		return res, nil
	}
	if g.m == nil {
		g.m = map[*block.Reader][]*resource{}
	}
	groups := r.Groups()
	res := make([]*resource, len(groups))
	for i, gr := range groups {
		rs, err := decodeResource(gr.Resource, gr.Scope)
		if err != nil {
			return nil, fmt.Errorf("block %s: group %d: %w", r.Meta().ID, i, err)
		}
		rs.service = gr.ServiceName
		res[i] = rs
	}
	g.m[r] = res
	return res, nil
}

// forget drops readers that are no longer among the store's blocks.
func (g *groupCache) forget(live []*block.Reader) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for r := range g.m {
		if !slices.Contains(live, r) {
			delete(g.m, r)
		}
	}
}

func decodeResource(resBytes, scopeBytes []byte) (*resource, error) {
	out := &resource{}
	if resBytes != nil {
		var res resourcepb.Resource
		if err := otlpwire.Unmarshal(resBytes, &res); err != nil {
			return nil, fmt.Errorf("decode resource: %w", err)
		}
		out.attrs = keyValues(res.Attributes)
	}
	if scopeBytes != nil {
		var sc commonpb.InstrumentationScope
		if err := otlpwire.Unmarshal(scopeBytes, &sc); err != nil {
			return nil, fmt.Errorf("decode scope: %w", err)
		}
		out.scopeName, out.scopeVersion = sc.Name, sc.Version
		out.scopeAttrs = keyValues(sc.Attributes)
	}
	if v, ok := findAttr(out.attrs, "service.name"); ok && v.k == kString {
		out.service = v.s
	}
	return out, nil
}

// headPart is a copy, taken under the head's lock, of what search needs from a head trace.
// The span bytes are shared: the head only ever appends to a trace's buffer.
type headPart struct {
	id                    [16]byte
	start, end            uint64
	rootName, rootService string
	groups                []*otlpwire.Group
	raws                  [][]byte
	// split: the head knows the trace has parts elsewhere; unchecked: it has not looked yet.
	split, unchecked bool
}

// newHeadPart copies what search needs from a head trace; run it under the head's lock (Each)
// or on a snapshot (Get).
func newHeadPart(t *head.Trace) *headPart {
	p := &headPart{id: t.ID, start: t.Start, end: t.End, rootName: t.RootName, rootService: t.RootService,
		split: t.Split, unchecked: !t.SplitChecked}
	t.Spans(func(g *otlpwire.Group, raw []byte) {
		p.groups = append(p.groups, g)
		p.raws = append(p.raws, raw)
	})
	return p
}

// headTraces copies the head's traces that started within [minStart, maxStart] (0: open), with
// a trace's live and flushing parts merged into one. split lists the traces, in or out of the
// window, that have or may have parts in blocks: those are judged whole (see judgeSplit).
func headTraces(h *head.Head, minStart, maxStart int64) (out [][]*headPart, split []*headPart) {
	byID := map[[16]byte]int{}
	h.Each(func(t *head.Trace) bool {
		p := newHeadPart(t)
		if p.split || p.unchecked {
			split = append(split, p)
		}
		if i, ok := byID[t.ID]; ok {
			out[i] = append(out[i], p)
		} else {
			byID[t.ID] = len(out)
			out = append(out, []*headPart{p})
		}
		return true
	})
	// The window applies to the whole trace, so it is checked once the parts are merged.
	out = slices.DeleteFunc(out, func(parts []*headPart) bool {
		start := parts[0].start
		for _, p := range parts[1:] {
			start = min(start, p.start)
		}
		return (minStart != 0 && int64(start) < minStart) || (maxStart != 0 && int64(start) > maxStart)
	})
	return out, split
}

// headPartsOf copies what search needs from the head's parts of one trace (from Head.Get, whose
// snapshots may be read without the lock).
func headPartsOf(ts []*head.Trace) []*headPart {
	out := make([]*headPart, 0, len(ts))
	for _, t := range ts {
		p := &headPart{id: t.ID, start: t.Start, end: t.End, rootName: t.RootName, rootService: t.RootService,
			groups: make([]*otlpwire.Group, 0, t.SpanCount), raws: make([][]byte, 0, t.SpanCount)}
		t.Spans(func(g *otlpwire.Group, raw []byte) {
			p.groups = append(p.groups, g)
			p.raws = append(p.raws, raw)
		})
		out = append(out, p)
	}
	return out
}

// decodeHead builds the engine's form of a head trace, keeping what cols asks for. Spans
// appearing twice (a retry) are kept once, and spans are ordered by start time as blocks store
// them.
func decodeHead(parts []*headPart, resources map[*otlpwire.Group]*resource, cols *wireCols) (*trace, error) {
	t := &trace{id: parts[0].id}
	var start, end uint64
	n := 0
	for _, p := range parts {
		n += len(p.raws)
	}
	// Duplicates are found by a scan of the spans so far in small traces, by a map in big ones.
	var seen map[string]struct{}
	if n > 32 {
		seen = make(map[string]struct{}, n)
	}
	spans := make([]wireSpan, 0, n)
	var arena []attr
	for pi, p := range parts {
		if pi == 0 || p.start < start {
			start = p.start
		}
		end = max(end, p.end)
		if t.rootName == "" && p.rootName != "" {
			t.rootName, t.rootService = p.rootName, p.rootService
		}
		for i, raw := range p.raws {
			g := p.groups[i]
			res, ok := resources[g]
			if !ok {
				var err error
				if res, err = decodeResource(g.Resource, g.Scope); err != nil {
					return nil, fmt.Errorf("trace %x: %w", t.id, err)
				}
				resources[g] = res
			}
			ws, err := decodeWireSpan(raw, cols, &arena)
			if err != nil {
				return nil, wireError(t.id, err)
			}
			if seen != nil {
				if _, dup := seen[string(ws.s.id)]; dup {
					continue
				}
				seen[string(ws.s.id)] = struct{}{}
			} else if slices.ContainsFunc(spans, func(o wireSpan) bool { return bytes.Equal(o.s.id, ws.s.id) }) {
				continue
			}
			t.bytes += int64(len(raw))
			ws.s.res = res
			spans = append(spans, ws)
		}
	}
	t.start, t.dur = int64(start), int64(end-start)
	slices.SortStableFunc(spans, func(a, b wireSpan) int { return cmpInt(a.s.start, b.s.start) })
	t.spans = make([]span, len(spans))
	for i := range spans {
		t.spans[i] = spans[i].s
		t.spans[i].self = int32(i)
	}
	// Parents by ID: a scan in small traces, a map in big ones. The last span with the ID
	// wins, as a map filled in order would have it.
	var byID map[string]int32
	if len(spans) > 32 {
		byID = make(map[string]int32, len(spans))
		for i := range spans {
			byID[string(spans[i].s.id)] = int32(i)
		}
	}
	for i := range spans {
		pid := spans[i].parentID
		if len(pid) == 0 {
			continue
		}
		p := int32(-1)
		if byID != nil {
			if q, ok := byID[string(pid)]; ok {
				p = q
			}
		} else {
			for j := len(spans) - 1; j >= 0; j-- {
				if bytes.Equal(spans[j].s.id, pid) {
					p = int32(j)
					break
				}
			}
		}
		if p >= 0 && int(p) != i {
			t.spans[i].parent = p
		}
	}
	return t, nil
}

// batchTraces converts the traces of a scan batch to the engine's form and calls fn with each
// until it returns false. The trace passed to fn is reused for the next one.
func batchTraces(b *block.ScanBatch, res []*resource, fn func(*trace) bool) (bool, error) {
	var ai, ei, eai, li, lai int
	t := &trace{}
	var arena []attr
	for ti := range b.Traces {
		st := &b.Traces[ti]
		t.id, t.start, t.dur, t.rootName, t.rootService = st.ID, st.Start, st.Duration, st.RootName, st.RootService
		t.spans = t.spans[:0]
		t.bytes = 0
		t.shape = nil
		arena = arena[:0]
		sp := &b.Spans
		for i := st.Span0; i < st.Span1; i++ {
			g := sp.Group[i]
			if g < 0 || int(g) >= len(res) {
				return false, fmt.Errorf("trace %x: span group %d out of range", st.ID, g)
			}
			s := span{self: int32(i - st.Span0), parent: sp.Parent[i], hasParent: sp.HasParent[i], start: sp.Start[i], dur: sp.Duration[i], res: res[g]}
			if len(sp.ID) > 0 {
				s.id = sp.ID[i]
			}
			if len(sp.Name) > 0 {
				s.name = sp.Name[i]
			}
			if len(sp.Kind) > 0 {
				s.kind = sp.Kind[i]
			}
			if len(sp.StatusCode) > 0 {
				s.status = sp.StatusCode[i]
			}
			if len(sp.StatusMessage) > 0 {
				s.statusMsg = sp.StatusMessage[i]
			}
			if s.parent >= int32(st.Span1-st.Span0) {
				s.parent = -1
			}
			s.attrs = scanAttrs(&b.Attrs, &ai, int32(i), &arena)
			for ; ei < len(b.EventSpan) && b.EventSpan[ei] < int32(i); ei++ {
			}
			for ; ei < len(b.EventSpan) && b.EventSpan[ei] == int32(i); ei++ {
				s.events = append(s.events, event{name: b.EventName[ei], since: b.EventTime[ei], attrs: scanAttrs(&b.EventAttrs, &eai, int32(ei), &arena)})
			}
			for ; li < len(b.LinkSpan) && b.LinkSpan[li] < int32(i); li++ {
			}
			for ; li < len(b.LinkSpan) && b.LinkSpan[li] == int32(i); li++ {
				s.links = append(s.links, link{traceID: b.LinkTraceID[li], spanID: b.LinkSpanID[li], attrs: scanAttrs(&b.LinkAttrs, &lai, int32(li), &arena)})
			}
			t.spans = append(t.spans, s)
		}
		if !fn(t) {
			return false, nil
		}
	}
	return true, nil
}
