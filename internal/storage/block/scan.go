package block

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// ScanColumns says what Scan reads besides each trace's summary and its spans' start, duration,
// parent and group, which it always reads. Every column left out is never touched on disk.
type ScanColumns struct {
	SpanID, Name, Kind, Status, StatusMessage bool

	// SpanAttrs are the span attribute keys to read; AllSpanAttrs reads every key. Only the key
	// column is read for rows of other keys.
	SpanAttrs    []string
	AllSpanAttrs bool

	Events        bool // event names and times
	EventAttrs    []string
	AllEventAttrs bool

	Links        bool // link trace and span IDs
	LinkAttrs    []string
	AllLinkAttrs bool
}

// ScanOptions selects what Scan reads.
type ScanOptions struct {
	Columns ScanColumns
	// MinStart and MaxStart bound the traces' start times in unix nanoseconds; 0 leaves a bound
	// open. Traces outside are skipped before any of their spans are read.
	MinStart, MaxStart int64
	// BatchTraces is how many traces a batch holds at most; 1024 when 0.
	BatchTraces int
	// MinDuration skips traces shorter than it, from the summary alone: no span of a trace
	// lasts longer than the trace.
	MinDuration int64
	// MinSpans skips traces with fewer spans in the block, from the row ranges alone.
	MinSpans int64
	// Rows, when not nil, are the traces.parquet rows to read (ascending), instead of all: a
	// part of StartOrder, for reading the newest traces first.
	Rows []int32
	// From and To, when To > 0, read only traces.parquet rows [From, To): a run (Reader.Runs).
	From, To int64
	// NoCacheFill reads pages from the shared page cache without adding to it: for a scan that
	// reads every page once (a metrics query, an unlimited search), which would otherwise evict
	// the newest pages limited searches come back to and hold the cache at its bound for nothing.
	NoCacheFill bool
	// Require, when set, skips traces without a span attribute it accepts. It is tested on the
	// key and value columns before any span column is read, so a selective attribute condition
	// reads spans only for the traces that can match.
	Require *AttrPredicate
}

// AttrPredicate tests span attribute rows of one key. Value holds the row's type (a Value*
// constant) and the field of that type; Raw is the AnyValue bytes of a ValueRaw row.
type AttrPredicate struct {
	Key   string
	Match func(typ int32, str string, num int64, dbl float64, b bool, raw []byte) bool
}

// ScanTrace is one trace of a batch.
type ScanTrace struct {
	ID            [16]byte
	Start         int64 // unix nanos
	Duration      int64
	RootService   string
	RootName      string
	Span0, Span1  int // the trace's spans are [Span0, Span1) of the batch's span columns
	Event0, Link0 int // first event and link of the trace in the batch
}

// ScanSpans are span columns; a column not asked for is empty.
type ScanSpans struct {
	ID []([]byte)
	// Parent is the parent's index within the trace, or -1 when the parent is not in the block's
	// copy of the trace; HasParent tells a root from a span whose parent is elsewhere.
	Parent        []int32
	HasParent     []bool
	Start         []int64 // unix nanos
	Duration      []int64
	Name          []string
	Kind          []int32
	StatusCode    []int32 // OTLP status code, 0 (unset) when the span has no status
	StatusMessage []string
	Group         []int32 // index into Reader.Groups
}

// ScanAttrs are attribute rows of the keys asked for, ordered by owner.
type ScanAttrs struct {
	Owner  []int32 // index of the span, event or link in its batch columns
	Key    []string
	Type   []int32 // one of the Value* constants
	Str    []string
	Int    []int64
	Double []float64
	Bool   []bool
	Raw    [][]byte // AnyValue bytes of ValueRaw rows
}

func (a *ScanAttrs) reset() {
	a.Owner, a.Key, a.Type, a.Str = a.Owner[:0], a.Key[:0], a.Type[:0], a.Str[:0]
	a.Int, a.Double, a.Bool, a.Raw = a.Int[:0], a.Double[:0], a.Bool[:0], a.Raw[:0]
}

