package search

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Engine runs searches over a source. It is safe for concurrent use.
type Engine struct {
	src    Source
	groups groupCache
	prune  pruneCache
	// fullScan turns off every index and statistic, for tests that compare answers with them
	// to answers without.
	fullScan bool
}

// New returns an engine reading src.
func New(src Source) *Engine { return &Engine{src: src} }

// Request is one search.
type Request struct {
	Query *traceql.Query
	// Start and End bound the traces' start times; zero leaves a bound open.
	Start, End time.Time
	// MinDuration and MaxDuration bound the traces' durations; zero leaves a bound open.
	MinDuration, MaxDuration time.Duration
	// Limit is the most traces returned; 20 when 0.
	Limit int
	// SpansPerSpanSet is the most spans listed per spanset; 3 when 0.
	SpansPerSpanSet int
	// Progress, when set, is called with the answer so far after the head and after each block
	// read, before the final answer is returned: what a streaming client shows while a long
	// search runs. It is called from the searching goroutine; the Result is its own copy.
	Progress func(*Result)
}

// Result is a search's answer: matching traces, newest first.
type Result struct {
	Traces  []Trace
	Metrics Metrics
}

// Metrics says how much a search read.
type Metrics struct {
	InspectedTraces int64
	InspectedSpans  int64
	InspectedBytes  int64
	TotalBlocks     int
	// SkippedBlocks were ruled out without reading their spans: by time range or statistics.
	SkippedBlocks int
}

// Trace is one matching trace.
type Trace struct {
	ID              [16]byte
	RootServiceName string
	RootTraceName   string
	StartUnixNano   int64
	DurationNanos   int64
	SpanSets        []SpanSet
}

// SpanSet is one spanset of a matching trace: up to SpansPerSpanSet of its spans, in start
// order, and how many matched in all.
type SpanSet struct {
	Spans   []Span
	Matched int
	// Attributes are the by() labels of the spanset.
	Attributes []Attribute
}

// Span is a span of a spanset.
type Span struct {
	SpanID        []byte
	Name          string
	StartUnixNano int64
	DurationNanos int64
	// Attributes are the values of the attributes the query tests or selects.
	Attributes []Attribute
}

// Attribute is a key and a typed value.
type Attribute struct {
	Key   string
	Value Value
}

// Value is a typed value. Type is "string", "int", "float", "bool", "duration", "status",
// "kind" or, for arrays, "array" with the elements in Array.
type Value struct {
	Type   string
	String string // also the text of duration, status and kind
	Int    int64  // also nanoseconds of a duration
	Float  float64
	Bool   bool
	Array  []Value
}

func exportValue(v value) Value {
	switch v.k {
	case kString:
		return Value{Type: "string", String: v.s}
	case kInt:
		return Value{Type: "int", Int: v.i}
	case kFloat:
		return Value{Type: "float", Float: v.f}
	case kBool:
		return Value{Type: "bool", Bool: v.b}
	case kDuration:
		return Value{Type: "duration", Int: v.i, String: v.text()}
	case kStatus:
		return Value{Type: "status", String: v.text()}
	case kKind:
		return Value{Type: "kind", String: v.text()}
	case kArray:
		out := Value{Type: "array"}
		for _, e := range v.arr {
			out.Array = append(out.Array, exportValue(e))
		}
		return out
	}
	return Value{}
}

// ErrMetricsQuery is returned by Search for a metrics query, which has no traces to list.
var ErrMetricsQuery = errors.New("search: a metrics query needs the metrics API")

type plan struct {
	q        *traceql.Query
	cols     block.ScanColumns
	show     []traceql.FieldExpr // fields shown on result spans
	minStart int64
	maxStart int64
	minDur   int64
	maxDur   int64
	required []traceql.Condition
	// pushed are the scan options that skip traces which cannot match: a span attribute
	// condition tested on the attribute columns, and a least duration from the summary.
	require     *block.AttrPredicate
	minTraceDur int64
	// minSpans is the fewest spans a matching trace has (from count() filters).
	minSpans int
	// skipHead leaves the head out: the caller has its answer from the head's index.
	skipHead bool
	// blocks, when not nil, are the blocks to read instead of the source's: the caller holds
	// them and has the answer for the others.
	blocks []*block.Reader
	// limit, when set, is how many traces the caller wants: blocks are then read newest
	// trace first, and each stops once no older trace of it can be among them.
	limit int
	// have is how many traces the caller has found so far (with limit).
	have func() int
	// perPlace reads each part of a split trace on its own, where it is stored, rather than
	// the trace whole: the caller answers other parts from aggregates, which count by place.
	perPlace bool
	// blockHook, when set, is handed each block in range instead of a scan (SpanScanRequest.Blocks).
	blockHook func(*block.Reader, map[[16]byte]bool)
	// spanTests rule head traces out from their spans' wire bytes before they are decoded.
	spanTests []spanTest
}

