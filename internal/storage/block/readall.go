package block

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/parquet-go/parquet-go"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// readAllTraces is how many traces ReadAll decodes at a time. Each batch reads every column of
// its row range in one sequential pass, so a batch must span many pages to amortize the seek,
// yet stay small enough that its decoded columns are a few MiB.
const readAllTraces = 1024

// deterministic marshaling makes equal spans encode to equal bytes, so that a compactor can
// recognise a span it has already seen (say, a block left twice by a crash) by its bytes.
var marshalSpan = proto.MarshalOptions{Deterministic: true}

// marshalSized reuses the size marshalSpan.Size just computed for the same message.
var marshalSized = proto.MarshalOptions{Deterministic: true, UseCachedSize: true}

// arenaChunk is the allocation that span encodings are packed into.
const arenaChunk = 256 << 10

// ReadAll calls fn with every trace of the block, in trace ID order, in the form Write takes:
// each span re-encoded as an OTLP Span message carrying every field FindTrace would return,
// with its resource and scope as one Group per distinct group of the block (spans of a group
// share the pointer). It reads the files sequentially, a batch of traces at a time, which is
// what rewriting a block needs; FindTrace per trace would seek in every file for every trace.
// fn owns the Trace it is given, spans and bytes included. An error from fn stops ReadAll and
// is returned as is.
func (r *Reader) ReadAll(ctx context.Context, fn func(t Trace) error) error {
	groups := r.wireGroups()
	split := map[string]bool{}
	for _, st := range r.meta.Split {
		split[st.ID] = true
	}
	traceRows := r.traces.rows
	for row := int64(0); row < traceRows; row += readAllTraces {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(readAllTraces, traceRows-row)
		batch, err := r.readBatch(row, n, groups)
		if err != nil {
			return r.wrap(fmt.Errorf("traces [%d,%d): %w", row, row+n, err))
		}
		for _, t := range batch {
			// Merging blocks keeps what is known about parts elsewhere.
			t.Split = len(split) > 0 && split[hex.EncodeToString(t.ID[:])]
			if err := fn(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// wireGroups turns the block's groups back into the ingest form.
func (r *Reader) wireGroups() []*otlpwire.Group {
	out := make([]*otlpwire.Group, len(r.groups))
	for i := range r.groups {
		g := &r.groups[i]
		wg := &otlpwire.Group{
			Resource:          g.resource,
			ResourceSchemaURL: g.resourceSchema,
			Scope:             g.scope,
			ScopeSchemaURL:    g.scopeSchema,
		}
		// An empty message that was present reads back as nil bytes; presence is what tells a
		// Resource{} apart from no resource at all, and the writer keys groups on it.
		if g.presence&hasResource != 0 && wg.Resource == nil {
			wg.Resource = []byte{}
		}
		if g.presence&hasResource == 0 {
			wg.Resource = nil
		}
		if g.presence&hasScope != 0 && wg.Scope == nil {
			wg.Scope = []byte{}
		}
		if g.presence&hasScope == 0 {
			wg.Scope = nil
		}
		if g.service != "" {
			wg.ServiceName = []byte(g.service)
		}
		out[i] = wg
	}
	return out
}

// readBatch rebuilds traces.parquet rows [row, row+n) the way rebuild does for one trace, with
// every column read once for the whole batch.
func (r *Reader) readBatch(row, n int64, groups []*otlpwire.Group) ([]Trace, error) {
	tp := r.traces
	ids := make([][16]byte, n)
	ratios := make([]float64, n)
	truncs := make([]bool, n)
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	collect(tp.readColumn(tID, row, n, func(i int64, v parquet.Value) { copy(ids[i][:], v.ByteArray()) }))
	starts, err := tp.int64s(tStart, row, n, nil)
	collect(err)
	collect(tp.readColumn(tSampleRatio, row, n, func(i int64, v parquet.Value) { ratios[i] = v.Double() }))
	collect(tp.readColumn(tTruncated, row, n, func(i int64, v parquet.Value) { truncs[i] = v.Boolean() }))
	// First row in each file of every trace of the batch, plus the end of the last one: the
	// next trace's first row, or the file's end after the block's last trace.
	ends := [6]int64{r.meta.Spans, r.meta.Attrs, r.meta.Events, r.meta.EventAttrs, r.meta.Links, r.meta.LinkAttrs}
	var firsts [6][]int64
	next := min(n+1, tp.rows-row)
	for k, col := range rangeCols {
		firsts[k], err = tp.int64s(col, row, next, nil)
		collect(err)
		if next == n {
			firsts[k] = append(firsts[k], ends[k])
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	span := [2]int64{firsts[0][0], firsts[0][n]}
	c, err := r.readSpanCols(span,
		[2]int64{firsts[1][0], firsts[1][n]},
		[2]int64{firsts[2][0], firsts[2][n]},
		[2]int64{firsts[3][0], firsts[3][n]},
		[2]int64{firsts[4][0], firsts[4][n]},
		[2]int64{firsts[5][0], firsts[5][n]})
	if err != nil {
		return nil, err
	}

	out := make([]Trace, n)
	wire := make([]Span, span[1]-span[0])
	var arena []byte
	var s tracepb.Span
	for t := range n {
		first, last := firsts[0][t]-span[0], firsts[0][t+1]-span[0]
		traceID := ids[t][:]
		spans := wire[first:last:last]
		for i := first; i < last; i++ {
			if err := c.span(&s, i, c.spanID[first:last], uint64(starts[t]), traceID); err != nil {
				return nil, fmt.Errorf("trace %x: %w", ids[t], err)
			}
			gi := c.group[i]
			if gi < 0 || int(gi) >= len(groups) {
				return nil, fmt.Errorf("span row %d: group %d out of range", span[0]+i, gi)
			}
			raw, err := encodeSpan(&arena, &s)
			if err != nil {
				return nil, fmt.Errorf("trace %x: %w", ids[t], err)
			}
			spans[i-first] = Span{Group: groups[gi], Raw: raw}
		}
		// Write treats 0 as "kept unconditionally", which is what 1 stores.
		ratio := ratios[t]
		if ratio == 1 {
			ratio = 0
		}
		out[t] = Trace{ID: ids[t], Spans: spans, SampleRatio: ratio, Truncated: truncs[t]}
	}
	if c.ai != len(c.attrs.owner) || c.ei != len(c.evSpan) || c.eai != len(c.eventAttrs.owner) || c.li != len(c.lkSpan) || c.lai != len(c.linkAttrs.owner) {
		return nil, errors.New("child rows do not line up with spans")
	}
	return out, nil
}

// encodeSpan appends the encoding of s to *arena and returns it. Spans keep slices of the
// arena, so it is never grown by copying (the old array would stay alive beside the new one): a
// full chunk is left to its spans and a new one started.
func encodeSpan(arena *[]byte, s *tracepb.Span) ([]byte, error) {
	// otlpwire.AppendSpan writes proto's bytes without its reflection; what it does not know, proto does.
	size, err := otlpwire.SpanSize(s)
	known := err == nil
	if !known {
		size = marshalSpan.Size(s)
	}
	if cap(*arena)-len(*arena) < size {
		*arena = make([]byte, 0, max(arenaChunk, size))
	}
	from := len(*arena)
	var b []byte
	if known {
		b = otlpwire.AppendSpan(*arena, s)
	} else if b, err = marshalSized.MarshalAppend(*arena, s); err != nil {
		return nil, fmt.Errorf("encode span: %w", err)
	}
	*arena = b
	return b[from:len(b):len(b)], nil
}

// spanCols is every column of a run of span rows, and of their children, in memory.
type spanCols struct {
	row, eRow, lRow int64 // first span, event and link row

	spanID, parentID                             [][]byte
	parent, kind, flags, dAttrs, dEvents, dLinks []int32
	group                                        []int32
	startOff, dur, status                        []int64
	name, statusMsg, traceState                  []string
	attrs, eventAttrs, linkAttrs                 *attrCols
	evSpan, evTime, lkSpan                       []int64
	evName, lkState                              []string
	evDropped, lkFlags, lkDropped                []int32
	lkTrace, lkSpanID                            [][]byte
	ai, ei, eai, li, lai                         int // next unconsumed child rows
}

func (r *Reader) readSpanCols(spans, attrs, events, eventAttrs, links, linkAttrs [2]int64) (*spanCols, error) {
	c := &spanCols{row: spans[0], eRow: events[0], lRow: links[0]}
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	sp := r.spans
	row, n := spans[0], spans[1]-spans[0]
	c.spanID, err = sp.copies(sSpanID, row, n)
	collect(err)
	c.parent, err = sp.int32s(sParent, row, n)
	collect(err)
	c.parentID, err = sp.copies(sParentID, row, n)
	collect(err)
	c.startOff, err = sp.int64s(sStart, row, n, nil)
	collect(err)
	c.dur, err = sp.int64s(sDuration, row, n, nil)
	collect(err)
	c.name, err = sp.strs(sName, row, n)
	collect(err)
	c.kind, err = sp.int32s(sKind, row, n)
	collect(err)
	c.status, err = sp.int64s(sStatus, row, n, nil)
	collect(err)
	c.statusMsg, err = sp.strs(sStatusMsg, row, n)
	collect(err)
	c.traceState, err = sp.strs(sTraceState, row, n)
	collect(err)
	c.flags, err = sp.int32s(sFlags, row, n)
	collect(err)
	c.dAttrs, err = sp.int32s(sDroppedAttrs, row, n)
	collect(err)
	c.dEvents, err = sp.int32s(sDroppedEvents, row, n)
	collect(err)
	c.dLinks, err = sp.int32s(sDroppedLinks, row, n)
	collect(err)
	c.group, err = sp.int32s(sGroup, row, n)
	collect(err)
	c.attrs, err = readAttrs(r.attrs, attrs)
	collect(err)
	c.eventAttrs, err = readAttrs(r.eventAttrs, eventAttrs)
	collect(err)
	c.linkAttrs, err = readAttrs(r.linkAttrs, linkAttrs)
	collect(err)

	ev := r.events
	eRow, eN := events[0], events[1]-events[0]
	c.evSpan, err = ev.int64s(eSpan, eRow, eN, nil)
	collect(err)
	c.evTime, err = ev.int64s(eTime, eRow, eN, nil)
	collect(err)
	c.evName, err = ev.strs(eName, eRow, eN)
	collect(err)
	c.evDropped, err = ev.int32s(eDropped, eRow, eN)
	collect(err)

	lk := r.links
	lRow, lN := links[0], links[1]-links[0]
	c.lkSpan, err = lk.int64s(lSpan, lRow, lN, nil)
	collect(err)
	c.lkTrace, err = lk.copies(lTraceID, lRow, lN)
	collect(err)
	c.lkSpanID, err = lk.copies(lSpanID, lRow, lN)
	collect(err)
	c.lkState, err = lk.strs(lTraceState, lRow, lN)
	collect(err)
	c.lkFlags, err = lk.int32s(lFlags, lRow, lN)
	collect(err)
	c.lkDropped, err = lk.int32s(lDropped, lRow, lN)
	collect(err)
	return c, errors.Join(errs...)
}

// span rebuilds span i of the batch into s, as rebuild does. traceSpans are the span IDs of
// the span's whole trace, which parent indexes point into (the batch may hold only part of it).
// It must be called for the spans in row order: it consumes the attribute, event and link rows
// as it goes.
func (c *spanCols) span(s *tracepb.Span, i int64, traceSpans [][]byte, traceStart uint64, traceID []byte) error {
	spanRow := c.row + i
	start := traceStart + uint64(c.startOff[i])
	s.Reset()
	s.TraceId = traceID
	s.SpanId = c.spanID[i]
	s.TraceState = c.traceState[i]
	s.Flags = uint32(c.flags[i])
	s.Name = c.name[i]
	s.Kind = tracepb.Span_SpanKind(c.kind[i])
	s.StartTimeUnixNano = start
	s.EndTimeUnixNano = start + uint64(c.dur[i])
	s.DroppedAttributesCount = uint32(c.dAttrs[i])
	s.DroppedEventsCount = uint32(c.dEvents[i])
	s.DroppedLinksCount = uint32(c.dLinks[i])
	switch p := int(c.parent[i]); {
	case p > 0 && p <= len(traceSpans):
		s.ParentSpanId = traceSpans[p-1]
	case p > 0:
		return fmt.Errorf("span row %d: parent index %d out of range", spanRow, p)
	case len(c.parentID[i]) > 0:
		s.ParentSpanId = c.parentID[i]
	}
	if has, code := statusFromValue(c.status[i]); has {
		s.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(code), Message: c.statusMsg[i]}
	}
	var err error
	if s.Attributes, err = c.attrs.keyValues(&c.ai, spanRow); err != nil {
		return err
	}
	for ; c.ei < len(c.evSpan) && c.evSpan[c.ei] == spanRow; c.ei++ {
		e := &tracepb.Span_Event{
			TimeUnixNano:           start + uint64(c.evTime[c.ei]),
			Name:                   c.evName[c.ei],
			DroppedAttributesCount: uint32(c.evDropped[c.ei]),
		}
		if e.Attributes, err = c.eventAttrs.keyValues(&c.eai, c.eRow+int64(c.ei)); err != nil {
			return err
		}
		s.Events = append(s.Events, e)
	}
	for ; c.li < len(c.lkSpan) && c.lkSpan[c.li] == spanRow; c.li++ {
		l := &tracepb.Span_Link{
			TraceId:                c.lkTrace[c.li],
			SpanId:                 c.lkSpanID[c.li],
			TraceState:             c.lkState[c.li],
			Flags:                  uint32(c.lkFlags[c.li]),
			DroppedAttributesCount: uint32(c.lkDropped[c.li]),
		}
		if l.Attributes, err = c.linkAttrs.keyValues(&c.lai, c.lRow+int64(c.li)); err != nil {
			return err
		}
		s.Links = append(s.Links, l)
	}
	return nil
}