// ScanBatch holds a batch of traces' columns. Its slices are reused for the next batch.
type ScanBatch struct {
	Traces []ScanTrace
	Spans  ScanSpans
	Attrs  ScanAttrs

	EventSpan  []int32 // owner span index in the batch
	EventName  []string
	EventTime  []int64 // offset from the span start, nanos
	EventAttrs ScanAttrs

	LinkSpan    []int32
	LinkTraceID [][]byte
	LinkSpanID  [][]byte
	LinkAttrs   ScanAttrs

	// Bytes is how many bytes of decoded pages the scan has read so far, across batches.
	Bytes int64
	// SpansRead counts the spans of the batch's traces.
	SpansRead int

	arena []byte
}

func (b *ScanBatch) reset() {
	b.Traces = b.Traces[:0]
	s := &b.Spans
	s.ID, s.Parent, s.HasParent, s.Start, s.Duration = s.ID[:0], s.Parent[:0], s.HasParent[:0], s.Start[:0], s.Duration[:0]
	s.Name, s.Kind, s.StatusCode, s.StatusMessage, s.Group = s.Name[:0], s.Kind[:0], s.StatusCode[:0], s.StatusMessage[:0], s.Group[:0]
	b.Attrs.reset()
	b.EventSpan, b.EventName, b.EventTime = b.EventSpan[:0], b.EventName[:0], b.EventTime[:0]
	b.EventAttrs.reset()
	b.LinkSpan, b.LinkTraceID, b.LinkSpanID = b.LinkSpan[:0], b.LinkTraceID[:0], b.LinkSpanID[:0]
	b.LinkAttrs.reset()
	b.arena = b.arena[:0]
	b.SpansRead = 0
}

// keep copies v into the batch's arena. Earlier copies stay valid as the arena grows because
// each one is its own three-index slice of whichever backing array held it.
func (b *ScanBatch) keep(v []byte) []byte {
	if len(b.arena)+len(v) > cap(b.arena) {
		b.arena = make([]byte, 0, max(64<<10, 2*len(v)))
	}
	n := len(b.arena)
	b.arena = append(b.arena, v...)
	return b.arena[n:len(b.arena):len(b.arena)]
}

// attrReader reads an attributes file for Scan.
type attrReader struct {
	all                                            bool
	keys                                           map[string]bool
	owner, key, typ, str, num, dbl, boolean, rawCl *cursor
}

func newAttrReader(p *pfile, keys []string, all bool) *attrReader {
	if !all && len(keys) == 0 {
		return nil
	}
	a := &attrReader{all: all, keys: map[string]bool{}}
	for _, k := range keys {
		a.keys[k] = true
	}
	a.owner, a.key, a.typ, a.str = newCursor(p, aOwner), newCursor(p, aKey), newCursor(p, aType), newCursor(p, aStr)
	a.num, a.dbl, a.boolean, a.rawCl = newCursor(p, aInt), newCursor(p, aDouble), newCursor(p, aBool), newCursor(p, aRaw)
	return a
}

func (a *attrReader) cursors() []*cursor {
	if a == nil {
		return nil
	}
	return []*cursor{a.owner, a.key, a.typ, a.str, a.num, a.dbl, a.boolean, a.rawCl}
}

// read appends the rows [from, to) whose key is wanted; owner rows map to batch indexes by
// adding shift.
func (a *attrReader) read(b *ScanBatch, dst *ScanAttrs, from, to, shift int64) error {
	for row := from; row < to; row++ {
		if !a.all {
			in, err := a.key.strIn(row, a.keys)
			if err != nil {
				return err
			}
			if !in {
				continue
			}
		}
		owner, err := a.owner.int64At(row)
		if err != nil {
			return err
		}
		key, err1 := a.key.strAt(row)
		typ, err2 := a.typ.int32At(row)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		str, num, dbl, bval, raw, err := a.valueAt(row, typ)
		if err != nil {
			return err
		}
		if plainString(typ) {
			typ = ValueString
		}
		if typ == ValueRaw {
			raw = b.keep(raw)
		}
		dst.Owner = append(dst.Owner, int32(owner+shift))
		dst.Key = append(dst.Key, key)
		dst.Type = append(dst.Type, typ)
		dst.Str = append(dst.Str, str)
		dst.Int = append(dst.Int, num)
		dst.Double = append(dst.Double, dbl)
		dst.Bool = append(dst.Bool, bval)
		dst.Raw = append(dst.Raw, raw)
	}
	return nil
}