func newPlan(q *traceql.Query, start, end time.Time) *plan {
	p := &plan{q: q, cols: columnsOf(q.Columns())}
	if !start.IsZero() {
		p.minStart = start.UnixNano()
	}
	if !end.IsZero() {
		p.maxStart = end.UnixNano()
	}
	seen := map[string]bool{}
	add := func(f traceql.FieldExpr) {
		if k := f.String(); !seen[k] {
			seen[k] = true
			p.show = append(p.show, f)
		}
	}
	for _, a := range q.Columns().Attributes {
		if a.Scope != traceql.ScopeEvent && a.Scope != traceql.ScopeLink {
			add(a)
		}
	}
	for _, st := range q.Stages {
		if s, ok := st.(*traceql.Select); ok {
			for _, f := range s.Fields {
				add(f)
			}
		}
	}
	p.minSpans = minSpansOf(q)
	p.required = requiredConditions(q.Stages[0].(traceql.SpansetExpr))
	p.spanTests = spanTestsOf(q.Stages[0].(traceql.SpansetExpr))
	for _, c := range p.required {
		p.pushDown(c)
	}
	return p
}

func (p *plan) pushDown(c traceql.Condition) {
	switch f := c.Field.(type) {
	case traceql.Intrinsic:
		if (f != traceql.IntrinsicDuration && f != traceql.IntrinsicTraceDuration) || c.Value.Type != traceql.TypeDuration {
			return
		}
		switch c.Op {
		case traceql.OpGt:
			p.minTraceDur = max(p.minTraceDur, int64(c.Value.Dur)+1)
		case traceql.OpGte, traceql.OpEq:
			p.minTraceDur = max(p.minTraceDur, int64(c.Value.Dur))
		}
	case traceql.Attribute:
		if f.Scope != traceql.ScopeSpan || c.Value.Type == traceql.TypeNil || p.require != nil {
			return
		}
		want := staticValue(c.Value)
		op := &traceql.BinaryOp{Op: c.Op, Regex: c.Regex}
		p.require = &block.AttrPredicate{Key: f.Name, Match: func(typ int32, str string, num int64, dbl float64, b bool, raw []byte) bool {
			v := rowValue(typ, str, num, dbl, b, raw)
			return compare(c.Op, v, want, op)
		}}
	}
}

// requiredConditions returns conditions some span of every matching trace satisfies, for
// ruling blocks out: a filter's conjunction, and the requirements of both sides of "&&" and of
// the structural operators, which need both sides to match.
func requiredConditions(e traceql.SpansetExpr) []traceql.Condition {
	switch e := e.(type) {
	case *traceql.SpansetFilter:
		conds, ok := e.Conditions()
		if !ok {
			return nil
		}
		return conds
	case *traceql.SpansetOp:
		switch {
		case e.Op == traceql.SpansetOr:
			return nil
		case e.Op >= traceql.NotDescendant && e.Op <= traceql.NotParent:
			return requiredConditions(e.RHS)
		}
		return append(requiredConditions(e.LHS), requiredConditions(e.RHS)...)
	}
	return nil
}

