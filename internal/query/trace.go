// Package query reads traces from the store: the head and the blocks together.
package query

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/block"
	"github.com/ariadne-tracing/ariadne/internal/head"
	"github.com/ariadne-tracing/ariadne/internal/otlpwire"
)

// Source is what the querier reads: the store's head and blocks.
type Source interface {
	Head() *head.Head
	// AcquireBlocks returns the blocks, held open until release is called.
	AcquireBlocks() (blocks []*block.Reader, release func())
}

// Querier answers trace queries.
type Querier struct {
	src    Source
	remote Remote // other nodes' parts of traces; nil on a single node
}

// New returns a Querier over src.
func New(src Source) *Querier { return &Querier{src: src} }

// TimeRange narrows which blocks are read. Zero bounds are open.
type TimeRange struct {
	Start, End time.Time
}

func (r TimeRange) overlaps(minStart, maxEnd int64) bool {
	if !r.Start.IsZero() && maxEnd < r.Start.UnixNano() {
		return false
	}
	if !r.End.IsZero() && minStart > r.End.UnixNano() {
		return false
	}
	return true
}

// FindTrace returns the trace with the given ID, merged from the head and every block holding a
// part of it, or nil when no part is found. Spans present twice (a sender's retry, a WAL replayed
// after a crash) appear once.
func (q *Querier) FindTrace(ctx context.Context, id [16]byte, tr TimeRange) (*tracepb.TracesData, error) {
	m := newMerger()
	for _, t := range q.src.Head().Get(id) {
		if err := m.addHead(t); err != nil {
			return nil, err
		}
	}
	blocks, release := q.src.AcquireBlocks()
	defer release()
	for _, b := range blocks {
		meta := b.Meta()
		if !tr.overlaps(meta.MinStart, meta.MaxEnd) {
			continue
		}
		rss, err := b.FindTrace(ctx, id)
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
		for _, rs := range rss {
			m.addResourceSpans(rs)
		}
	}
	if q.remote != nil {
		rss, err := q.remote.FindTrace(ctx, id)
		if err != nil && !notePartial(ctx, fmt.Errorf("query: %w", err)) {
			return nil, fmt.Errorf("query: %w", err)
		}
		for _, rs := range rss {
			m.addResourceSpans(rs)
		}
	}
	q.NoteStale(ctx)
	if m.spans == 0 {
		return nil, nil
	}
	return m.result(), nil
}

// merger groups spans by resource and scope, whatever part of the store they came from.
type merger struct {
	resources map[string]*tracepb.ResourceSpans
	scopes    map[string]*tracepb.ScopeSpans
	order     []*tracepb.ResourceSpans
	seen      map[[8]byte]bool
	spans     int
}

func newMerger() *merger {
	return &merger{resources: map[string]*tracepb.ResourceSpans{}, scopes: map[string]*tracepb.ScopeSpans{},
		seen: map[[8]byte]bool{}}
}

var detMarshal = proto.MarshalOptions{Deterministic: true}

func (m *merger) resourceSpans(res *resourcepb.Resource, schemaURL string) (*tracepb.ResourceSpans, string) {
	b, _ := detMarshal.Marshal(res)
	key := string(b) + "\x00" + schemaURL
	rs := m.resources[key]
	if rs == nil {
		rs = &tracepb.ResourceSpans{Resource: res, SchemaUrl: schemaURL}
		m.resources[key] = rs
		m.order = append(m.order, rs)
	}
	return rs, key
}

func (m *merger) scopeSpans(rs *tracepb.ResourceSpans, rkey string, sc *commonpb.InstrumentationScope, schemaURL string) *tracepb.ScopeSpans {
	b, _ := detMarshal.Marshal(sc)
	key := rkey + "\x01" + string(b) + "\x00" + schemaURL
	ss := m.scopes[key]
	if ss == nil {
		ss = &tracepb.ScopeSpans{Scope: sc, SchemaUrl: schemaURL}
		m.scopes[key] = ss
		rs.ScopeSpans = append(rs.ScopeSpans, ss)
	}
	return ss
}

func (m *merger) addSpan(ss *tracepb.ScopeSpans, sp *tracepb.Span) {
	var sid [8]byte
	copy(sid[:], sp.SpanId)
	if m.seen[sid] {
		return
	}
	m.seen[sid] = true
	ss.Spans = append(ss.Spans, sp)
	m.spans++
}

func (m *merger) addHead(t *head.Trace) error {
	type groupKey struct {
		rs   *tracepb.ResourceSpans
		rkey string
		ss   *tracepb.ScopeSpans
	}
	byGroup := map[*otlpwire.Group]groupKey{}
	var err error
	t.Spans(func(g *otlpwire.Group, raw []byte) {
		if err != nil {
			return
		}
		gk, ok := byGroup[g]
		if !ok {
			var res *resourcepb.Resource
			if g.Resource != nil {
				res = &resourcepb.Resource{}
				if err = otlpwire.Unmarshal(g.Resource, res); err != nil {
					err = fmt.Errorf("query: decode resource: %w", err)
					return
				}
			}
			var sc *commonpb.InstrumentationScope
			if g.Scope != nil {
				sc = &commonpb.InstrumentationScope{}
				if err = otlpwire.Unmarshal(g.Scope, sc); err != nil {
					err = fmt.Errorf("query: decode scope: %w", err)
					return
				}
			}
			gk.rs, gk.rkey = m.resourceSpans(res, string(g.ResourceSchemaURL))
			gk.ss = m.scopeSpans(gk.rs, gk.rkey, sc, string(g.ScopeSchemaURL))
			byGroup[g] = gk
		}
		sp := &tracepb.Span{}
		if err = otlpwire.Unmarshal(raw, sp); err != nil {
			err = fmt.Errorf("query: decode span: %w", err)
			return
		}
		m.addSpan(gk.ss, sp)
	})
	return err
}

func (m *merger) addResourceSpans(in *tracepb.ResourceSpans) {
	rs, rkey := m.resourceSpans(in.Resource, in.SchemaUrl)
	for _, iss := range in.ScopeSpans {
		ss := m.scopeSpans(rs, rkey, iss.Scope, iss.SchemaUrl)
		for _, sp := range iss.Spans {
			m.addSpan(ss, sp)
		}
	}
}

func (m *merger) result() *tracepb.TracesData {
	td := &tracepb.TracesData{}
	for _, rs := range m.order {
		if len(rs.ScopeSpans) == 0 {
			continue
		}
		for _, ss := range rs.ScopeSpans {
			sort.SliceStable(ss.Spans, func(i, j int) bool { return ss.Spans[i].StartTimeUnixNano < ss.Spans[j].StartTimeUnixNano })
		}
		td.ResourceSpans = append(td.ResourceSpans, rs)
	}
	return td
}