// valueAt decodes the value of an attribute row of type typ from its type's column; raw points
// into the cursor's page and is valid until the cursor moves on. A ValueStringPlain row's
// value comes back in str, as a ValueString row's does.
func (a *attrReader) valueAt(row int64, typ int32) (str string, num int64, dbl float64, bval bool, raw []byte, err error) {
	switch typ {
	case ValueString:
		str, err = a.str.strAt(row)
	case ValueStringPlain, ValueStringPlainNew:
		var b []byte
		b, err = a.rawCl.bytesAt(row)
		str = string(b)
	case ValueInt:
		num, err = a.num.int64At(row)
	case ValueDouble:
		var v parquet.Value
		v, err = a.dbl.valueAt(row)
		dbl = v.Double()
	case ValueBool:
		var v parquet.Value
		v, err = a.boolean.valueAt(row)
		bval = v.Boolean()
	case ValueRaw:
		raw, err = a.rawCl.bytesAt(row)
	}
	return
}

// any reports whether a row of [from, to) has the reader's key and a value match accepts.
func (a *attrReader) any(from, to int64, match func(int32, string, int64, float64, bool, []byte) bool) (bool, error) {
	for row := from; row < to; row++ {
		in, err := a.key.strIn(row, a.keys)
		if err != nil || !in {
			if err != nil {
				return false, err
			}
			continue
		}
		typ, err := a.typ.int32At(row)
		if err != nil {
			return false, err
		}
		str, num, dbl, bval, raw, err := a.valueAt(row, typ)
		if err != nil {
			return false, err
		}
		if plainString(typ) {
			typ = ValueString
		}
		if match(typ, str, num, dbl, bval, raw) {
			return true, nil
		}
	}
	return false, nil
}

// Scan calls fn with the block's traces whose start is within the options' bounds, a batch at
// a time in row order (trace ID order within each run), reading only the columns asked for and
// skipping runs whose traces all started outside the bounds. It stops when fn returns false.
// The batch is reused: fn must copy what it keeps.
func (r *Reader) Scan(ctx context.Context, opts ScanOptions, fn func(*ScanBatch) bool) error {
	err := r.scan(ctx, opts, fn)
	return r.wrap(err)
}

type traceRange struct {
	spans, attrs, events, eventAttrs, links, linkAttrs [2]int64
}