// Search runs a TraceQL query over the head and the blocks and returns the newest matching
// traces. Blocks are read newest first, and reading stops once the limit is reached and no
// older block can hold a newer trace.
func (e *Engine) Search(ctx context.Context, req Request) (*Result, error) {
	if req.Query == nil {
		return nil, errors.New("search: no query")
	}
	if req.Query.IsMetrics() {
		return nil, ErrMetricsQuery
	}
	limit := cmp.Or(req.Limit, 20)
	spss := cmp.Or(req.SpansPerSpanSet, 3)
	p := newPlan(req.Query, req.Start, req.End)
	p.minDur, p.maxDur = int64(req.MinDuration), int64(req.MaxDuration)
	p.limit = limit
	res := &Result{}
	p.have = func() int { return len(res.Traces) }
	found := map[[16]byte]bool{}
	keep := func(t *trace) {
		res.Metrics.InspectedTraces++
		res.Metrics.InspectedSpans += int64(len(t.spans))
		res.Metrics.InspectedBytes += t.bytes
		if found[t.id] || (p.minDur > 0 && t.dur < p.minDur) || (p.maxDur > 0 && t.dur > p.maxDur) {
			return
		}
		sets := evalPipeline(p.q, t)
		if len(sets) == 0 {
			return
		}
		found[t.id] = true
		res.Traces = append(res.Traces, p.result(t, sets, spss))
	}
	err := e.scanAll(ctx, p, &res.Metrics, keep, func() (int64, bool) {
		if req.Progress != nil {
			req.Progress(res.snapshot(limit))
		}
		if len(res.Traces) < limit {
			return 0, false
		}
		sortNewest(res.Traces)
		res.Traces = res.Traces[:limit]
		return res.Traces[limit-1].StartUnixNano, true
	})
	if err != nil {
		return nil, err
	}
	sortNewest(res.Traces)
	if len(res.Traces) > limit {
		res.Traces = res.Traces[:limit]
	}
	return res, nil
}

// snapshot is a copy of the answer so far as Search would return it now: newest first, at most
// limit traces.
func (r *Result) snapshot(limit int) *Result {
	out := &Result{Traces: slices.Clone(r.Traces), Metrics: r.Metrics}
	sortNewest(out.Traces)
	if len(out.Traces) > limit {
		out.Traces = out.Traces[:limit]
	}
	return out
}

func sortNewest(ts []Trace) {
	slices.SortStableFunc(ts, func(a, b Trace) int {
		return cmp.Or(cmp.Compare(b.StartUnixNano, a.StartUnixNano), strings.Compare(string(a.ID[:]), string(b.ID[:])))
	})
}

