package search

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// SpanScanRequest asks for every span that started in (Start, End], each marked by whether
// the Selection pipeline keeps it and whether the Baseline pipeline does: what a comparison of
// a selection against a baseline (internal/insight/compare) reads. Every attribute column is read, so
// blocks are ruled in by time range alone.
type SpanScanRequest struct {
	Selection *traceql.Query
	// Baseline nil marks every span InBaseline.
	Baseline   *traceql.Query
	Start, End time.Time
	// SelectedOnly hands only the selection's spans to the callback, and reads them as a search
	// does: blocks pruned by the selection's conditions, only the columns it tests (so the
	// callback must not ask for Attributes). What a heatmap of the selection needs.
	SelectedOnly bool
	// Blocks, when set, is handed each block in range instead of the engine reading it, with
	// the traces it must leave out: split traces, which the engine reads whole from every place
	// and hands to the callback with the head's. It is for a caller that reads a block's columns
	// itself (compare counts dictionary entries); it must Retain a block it reads after
	// ScanSpans returns.
	Blocks func(b *block.Reader, skip map[[16]byte]bool)
}

// ScannedSpan is one span handed to ScanSpans' callback. It is valid only during the call:
// the engine reuses what it points to.
type ScannedSpan struct {
	TraceID       [16]byte
	SpanID        []byte
	Name          string
	StartUnixNano int64
	DurationNanos int64
	// Selected: the selection keeps the span; InBaseline: the baseline does.
	Selected, InBaseline bool

	t *trace
	s *span
}

// Status and Kind are the span's, as TraceQL writes them ("error", "server").
func (s *ScannedSpan) Status() string { return statusNames[statusOf(s.s.status)] }
func (s *ScannedSpan) Kind() string   { return kindNames[kindOf(s.s.kind)] }

// AttrScope says where an attribute of a ScannedSpan is: as TraceQL names the keys,
// "span.k", "event.k" (an attribute of any of its events) and "event:name".
type AttrScope uint8

const (
	AttrSpan AttrScope = iota + 1
	AttrEvent
	AttrEventName // the key is "name", the value an event's name
)

// Resource identifies the span's resource (with its scope), the same for every span of one
// resource read from one block or the head: a counter can count spans per resource and add the
// resource's attributes once per resource instead of once per span. nil when there is none.
func (s *ScannedSpan) Resource() any {
	if s.s.res == nil {
		return nil
	}
	return s.s.res
}

// ResourceAttributes calls fn with each attribute of a resource that Resource returned.
// Arrays and empty values are left out: they are not one value to count.
func ResourceAttributes(res any, fn func(key string, v Value)) {
	r, _ := res.(*resource)
	if r == nil {
		return
	}
	for _, a := range r.attrs {
		if a.val.k != kArray && a.val.k != kNil {
			fn(a.key, exportValue(a.val))
		}
	}
}

// Attributes calls fn with each of the span's own attribute values and those of its events,
// keys without their scope prefix (no string is built per attribute). Resource attributes are
// read through Resource. Arrays and empty values are left out.
func (s *ScannedSpan) Attributes(fn func(scope AttrScope, key string, v Value)) {
	for _, a := range s.s.attrs {
		if a.val.k != kArray && a.val.k != kNil {
			fn(AttrSpan, a.key, exportValue(a.val))
		}
	}
	for _, e := range s.s.events {
		fn(AttrEventName, "name", Value{Type: "string", String: e.name})
		for _, a := range e.attrs {
			if a.val.k != kArray && a.val.k != kNil {
				fn(AttrEvent, a.key, exportValue(a.val))
			}
		}
	}
}

// ScanSpans calls fn with every span in the request's range, reading head and blocks as
// searches do (a trace split between them judged whole), and returns what it read.
func (e *Engine) ScanSpans(ctx context.Context, req SpanScanRequest, fn func(*ScannedSpan)) (Metrics, error) {
	var m Metrics
	if req.Selection == nil {
		return m, errors.New("search: no selection")
	}
	for _, q := range []*traceql.Query{req.Selection, req.Baseline} {
		if q != nil && q.IsMetrics() {
			return m, errors.New("search: a comparison takes spanset filters, not a metrics query")
		}
	}
	// Traces start at most an hour before their spans do, as the metrics engine assumes.
	var p *plan
	if req.SelectedOnly {
		p = newPlan(req.Selection, req.Start.Add(-time.Hour), req.End)
	} else {
		all, err := traceql.Parse("{ }")
		if err != nil {
			return m, err
		}
		// The plan of a query every span matches, so nothing is pruned but by time, reading
		// every column the analysis counts.
		p = newPlan(all, req.Start.Add(-time.Hour), req.End)
		p.cols.AllSpanAttrs, p.cols.Kind, p.cols.Status = true, true, true
		p.cols.Events, p.cols.AllEventAttrs = true, true
	}
	p.blockHook = req.Blocks
	lo, hi := req.Start.UnixNano(), req.End.UnixNano()
	if req.Start.IsZero() {
		lo = 0
	}
	if req.End.IsZero() {
		hi = 1<<63 - 1
	}
	// in marks the spans q keeps in marks (reused from trace to trace).
	in := func(q *traceql.Query, t *trace, marks []bool) []bool {
		marks = slices.Grow(marks[:0], len(t.spans))[:len(t.spans)]
		clear(marks)
		for _, ss := range evalPipeline(q, t) {
			for _, i := range ss.spans {
				marks[i] = true
			}
		}
		return marks
	}
	var sel, base []bool
	ss := &ScannedSpan{}
	err := e.scanAll(ctx, p, &m, func(t *trace) {
		m.InspectedTraces++
		m.InspectedSpans += int64(len(t.spans))
		m.InspectedBytes += t.bytes
		sel = in(req.Selection, t, sel)
		if req.Baseline != nil {
			base = in(req.Baseline, t, base)
		}
		for i := range t.spans {
			s := &t.spans[i]
			if s.start <= lo || s.start > hi || (req.SelectedOnly && !sel[i]) {
				continue
			}
			*ss = ScannedSpan{TraceID: t.id, SpanID: s.id, Name: s.name, StartUnixNano: s.start, DurationNanos: s.dur,
				Selected: sel[i], InBaseline: req.Baseline == nil || base[i], t: t, s: s}
			fn(ss)
		}
	}, func() (int64, bool) { return 0, false })
	return m, err
}
