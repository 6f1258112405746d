// Package analyze explains a trace without making anyone read every span: it
// builds a span tree, walks the critical path (correcting clock skew between
// services), says in one sentence why the trace was slow, lints the
// instrumentation against the tracing guide our users follow, and diffs two
// traces of the same operation.
//
// Every function takes a whole trace as *tracepb.TracesData, as the query
// layer returns it, and is deterministic: the same input gives the same
// output, so results can be cached, compared and shown in golden files.
package analyze

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Span is one span of a Tree, with what analysis needs at hand.
type Span struct {
	ID       string // hex span ID
	ParentID string // hex parent span ID; empty for a root
	TraceID  string // hex trace ID
	Name     string
	Service  string // the resource's service.name
	Language string // the resource's telemetry.sdk.language ("go", "python", …), for advice in its idiom
	Scope    string // the instrumentation scope's name
	Kind     tracepb.Span_SpanKind
	// Start and End are the span's times on the trace's timeline; after
	// Tree.AdjustSkew they include Shift.
	Start, End time.Time
	// Shift is how far AdjustSkew moved the span to undo clock skew.
	Shift time.Duration

	Parent   *Span
	Children []*Span // ordered by start time, then ID

	// Raw is the span as received, for attributes, events and status.
	Raw *tracepb.Span
}

// Duration is End-Start, never negative: a span ending before it starts
// has no time to attribute.
func (s *Span) Duration() time.Duration {
	if d := s.End.Sub(s.Start); d > 0 {
		return d
	}
	return 0
}

// SelfTime is the part of the span's window in which none of its children
// was running. Concurrent children are merged first so overlapping work is
// not subtracted twice.
func (s *Span) SelfTime() time.Duration {
	busy := time.Duration(0)
	cur := s.Start
	for _, iv := range mergedChildren(s) {
		from, to := maxTime(iv[0], cur), minTime(iv[1], s.End)
		if to.After(from) {
			busy += to.Sub(from)
			cur = to
		}
	}
	if self := s.Duration() - busy; self > 0 {
		return self
	}
	return 0
}

// mergedChildren returns the union of the children's windows as sorted,
// disjoint intervals.
func mergedChildren(s *Span) [][2]time.Time {
	var out [][2]time.Time
	for _, c := range s.Children { // already sorted by start
		if !c.End.After(c.Start) {
			continue
		}
		if n := len(out); n > 0 && !c.Start.After(out[n-1][1]) {
			out[n-1][1] = maxTime(out[n-1][1], c.End)
			continue
		}
		out = append(out, [2]time.Time{c.Start, c.End})
	}
	return out
}

// Attr returns the span attribute key, if set.
func (s *Span) Attr(key string) (*commonpb.AnyValue, bool) {
	for _, kv := range s.Raw.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue(), true
		}
	}
	return nil, false
}

// StringAttr returns the span attribute key rendered as text, or "".
func (s *Span) StringAttr(key string) string {
	v, ok := s.Attr(key)
	if !ok {
		return ""
	}
	return valueString(v)
}

// firstAttr returns the first of keys that is set, for attributes renamed
// between semantic-convention versions.
func (s *Span) firstAttr(keys ...string) string {
	for _, k := range keys {
		if v := s.StringAttr(k); v != "" {
			return v
		}
	}
	return ""
}

// Tree is one trace as a forest of spans.
type Tree struct {
	TraceID string
	// Spans holds every span, ordered by start time, then ID.
	Spans []*Span
	ByID  map[string]*Span
	// Roots are the spans without a parent ID, longest first.
	Roots []*Span
	// Orphans have a parent ID that no span of the trace carries: the parent
	// was lost, dropped, or never ended and so never exported.
	Orphans []*Span
}

// Root is the longest root, the one whose latency the trace reports; nil if
// the trace has no root at all.
func (t *Tree) Root() *Span {
	if len(t.Roots) == 0 {
		return nil
	}
	return t.Roots[0]
}

