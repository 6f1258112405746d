package query

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// WireTrace is a trace merged from the head and the blocks with its spans kept as encoded Span
// messages, for answers that stream the trace out span by span instead of building it whole:
// a 200,000-span trace then costs its encoded bytes once, not a tree of objects per span.
type WireTrace struct {
	Resources []*WireResource
	Spans     int
	// SpanBytes is the size of the span encodings kept.
	SpanBytes int64
	// Partial says the trace had more span bytes than asked for: later spans were left out.
	Partial bool
}

// WireResource is the spans of one resource.
type WireResource struct {
	Resource  *resourcepb.Resource // nil when absent
	SchemaURL string
	Scopes    []*WireScope
}

// WireScope is the spans of one instrumentation scope of a resource, in start order.
type WireScope struct {
	Scope     *commonpb.InstrumentationScope // nil when absent
	SchemaURL string
	Spans     [][]byte // each an encoded OTLP Span
	starts    []uint64
}

// FindTraceWire is FindTrace with the spans left encoded, and at most maxBytes of them (0: no
// cap): a larger trace comes back with the spans that fit and Partial set, as Tempo's
// max_bytes_per_trace. Neither the head's parts nor the blocks' are decoded into objects: the
// head keeps spans encoded, and blocks encode theirs straight from the columns.
func (q *Querier) FindTraceWire(ctx context.Context, id [16]byte, tr TimeRange, maxBytes int64) (*WireTrace, error) {
	w := &wireMerger{out: &WireTrace{}, maxBytes: maxBytes, resources: map[string]*WireResource{},
		scopes: map[string]*WireScope{}, seen: map[[8]byte]struct{}{}, byGroup: map[*otlpwire.Group]*WireScope{}}
	for _, t := range q.src.Head().Get(id) {
		var err error
		t.Spans(func(g *otlpwire.Group, raw []byte) {
			if err == nil {
				err = w.addGroupSpan(g, raw)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("query: head: %w", err)
		}
	}
	blocks, release := q.src.AcquireBlocks()
	defer release()
	for _, b := range blocks {
		meta := b.Meta()
		if !tr.overlaps(meta.MinStart, meta.MaxEnd) {
			continue
		}
		_, err := b.FindTraceEncoded(ctx, id, func(spans []block.Span) error {
			// A large trace leaves ingest its share of the CPU, and stops when its client is gone.
			if err := queryscheduler.Yield(ctx); err != nil {
				return err
			}
			for _, sp := range spans {
				if err := w.addGroupSpan(sp.Group, sp.Raw); err != nil {
					return fmt.Errorf("span: %w", err)
				}
			}
			return nil
		})
		if block.SkipDamaged(ctx, err) {
			continue
		}
		if err != nil {
			err = fmt.Errorf("query: block %s: %w", meta.ID, err)
			if notePartial(ctx, err) {
				continue
			}
			return nil, err
		}
	}
	if q.remote != nil {
		// Other nodes' parts come decoded; they are a head's worth at most.
		rss, err := q.remote.FindTrace(ctx, id)
		if err != nil && !notePartial(ctx, fmt.Errorf("query: %w", err)) {
			return nil, fmt.Errorf("query: %w", err)
		}
		for _, rs := range rss {
			for _, ss := range rs.ScopeSpans {
				ws := w.scope(rs.Resource, rs.SchemaUrl, ss.Scope, ss.SchemaUrl)
				for _, sp := range ss.Spans {
					raw, err := detMarshal.Marshal(sp)
					if err != nil {
						return nil, fmt.Errorf("query: encode span: %w", err)
					}
					w.add(ws, sp.SpanId, sp.StartTimeUnixNano, raw)
				}
			}
		}
	}
	q.NoteStale(ctx)
	if w.out.Spans == 0 {
		return nil, ctx.Err()
	}
	for _, r := range w.out.Resources {
		for _, s := range r.Scopes {
			sortByStart(s)
		}
	}
	return w.out, ctx.Err()
}

// Decode builds the trace's OTLP objects, resources and scopes in the same order.
func (wt *WireTrace) Decode() (*tracepb.TracesData, error) {
	td := &tracepb.TracesData{}
	for _, r := range wt.Resources {
		rs := &tracepb.ResourceSpans{Resource: r.Resource, SchemaUrl: r.SchemaURL}
		for _, sc := range r.Scopes {
			if len(sc.Spans) == 0 {
				continue
			}
			ss := &tracepb.ScopeSpans{Scope: sc.Scope, SchemaUrl: sc.SchemaURL, Spans: make([]*tracepb.Span, len(sc.Spans))}
			for i, raw := range sc.Spans {
				sp := &tracepb.Span{}
				if err := otlpwire.Unmarshal(raw, sp); err != nil {
					return nil, fmt.Errorf("query: decode span: %w", err)
				}
				ss.Spans[i] = sp
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		if len(rs.ScopeSpans) > 0 {
			td.ResourceSpans = append(td.ResourceSpans, rs)
		}
	}
	return td, nil
}

func sortByStart(s *WireScope) {
	// Blocks give a trace's spans in start order, so a large trace is usually sorted already.
	if slices.IsSorted(s.starts) {
		s.starts = nil
		return
	}
	idx := make([]int, len(s.Spans))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(s.starts[a], s.starts[b]) })
	spans := make([][]byte, len(idx))
	for i, j := range idx {
		spans[i] = s.Spans[j]
	}
	s.Spans, s.starts = spans, nil
}

type wireMerger struct {
	out       *WireTrace
	maxBytes  int64
	resources map[string]*WireResource
	scopes    map[string]*WireScope
	seen      map[[8]byte]struct{}
	byGroup   map[*otlpwire.Group]*WireScope
}

// addGroupSpan adds one encoded span of group g (the head's and the blocks' form).
func (w *wireMerger) addGroupSpan(g *otlpwire.Group, raw []byte) error {
	ws, ok := w.byGroup[g]
	if !ok {
		var err error
		if ws, err = w.groupScope(g); err != nil {
			return err
		}
		w.byGroup[g] = ws
	}
	var s otlpwire.Span
	if err := otlpwire.ScanSpan(raw, &s); err != nil {
		return fmt.Errorf("scan span: %w", err)
	}
	w.add(ws, s.SpanID, s.Start, raw)
	return nil
}

func (w *wireMerger) groupScope(g *otlpwire.Group) (*WireScope, error) {
	var res *resourcepb.Resource
	if g.Resource != nil {
		res = &resourcepb.Resource{}
		if err := otlpwire.Unmarshal(g.Resource, res); err != nil {
			return nil, fmt.Errorf("query: decode resource: %w", err)
		}
	}
	var sc *commonpb.InstrumentationScope
	if g.Scope != nil {
		sc = &commonpb.InstrumentationScope{}
		if err := otlpwire.Unmarshal(g.Scope, sc); err != nil {
			return nil, fmt.Errorf("query: decode scope: %w", err)
		}
	}
	return w.scope(res, string(g.ResourceSchemaURL), sc, string(g.ScopeSchemaURL)), nil
}

// scope finds or adds the group of (resource, scope), keyed by content so that the head's and
// the blocks' copies of one resource become one.
func (w *wireMerger) scope(res *resourcepb.Resource, resSchema string, sc *commonpb.InstrumentationScope, scSchema string) *WireScope {
	rb, _ := detMarshal.Marshal(res)
	rkey := fmt.Sprintf("%t%s\x00%s", res != nil, rb, resSchema)
	wr := w.resources[rkey]
	if wr == nil {
		wr = &WireResource{Resource: res, SchemaURL: resSchema}
		w.resources[rkey] = wr
		w.out.Resources = append(w.out.Resources, wr)
	}
	sb, _ := detMarshal.Marshal(sc)
	skey := fmt.Sprintf("%s\x01%t%s\x00%s", rkey, sc != nil, sb, scSchema)
	ws := w.scopes[skey]
	if ws == nil {
		ws = &WireScope{Scope: sc, SchemaURL: scSchema}
		w.scopes[skey] = ws
		wr.Scopes = append(wr.Scopes, ws)
	}
	return ws
}

func (w *wireMerger) add(ws *WireScope, spanID []byte, start uint64, raw []byte) {
	var sid [8]byte
	copy(sid[:], spanID)
	if _, dup := w.seen[sid]; dup {
		return
	}
	if w.maxBytes > 0 && w.out.SpanBytes+int64(len(raw)) > w.maxBytes {
		w.out.Partial = true
		return
	}
	w.seen[sid] = struct{}{}
	raw = otlpwire.SpanValidUTF8(raw) // old data may predate ingest's UTF-8 repair
	ws.Spans = append(ws.Spans, raw)
	ws.starts = append(ws.starts, start)
	w.out.Spans++
	w.out.SpanBytes += int64(len(raw))
}