// scanAll calls fn with every trace of the head and of the blocks that may hold a match. After
// each block, enough tells whether the caller has all it needs from blocks whose traces all
// started before the returned time.
func (e *Engine) scanAll(ctx context.Context, p *plan, m *Metrics, fn func(*trace), enough func() (int64, bool)) error {
	resources := map[*otlpwire.Group]*resource{}
	var blocks []*block.Reader
	if p.blocks != nil {
		blocks = slices.Clone(p.blocks)
	} else {
		var release func()
		blocks, release = e.src.AcquireBlocks()
		defer release()
		blocks = slices.Clone(blocks)
	}
	// The head's index rules traces out from their summaries; the rest are decoded newest first,
	// so that a search with a limit stops after the few it needs.
	h := e.head(ctx)
	hf := headFilter{}
	switch {
	case p.skipHead:
		hf.none = true
	case !e.fullScan:
		hf = newHeadFilter(h, p)
	}
	wcols := wireColsOf(p.cols)
	// Candidates come newest first: from the head's start lists, read only as far back as the
	// search goes, or (reading everything, for tests) from every summary.
	var peek func() (headCandidate, bool)
	var pop func() headCandidate
	var headSplit []*headPart
	if e.fullScan {
		cands, split := headCandidates(h, hf, p.minStart, p.maxStart)
		headSplit = split
		peek = func() (headCandidate, bool) {
			if cands.Len() == 0 {
				return headCandidate{}, false
			}
			return (*cands)[0], true
		}
		pop = func() headCandidate { return heap.Pop(cands).(headCandidate) }
	} else {
		l := newHeadLoader(h, hf, p.minStart, p.maxStart)
		peek, pop = l.peek, l.pop
		if !p.skipHead || !p.perPlace {
			// Even without its traces, the head says which block traces are split, unless
			// split traces are not judged whole at all.
			headSplit = headSplitParts(h)
		}
	}
	// Traces with parts in several places are judged whole, after the head and before the
	// blocks; their parts are skipped wherever they are met.
	split, whole, err := splitTraces(p, headSplit, blocks)
	if err != nil {
		return err
	}
	if p.perPlace {
		split, whole = nil, nil
	}
	for {
		top, ok := peek()
		if !ok {
			break
		}
		if oldest, ok := enough(); ok && top.start < oldest {
			break
		}
		c := pop()
		if whole[c.id] {
			continue
		}
		// Ingest's share of the CPU, between traces; and where a query over a large head stops
		// when its client goes away or its time is up.
		if err := queryscheduler.Yield(ctx); err != nil {
			return err
		}
		hts := h.Get(c.id)
		if len(hts) == 0 {
			continue // released to a block since the summary was taken: the block has it
		}
		if !e.fullScan && !headTracePasses(p.spanTests, hts) {
			continue
		}
		parts := headPartsOf(hts)
		t, err := decodeHead(parts, resources, wcols)
		if err != nil {
			return fmt.Errorf("search: head: %w", err)
		}
		fn(t)
	}
	if err := e.judgeSplit(ctx, p, split, blocks, fn, enough); err != nil {
		return err
	}
	if p.blocks == nil {
		// Only the whole list says which readers are gone.
		e.groups.forget(blocks)
		e.prune.forget(blocks)
	}
	m.TotalBlocks += len(blocks)
	// Newest data first: a block's traces all start before its MaxEnd.
	slices.SortFunc(blocks, func(a, b *block.Reader) int { return cmp.Compare(b.Meta().MaxEnd, a.Meta().MaxEnd) })
	for _, b := range blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		meta := b.Meta()
		if oldest, ok := enough(); ok && meta.MaxEnd < oldest {
			break
		}
		if (p.minStart != 0 && meta.MaxEnd < p.minStart) || (p.maxStart != 0 && meta.MinStart > p.maxStart) || meta.Traces == 0 {
			m.SkippedBlocks++
			continue
		}
		if p.blockHook != nil {
			p.blockHook(b, whole)
			continue
		}
		res, err := e.groups.get(b)
		if err != nil {
			return fmt.Errorf("search: %w", err)
		}
		opts := block.ScanOptions{Columns: p.cols, MinStart: p.minStart, MaxStart: p.maxStart,
			MinDuration: p.minTraceDur, Require: p.require, MinSpans: int64(p.minSpans)}
		if e.fullScan {
			opts.MinDuration, opts.Require, opts.MinSpans = 0, nil, 0
		} else {
			if most, ok := b.MaxSpanCount(); ok && p.minSpans > 0 && most < int64(p.minSpans) {
				m.SkippedBlocks++
				continue
			}
			ok, err := e.prune.mayMatch(ctx, b, res, p.required)
			if block.SkipDamaged(ctx, err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("search: %w", err)
			}
			if !ok {
				m.SkippedBlocks++
				continue
			}
		}
		scan := func(opts block.ScanOptions) error {
			var last int64
			var stopped error
			err := b.Scan(ctx, opts, func(sb *block.ScanBatch) bool {
				if stopped = queryscheduler.Yield(ctx); stopped != nil { // ingest's share of the CPU, between batches
					return false
				}
				m.InspectedBytes += sb.Bytes - last
				last = sb.Bytes
				_, err := batchTraces(sb, res, func(t *trace) bool {
					if !whole[t.id] {
						fn(t)
					}
					return true
				})
				return err == nil
			})
			if err == nil {
				err = stopped
			}
			return err
		}
		if p.limit > 0 && !e.fullScan {
			err = scanNewestFirst(ctx, b, opts, p.limit, p.have, scan, enough)
		} else {
			// Every page once: not worth the shared page cache's room (nor its copies).
			opts.NoCacheFill = true
			err = scan(opts)
		}
		// A damaged block is left out, and the answer says it is partial; traces the scan
		// already passed to fn stay, which is the most a partial answer can hold.
		if block.SkipDamaged(ctx, err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("search: %w", err)
		}
	}
	return nil
}