func (r *Reader) scan(ctx context.Context, opts ScanOptions, fn func(*ScanBatch) bool) error {
	batchSize := opts.BatchTraces
	if batchSize <= 0 {
		batchSize = 1024
	}
	cols := opts.Columns
	tp := r.traces
	tStartC, tDurC := newCursor(tp, tStart), newCursor(tp, tDuration)
	tIDC, tSvcC, tNameC := newCursor(tp, tID), newCursor(tp, tRootService), newCursor(tp, tRootName)
	var rowC [6]*cursor
	for k, col := range rangeCols {
		rowC[k] = newCursor(tp, col)
	}
	sp := r.spans
	sParentC, sParentIDC, sStartC, sDurC, sGroupC := newCursor(sp, sParent), newCursor(sp, sParentID), newCursor(sp, sStart), newCursor(sp, sDuration), newCursor(sp, sGroup)
	sIDC, sNameC, sKindC, sStatusC, sMsgC := newCursor(sp, sSpanID), newCursor(sp, sName), newCursor(sp, sKind), newCursor(sp, sStatus), newCursor(sp, sStatusMsg)
	evSpanC, evTimeC, evNameC := newCursor(r.events, eSpan), newCursor(r.events, eTime), newCursor(r.events, eName)
	lkSpanC, lkTraceC, lkSpanIDC := newCursor(r.links, lSpan), newCursor(r.links, lTraceID), newCursor(r.links, lSpanID)
	attrs := newAttrReader(r.attrs, cols.SpanAttrs, cols.AllSpanAttrs)
	var require *attrReader
	if opts.Require != nil {
		require = newAttrReader(r.attrs, []string{opts.Require.Key}, false)
	}
	eventAttrs := newAttrReader(r.eventAttrs, cols.EventAttrs, cols.AllEventAttrs)
	linkAttrs := newAttrReader(r.linkAttrs, cols.LinkAttrs, cols.AllLinkAttrs)
	all := []*cursor{tStartC, tDurC, tIDC, tSvcC, tNameC, rowC[0], rowC[1], rowC[2], rowC[3], rowC[4], rowC[5],
		sParentC, sParentIDC, sStartC, sDurC, sGroupC, sIDC, sNameC, sKindC, sStatusC, sMsgC,
		evSpanC, evTimeC, evNameC, lkSpanC, lkTraceC, lkSpanIDC}
	all = append(all, attrs.cursors()...)
	all = append(all, require.cursors()...)
	all = append(all, eventAttrs.cursors()...)
	all = append(all, linkAttrs.cursors()...)
	if opts.NoCacheFill {
		for _, c := range all {
			c.noFill = true
		}
	}
	defer func() {
		for _, c := range all {
			c.close()
		}
	}()
	bytesRead := func() int64 {
		var n int64
		for _, c := range all {
			n += c.pageBytes
		}
		return n
	}

	ends := [6]int64{r.meta.Spans, r.meta.Attrs, r.meta.Events, r.meta.EventAttrs, r.meta.Links, r.meta.LinkAttrs}
	rangeOf := func(row int64) (traceRange, error) {
		var rr [6][2]int64
		for k := range rowC {
			var err error
			if rr[k][0], err = rowC[k].int64At(row); err != nil {
				return traceRange{}, err
			}
			rr[k][1] = ends[k]
			if row+1 < tp.rows {
				if rr[k][1], err = rowC[k].int64At(row + 1); err != nil {
					return traceRange{}, err
				}
			}
		}
		return traceRange{rr[0], rr[1], rr[2], rr[3], rr[4], rr[5]}, nil
	}

	b := &ScanBatch{}
	var ranges []traceRange
	flush := func() error {
		for ti := range b.Traces {
			t := &b.Traces[ti]
			rr := ranges[ti]
			t.Span0 = len(b.Spans.Start)
			t.Event0 = len(b.EventSpan)
			t.Link0 = len(b.LinkSpan)
			spanShift := int64(t.Span0) - rr.spans[0]
			for row := rr.spans[0]; row < rr.spans[1]; row++ {
				parent, err1 := sParentC.int32At(row)
				off, err2 := sStartC.int64At(row)
				dur, err3 := sDurC.int64At(row)
				group, err4 := sGroupC.int32At(row)
				if err := errors.Join(err1, err2, err3, err4); err != nil {
					return err
				}
				hasParent := parent > 0
				if !hasParent {
					pid, err := sParentIDC.bytesAt(row)
					if err != nil {
						return err
					}
					hasParent = len(pid) > 0
				}
				s := &b.Spans
				s.Parent = append(s.Parent, parent-1)
				s.HasParent = append(s.HasParent, hasParent)
				s.Start = append(s.Start, t.Start+off)
				s.Duration = append(s.Duration, dur)
				s.Group = append(s.Group, group)
				if cols.SpanID {
					id, err := sIDC.bytesAt(row)
					if err != nil {
						return err
					}
					s.ID = append(s.ID, b.keep(id))
				}
				if cols.Name {
					name, err := sNameC.strAt(row)
					if err != nil {
						return err
					}
					s.Name = append(s.Name, name)
				}
				if cols.Kind {
					kind, err := sKindC.int32At(row)
					if err != nil {
						return err
					}
					s.Kind = append(s.Kind, kind)
				}
				if cols.Status {
					v, err := sStatusC.int64At(row)
					if err != nil {
						return err
					}
					_, code := statusFromValue(v)
					s.StatusCode = append(s.StatusCode, code)
				}
				if cols.StatusMessage {
					msg, err := sMsgC.strAt(row)
					if err != nil {
						return err
					}
					s.StatusMessage = append(s.StatusMessage, msg)
				}
			}
			t.Span1 = len(b.Spans.Start)
			b.SpansRead += t.Span1 - t.Span0
			if attrs != nil {
				if err := attrs.read(b, &b.Attrs, rr.attrs[0], rr.attrs[1], spanShift); err != nil {
					return err
				}
			}
			if cols.Events || eventAttrs != nil {
				for row := rr.events[0]; row < rr.events[1]; row++ {
					owner, err1 := evSpanC.int64At(row)
					tm, err2 := evTimeC.int64At(row)
					name, err3 := evNameC.strAt(row)
					if err := errors.Join(err1, err2, err3); err != nil {
						return err
					}
					b.EventSpan = append(b.EventSpan, int32(owner+spanShift))
					b.EventTime = append(b.EventTime, tm)
					b.EventName = append(b.EventName, name)
				}
				if eventAttrs != nil {
					shift := int64(t.Event0) - rr.events[0]
					if err := eventAttrs.read(b, &b.EventAttrs, rr.eventAttrs[0], rr.eventAttrs[1], shift); err != nil {
						return err
					}
				}
			}
			if cols.Links || linkAttrs != nil {
				for row := rr.links[0]; row < rr.links[1]; row++ {
					owner, err1 := lkSpanC.int64At(row)
					tid, err2 := lkTraceC.bytesAt(row)
					if err := errors.Join(err1, err2); err != nil {
						return err
					}
					tid = b.keep(tid)
					sid, err := lkSpanIDC.bytesAt(row)
					if err != nil {
						return err
					}
					b.LinkSpan = append(b.LinkSpan, int32(owner+spanShift))
					b.LinkTraceID = append(b.LinkTraceID, tid)
					b.LinkSpanID = append(b.LinkSpanID, b.keep(sid))
				}
				if linkAttrs != nil {
					shift := int64(t.Link0) - rr.links[0]
					if err := linkAttrs.read(b, &b.LinkAttrs, rr.linkAttrs[0], rr.linkAttrs[1], shift); err != nil {
						return err
					}
				}
			}
		}
		b.Bytes = bytesRead()
		return nil
	}

	b.reset()
	// The rows to read: the runs within From and To whose traces may start within the bounds,
	// or the rows listed.
	var segs [][2]int64
	if opts.Rows != nil {
		segs = [][2]int64{{0, int64(len(opts.Rows))}}
	} else {
		from, to := opts.From, opts.To
		if to <= 0 || to > tp.rows {
			to = tp.rows
		}
		for _, run := range r.runs {
			if (opts.MinStart != 0 && run.maxStart < opts.MinStart) || (opts.MaxStart != 0 && run.minStart > opts.MaxStart) {
				continue
			}
			if lo, hi := max(from, run.row0), min(to, run.row1); lo < hi {
				segs = append(segs, [2]int64{lo, hi})
			}
		}
	}
	for i := range rowsOf(segs) {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		row := i
		if opts.Rows != nil {
			if row = int64(opts.Rows[i]); row < 0 || row >= tp.rows || (i > 0 && row <= int64(opts.Rows[i-1])) {
				return fmt.Errorf("scan: rows must ascend within [0,%d): %d", tp.rows, row)
			}
		}
		start, err := tStartC.int64At(row)
		if err != nil {
			return err
		}
		if (opts.MinStart != 0 && start < opts.MinStart) || (opts.MaxStart != 0 && start > opts.MaxStart) {
			continue
		}
		t := ScanTrace{Start: start}
		if t.Duration, err = tDurC.int64At(row); err != nil {
			return err
		}
		if t.Duration < opts.MinDuration {
			continue
		}
		rr, err := rangeOf(row)
		if err != nil {
			return err
		}
		if rr.spans[1]-rr.spans[0] < opts.MinSpans {
			continue
		}
		if require != nil {
			ok, err := require.any(rr.attrs[0], rr.attrs[1], opts.Require.Match)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		var errs [3]error
		t.ID, errs[0] = tIDC.id16At(row)
		t.RootService, errs[1] = tSvcC.strAt(row)
		t.RootName, errs[2] = tNameC.strAt(row)
		if err := errors.Join(errs[:]...); err != nil {
			return err
		}
		b.Traces = append(b.Traces, t)
		ranges = append(ranges, rr)
		if len(b.Traces) == batchSize {
			if err := flush(); err != nil {
				return err
			}
			if !fn(b) {
				return nil
			}
			b.reset()
			ranges = ranges[:0]
		}
	}
	if len(b.Traces) > 0 {
		if err := flush(); err != nil {
			return err
		}
		fn(b)
	}
	return nil
}

// rowsOf yields the rows of segments [lo, hi) in order.
func rowsOf(segs [][2]int64) func(func(int64) bool) {
	return func(yield func(int64) bool) {
		for _, sg := range segs {
			for i := sg[0]; i < sg[1]; i++ {
				if !yield(i) {
					return
				}
			}
		}
	}
}

// Group is one resource and scope pair of a block, as spans refer to it by ScanSpans.Group.
type Group struct {
	// Resource and Scope are the Resource and InstrumentationScope messages; nil when absent.
	Resource, Scope []byte
	ServiceName     string
	ScopeName       string
}

// Groups returns the block's resource and scope pairs, indexed as ScanSpans.Group. They are
// held in memory since Open; the slices must not be modified.
func (r *Reader) Groups() []Group {
	out := make([]Group, len(r.groups))
	for i, g := range r.groups {
		out[i] = Group{ServiceName: g.service, ScopeName: g.scopeName}
		if g.presence&hasResource != 0 {
			out[i].Resource = g.resource
		}
		if g.presence&hasScope != 0 {
			out[i].Scope = g.scope
		}
	}
	return out
}

// DictColumn names a dictionary-encoded string column whose distinct values Distinct can list.
type DictColumn int

// Columns Distinct can list.
const (
	DictSpanName      DictColumn = iota + 1 // spans.parquet name
	DictSpanAttrKey                         // attrs.parquet key
	DictSpanAttrStr                         // attrs.parquet str (string values; incomplete when some are plain)
	DictEventName                           // events.parquet name
	DictEventAttrKey                        // event_attrs.parquet key
	DictLinkAttrKey                         // link_attrs.parquet key
	DictRootService                         // traces.parquet root_service
	DictRootName                            // traces.parquet root_name
	DictSpanStatusMsg                       // never complete: status messages skip the dictionary
	dictColumnEnd
)

func (r *Reader) dictColumn(c DictColumn) (*pfile, int) {
	switch c {
	case DictSpanName:
		return r.spans, sName
	case DictSpanAttrKey:
		return r.attrs, aKey
	case DictSpanAttrStr:
		return r.attrs, aStr
	case DictEventName:
		return r.events, eName
	case DictEventAttrKey:
		return r.eventAttrs, aKey
	case DictLinkAttrKey:
		return r.linkAttrs, aKey
	case DictRootService:
		return r.traces, tRootService
	case DictRootName:
		return r.traces, tRootName
	}
	return nil, 0
}

// Distinct returns the distinct values of a string column from its dictionary pages alone, so
// that a search can skip a block without the value it needs, and tag discovery can list values,
// reading a few kilobytes rather than the column. complete is false when some page of the column
// is not dictionary-encoded (the writer falls back to plain past a dictionary size cap); the
// values are then only a subset and the caller must read the column instead.
func (r *Reader) Distinct(c DictColumn) (values []string, complete bool, err error) {
	p, col := r.dictColumn(c)
	if p == nil {
		return nil, false, nil
	}
	// Strings of high-cardinality keys are not in the str column at all (format 6 on).
	if c == DictSpanAttrStr && r.maxSpanAttrType() >= ValueStringPlain {
		return nil, false, nil
	}
	leaf := p.fs.leaf[col]
	md := p.f.Metadata()
	seen := map[string]bool{}
	for i, rg := range p.f.RowGroups() {
		if rg.NumRows() == 0 {
			continue
		}
		for _, st := range md.RowGroups[i].Columns[leaf].MetaData.EncodingStats {
			dataPage := st.PageType == format.DataPage || st.PageType == format.DataPageV2
			if dataPage && st.Encoding != format.RLEDictionary && st.Encoding != format.PlainDictionary {
				return nil, false, nil
			}
		}
		pages, ok := rg.ColumnChunks()[leaf].Pages().(*parquet.FilePages)
		if !ok {
			return nil, false, nil
		}
		d, err := pages.ReadDictionary()
		pages.Close()
		if err != nil {
			return nil, false, r.wrap(fmt.Errorf("%s: column %s: dictionary: %w", p.name, p.fs.cols[col].name, err))
		}
		if d == nil {
			return nil, false, nil
		}
		for k := range d.Len() {
			v := d.Index(int32(k)).ByteArray()
			if !seen[string(v)] {
				s := string(v)
				seen[s] = true
				values = append(values, s)
			}
		}
	}
	slices.Sort(values)
	return values, true, nil
}

// HasRawSpanAttrs reports whether any span attribute value may be stored raw (arrays, maps,
// bytes), from the type column's statistics. A string inside an array is not in the str
// column's dictionary, so ruling a block out by that dictionary is only sound without them.
// Blocks with plain strings (ValueStringPlain, a higher type) answer true: the statistics
// keep only the highest type.
func (r *Reader) HasRawSpanAttrs() bool { return r.maxSpanAttrType() >= ValueRaw }

// maxSpanAttrType is the highest type of any span attribute row, from the type column's
// statistics; without statistics, the highest type there is.
func (r *Reader) maxSpanAttrType() int32 {
	leaf := r.attrs.fs.leaf[aType]
	var top int32
	for _, rg := range r.attrs.f.RowGroups() {
		if rg.NumRows() == 0 {
			continue
		}
		fc, ok := rg.ColumnChunks()[leaf].(*parquet.FileColumnChunk)
		if !ok {
			return ValueStringPlain
		}
		_, hi, ok := fc.Bounds()
		if !ok {
			return ValueStringPlain
		}
		top = max(top, hi.Int32())
	}
	return top
}

// MaxSpanCount is the most spans any trace of the block has, from the span_count column's
// statistics, so that a search for traces with more spans can skip the block; ok is false when
// the statistics are missing.
func (r *Reader) MaxSpanCount() (n int64, ok bool) {
	leaf := r.traces.fs.leaf[tSpanCount]
	for _, rg := range r.traces.f.RowGroups() {
		if rg.NumRows() == 0 {
			continue
		}
		fc, isFile := rg.ColumnChunks()[leaf].(*parquet.FileColumnChunk)
		if !isFile {
			return 0, false
		}
		_, hi, has := fc.Bounds()
		if !has {
			return 0, false
		}
		n = max(n, hi.Int64())
	}
	return n, true
}

// TraceStarts is a block's traces newest first: Rows[i] is a traces.parquet row and StartMs[i]
// its start in unix milliseconds, rounded down (StartMs never increases).
type TraceStarts struct {
	Rows    []int32
	StartMs []int64
}

// startOrder is a reader's lazily built TraceStarts.
type startOrder struct {
	mu   sync.Mutex
	done bool
	ts   *TraceStarts
}

// StartOrder returns the block's traces newest first, read from the start column on first use
// and kept while the reader lives (12 bytes a trace): blocks are sorted by trace ID, so this is
// what lets a search with a limit read the newest traces of a block and stop.
func (r *Reader) StartOrder(ctx context.Context) (*TraceStarts, error) {
	o := &r.starts
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return o.ts, nil
	}
	n := r.traces.rows
	type rs struct {
		row int32
		ms  int64
	}
	all := make([]rs, 0, n)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err := r.traces.readColumn(tStart, 0, n, func(i int64, v parquet.Value) {
		all = append(all, rs{int32(i), floorDiv(v.Int64(), 1e6)})
	})
	if err != nil {
		return nil, r.wrap(err)
	}
	slices.SortStableFunc(all, func(a, b rs) int { return cmp.Compare(b.ms, a.ms) })
	ts := &TraceStarts{Rows: make([]int32, n), StartMs: make([]int64, n)}
	for i, x := range all {
		ts.Rows[i], ts.StartMs[i] = x.row, x.ms
	}
	o.ts, o.done = ts, true
	return ts, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