// NewTree builds the tree of all spans in td, treating them as one trace
// (TraceID is the first span's). A span ID seen twice keeps its first copy:
// retried exports deliver the same span again.
func NewTree(td *tracepb.TracesData) *Tree {
	t := &Tree{ByID: map[string]*Span{}}
	for _, rs := range td.GetResourceSpans() {
		service, language := "", ""
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.GetKey() {
			case "service.name":
				service = valueString(kv.GetValue())
			case "telemetry.sdk.language":
				language = valueString(kv.GetValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, raw := range ss.GetSpans() {
				s := newSpan(raw, service, ss.GetScope().GetName())
				s.Language = language
				if _, dup := t.ByID[s.ID]; dup {
					continue
				}
				if t.TraceID == "" {
					t.TraceID = s.TraceID
				}
				t.ByID[s.ID] = s
				t.Spans = append(t.Spans, s)
			}
		}
	}
	slices.SortFunc(t.Spans, byStart)
	for _, s := range t.Spans {
		switch p, ok := t.ByID[s.ParentID]; {
		case s.ParentID == "":
			t.Roots = append(t.Roots, s)
		case ok && p != s:
			s.Parent = p
			p.Children = append(p.Children, s)
		default:
			t.Orphans = append(t.Orphans, s)
		}
	}
	slices.SortStableFunc(t.Roots, func(a, b *Span) int {
		return cmp.Compare(b.Duration(), a.Duration())
	})
	return t
}

// Trees splits td by trace ID, ordered by each trace's first start, so a
// query result holding several traces can be linted trace by trace.
func Trees(td *tracepb.TracesData) []*Tree {
	parts := map[string]*tracepb.TracesData{}
	var order []string
	for _, rs := range td.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				id := hex.EncodeToString(s.GetTraceId())
				p, ok := parts[id]
				if !ok {
					p = &tracepb.TracesData{}
					parts[id] = p
					order = append(order, id)
				}
				p.ResourceSpans = append(p.ResourceSpans, &tracepb.ResourceSpans{
					Resource:   rs.GetResource(),
					ScopeSpans: []*tracepb.ScopeSpans{{Scope: ss.GetScope(), Spans: []*tracepb.Span{s}}},
				})
			}
		}
	}
	out := make([]*Tree, 0, len(order))
	for _, id := range order {
		out = append(out, NewTree(parts[id]))
	}
	slices.SortStableFunc(out, func(a, b *Tree) int {
		if len(a.Spans) == 0 || len(b.Spans) == 0 {
			return len(b.Spans) - len(a.Spans)
		}
		if c := a.Spans[0].Start.Compare(b.Spans[0].Start); c != 0 {
			return c
		}
		return strings.Compare(a.TraceID, b.TraceID)
	})
	return out
}

func newSpan(raw *tracepb.Span, service, scope string) *Span {
	s := &Span{
		ID:      hex.EncodeToString(raw.GetSpanId()),
		TraceID: hex.EncodeToString(raw.GetTraceId()),
		Name:    raw.GetName(),
		Service: service,
		Scope:   scope,
		Kind:    raw.GetKind(),
		Start:   unixNano(raw.GetStartTimeUnixNano()),
		End:     unixNano(raw.GetEndTimeUnixNano()),
		Raw:     raw,
	}
	// An all-zero parent ID is how some SDKs say "no parent".
	if p := raw.GetParentSpanId(); len(p) > 0 && !bytes.Equal(p, make([]byte, len(p))) {
		s.ParentID = hex.EncodeToString(p)
	}
	return s
}

func unixNano(n uint64) time.Time { return time.Unix(0, int64(n)).UTC() }

func byStart(a, b *Span) int {
	if c := a.Start.Compare(b.Start); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// descendants calls fn on s and everything below it, depth first.
func descendants(s *Span, fn func(*Span)) {
	fn(s)
	for _, c := range s.Children {
		descendants(c, fn)
	}
}