// result turns a matching trace's spansets into the answer's form.
func (p *plan) result(t *trace, sets []spanset, spss int) Trace {
	out := Trace{ID: t.id, StartUnixNano: t.start, DurationNanos: t.dur}
	// The root is the span without a parent, wherever it was stored; a rootless trace has none.
	if r := t.tree().root; r >= 0 {
		out.RootTraceName = t.spans[r].name
		if res := t.spans[r].res; res != nil {
			out.RootServiceName = res.service
		}
	}
	for _, ss := range sets {
		set := SpanSet{Matched: len(ss.spans)}
		for _, l := range ss.by {
			if l.val.k != kNil {
				set.Attributes = append(set.Attributes, Attribute{Key: l.key, Value: exportValue(l.val)})
			}
		}
		for _, i := range sortSpansByStart(t, ss.spans) {
			if len(set.Spans) == spss {
				break
			}
			s := &t.spans[i]
			sp := Span{SpanID: slices.Clone(s.id), Name: s.name, StartUnixNano: s.start, DurationNanos: s.dur}
			for _, f := range p.show {
				v := evalField(f, t, s)
				if v.k == kNil {
					continue
				}
				key := f.String()
				if a, ok := f.(traceql.Attribute); ok {
					key = a.Name
				}
				sp.Attributes = append(sp.Attributes, Attribute{Key: key, Value: exportValue(v)})
			}
			set.Spans = append(set.Spans, sp)
		}
		out.SpanSets = append(out.SpanSets, set)
	}
	return out
}

// scanNewestFirst scans a block's traces in chunks, newest first (block.Reader.StartOrder),
// until enough says that no older trace is needed. Each chunk is read in row order, so a page
// is decoded at most once per chunk; but a block is sorted by trace ID, so the traces of a chunk
// sit on different pages, and a chunk of a few thousand traces decodes every page. So chunks
// are sized from the matches so far, to what the limit still needs, and once that is a good
// part of the block, the rest is read in one pass.
func scanNewestFirst(ctx context.Context, b *block.Reader, opts block.ScanOptions, limit int, have func() int,
	scan func(block.ScanOptions) error, enough func() (int64, bool)) error {
	if runs := b.Runs(); len(runs) > 1 {
		return scanRunsNewestFirst(runs, opts, scan, enough)
	}
	n := int(b.Meta().Traces)
	chunk := max(4*limit, 64)
	if chunk*8 > n {
		return scan(opts) // the first chunk alone would decode most pages
	}
	so, err := b.StartOrder(ctx)
	if err != nil {
		return err
	}
	ms := func(ns int64) int64 {
		q := ns / 1e6
		if ns%1e6 != 0 && ns < 0 {
			q--
		}
		return q
	}
	i := 0
	n = len(so.Rows)
	if opts.MaxStart != 0 {
		// A start whose millisecond is past the bound's is past the bound.
		top := ms(opts.MaxStart)
		i = sort.Search(n, func(k int) bool { return so.StartMs[k] <= top })
	}
	first, had := i, have()
	var rows []int32
	for i < n {
		// Starts are rounded down, so "older by its millisecond" is older.
		if oldest, ok := enough(); ok && so.StartMs[i] < ms(oldest) {
			return nil
		}
		if opts.MinStart != 0 && so.StartMs[i] < ms(opts.MinStart) {
			return nil
		}
		if i > first {
			// Rows needed at the rate found so far, with a margin; eight times the last chunk
			// when nothing matched yet.
			found := have() - had
			chunk *= 8
			if found > 0 {
				chunk = min(chunk, 2*(limit-have()+1)*(i-first)/found+64)
			}
		}
		j := min(i+chunk, n)
		if (n-j)*8 < n {
			j = n // little would be left: take it now
		}
		if j-i > n/8 {
			j = n // a chunk this big decodes most pages anyway: one pass over the rest
		}
		rows = append(rows[:0], so.Rows[i:j]...)
		slices.Sort(rows)
		opts.Rows = rows
		if err := scan(opts); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// scanRunsNewestFirst reads a block written in runs (format 5, block.Run) a run at a time, the
// run whose traces started last first, each run whole and in row order, until enough says no
// older trace is needed: a run's pages hold only its traces, so reading the newest runs decodes
// only their pages, where chunks of a block sorted by trace ID alone decode every page.
func scanRunsNewestFirst(runs []block.RunRange, opts block.ScanOptions, scan func(block.ScanOptions) error,
	enough func() (int64, bool)) error {
	slices.SortStableFunc(runs, func(a, b block.RunRange) int { return cmp.Compare(b.MaxStart, a.MaxStart) })
	for _, run := range runs {
		if oldest, ok := enough(); ok && run.MaxStart < oldest {
			return nil // runs after it started earlier still
		}
		if (opts.MinStart != 0 && run.MaxStart < opts.MinStart) || (opts.MaxStart != 0 && run.MinStart > opts.MaxStart) {
			continue
		}
		opts.From, opts.To = run.From, run.To
		if err := scan(opts); err != nil {
			return err
		}
	}
	return nil
}
