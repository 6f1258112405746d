package compare

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// Reading blocks by their columns. A comparison over an hour of a busy system reads millions of
// spans, of which it needs only counts: building the search engine's per-trace form and a Go
// string per attribute value cost ten times the counting. So when both filters are plain span
// conditions (colFilter), each block is read column by column, whole row groups at a time:
// the filters are evaluated per span from per-entry answers (a name's dictionary entry is
// tested once, not once per span), and attribute values are counted by dictionary entry, their
// strings built only for the (key, value) pairs counted, once per row group. Blocks are read in
// parallel. The head and the traces split across places are still read by the engine's span
// scan, which hands them over span by span as before.

// colFilter is a spanset filter that columns answer span by span: "{ }", or comparisons of
// name, status, kind, duration, span., resource. and unscoped attributes with literals, joined
// by &&, || and !.
type colFilter struct {
	root   *fnode // nil matches every span
	leaves []*leaf
}

type fnode struct {
	op   traceql.Operator // OpAnd, OpOr, OpNot; 0 for a leaf
	l, r *fnode
	leaf int
}

type fieldKind uint8

const (
	fName fieldKind = iota + 1
	fStatus
	fKind
	fDuration
	fSpanAttr
	fResAttr
	fAnyAttr // span attribute if the span has the key, else resource attribute
)

type leaf struct {
	b        *traceql.BinaryOp
	field    fieldKind
	key      string
	presence bool // "= nil" / "!= nil"
}

// Three-valued results, as the engine's evaluation has them: a comparison with a missing value
// is neither true nor false, so that its negation does not match either.
const (
	tNil uint8 = iota
	tFalse
	tTrue
)

func boolTri(b bool) uint8 {
	if b {
		return tTrue
	}
	return tFalse
}

// compileFilter returns q as a colFilter, or nil when columns cannot answer it.
func compileFilter(q *traceql.Query) *colFilter {
	if q == nil || q.IsMetrics() || len(q.Stages) != 1 {
		return nil
	}
	f, ok := q.Stages[0].(*traceql.SpansetFilter)
	if !ok {
		return nil
	}
	cf := &colFilter{}
	if f.Cond == nil {
		return cf
	}
	root, ok := cf.compile(f.Cond)
	if !ok {
		return nil
	}
	cf.root = root
	return cf
}

func (cf *colFilter) compile(e traceql.FieldExpr) (*fnode, bool) {
	switch e := e.(type) {
	case *traceql.UnaryOp:
		if e.Op != traceql.OpNot {
			return nil, false
		}
		l, ok := cf.compile(e.Expr)
		return &fnode{op: traceql.OpNot, l: l}, ok
	case *traceql.BinaryOp:
		if e.Op == traceql.OpAnd || e.Op == traceql.OpOr {
			l, ok1 := cf.compile(e.LHS)
			r, ok2 := cf.compile(e.RHS)
			return &fnode{op: e.Op, l: l, r: r}, ok1 && ok2
		}
		if !e.Op.IsComparison() {
			return nil, false
		}
		st, ok := e.RHS.(traceql.Static)
		if !ok {
			return nil, false
		}
		lf := &leaf{b: e, presence: st.Type == traceql.TypeNil}
		switch f := e.LHS.(type) {
		case traceql.Intrinsic:
			switch f {
			case traceql.IntrinsicName:
				lf.field = fName
			case traceql.IntrinsicStatus:
				lf.field = fStatus
			case traceql.IntrinsicKind:
				lf.field = fKind
			case traceql.IntrinsicDuration:
				lf.field = fDuration
			default:
				return nil, false
			}
		case traceql.Attribute:
			lf.key = f.Name
			switch f.Scope {
			case traceql.ScopeSpan:
				lf.field = fSpanAttr
			case traceql.ScopeResource:
				lf.field = fResAttr
			case traceql.ScopeNone:
				lf.field = fAnyAttr
			default:
				return nil, false
			}
		default:
			return nil, false
		}
		cf.leaves = append(cf.leaves, lf)
		return &fnode{leaf: len(cf.leaves) - 1}, true
	}
	return nil, false
}

// tests reports whether the filter has a leaf on field f.
func (cf *colFilter) tests(f fieldKind) bool {
	if cf == nil {
		return false
	}
	for _, l := range cf.leaves {
		if l.field == f {
			return true
		}
	}
	return false
}

// readsSpanAttrs reports whether the filter tests span attributes.
func (cf *colFilter) readsSpanAttrs() bool {
	for _, l := range cf.leaves {
		if l.field == fSpanAttr || l.field == fAnyAttr {
			return true
		}
	}
	return false
}

// match is the leaf's answer for a span whose field has value v.
func (l *leaf) match(v search.Value) uint8 {
	if l.presence {
		// A value the engine reads as absent (a map) is not present either.
		return boolTri((v.Type != "") == (l.b.Op == traceql.OpNeq))
	}
	if v.Type == "" {
		return tNil
	}
	return boolTri(search.Matches(l.b, v))
}

// missing is the leaf's answer for a span without the field.
func (l *leaf) missing() uint8 {
	if l.presence {
		return boolTri(l.b.Op != traceql.OpNeq)
	}
	return tNil
}

// blockSpans are a block's span columns, flattened across row groups.
type blockSpans struct {
	r      *block.Reader
	buf    *bufs
	traces int64 // in range
	// per span
	n        int
	traceRow []int32
	in       []bool // started in the comparison's range, and not a split trace's
	name     []int32
	dur      []int64
	kind     []int32
	status   []int32
	group    []int32
	names    []string // the block's distinct span names, by name
	// traceIDs are read on first use: only selected spans need theirs, as examples.
	ids     []byte
	idsRead bool
	groups  []block.Group
	res     [][]resAttr // decoded on first use, by group
	bytes   int64
}

type resAttr struct {
	key string
	v   search.Value // Type "" when the engine reads it as absent (maps)
}

// bufs are one worker's column buffers, reused from block to block.
type bufs struct {
	starts, rows, offs, status []int64
	skipRow                    []bool
	names                      block.StringColumn
	spans                      blockSpans
	attrs                      attrRows
	keys, strs, raws           block.StringColumn
	sideOf                     []uint8
	marks                      [2][]bool
}

// bufPool keeps workers' buffers from pass to pass and comparison to comparison: a block's
// columns are tens of megabytes, and allocating them afresh for every pass was a fifth of the
// memory a comparison allocated.
var bufPool = sync.Pool{New: func() any { return &bufs{} }}

func getBufs() *bufs { return bufPool.Get().(*bufs) }

// putBufs returns b to the pool without references to the blocks it read, which the pool would
// otherwise keep alive.
func putBufs(b *bufs) {
	b.spans = blockSpans{traceRow: b.spans.traceRow[:0], in: b.spans.in[:0], name: b.spans.name[:0], dur: b.spans.dur[:0],
		kind: b.spans.kind[:0], status: b.spans.status[:0], group: b.spans.group[:0], ids: b.spans.ids[:0]}
	b.attrs = attrRows{owner: b.attrs.owner[:0], types: b.attrs.types[:0], ints: b.attrs.ints[:0], dbls: b.attrs.dbls[:0], bools: b.attrs.bools[:0]}
	for _, c := range []*block.StringColumn{&b.names, &b.keys, &b.strs, &b.raws} {
		c.Forget()
	}
	bufPool.Put(b)
}

// loadSpans reads a block's trace and span columns and marks the spans in (lo, hi] of traces
// that started in [minStart, maxStart] (0 leaves a bound open) and are not in skip. Without
// all, kind and status are read only if filter tests them (the first pass, which evaluates the
// selection alone); they are left empty otherwise.
func loadSpans(r *block.Reader, skip map[[16]byte]bool, lo, hi, minStart, maxStart int64, b *bufs, all bool, filter *colFilter) (*blockSpans, error) {
	readKind, readStatus := all || filter.tests(fKind), all || filter.tests(fStatus)
	bs := &b.spans
	*bs = blockSpans{r: r, buf: b, groups: r.Groups(), traceRow: bs.traceRow[:0], in: bs.in[:0], name: bs.name[:0],
		dur: bs.dur[:0], kind: bs.kind[:0], status: bs.status[:0], group: bs.group[:0], ids: bs.ids[:0]}
	tc := r.Columns(block.FileTraces)
	starts, rows, skipRow := b.starts[:0], b.rows[:0], b.skipRow[:0]
	var err error
	for rg := range tc.RowGroups() {
		if starts, err = tc.Int64s(rg, "start_unix_nano", starts); err != nil {
			return nil, err
		}
		if rows, err = tc.Int64s(rg, "span_row", rows); err != nil {
			return nil, err
		}
		if len(skip) > 0 {
			n := len(bs.ids)
			if bs.ids, err = tc.IDs16(rg, "trace_id", bs.ids); err != nil {
				return nil, err
			}
			for i := n; i+16 <= len(bs.ids); i += 16 {
				skipRow = append(skipRow, skip[[16]byte(bs.ids[i:i+16])])
			}
		}
	}
	if len(skip) == 0 {
		skipRow = nil
	} else {
		bs.idsRead = true
	}
	b.starts, b.rows = starts, rows
	if skipRow != nil {
		b.skipRow = skipRow
	}
	sc := r.Columns(block.FileSpans)
	total := int(sc.Rows())
	bs.n = total
	offs, status := b.offs[:0], b.status[:0]
	nameOf := map[string]int32{}
	for rg := range sc.RowGroups() {
		if offs, err = sc.Int64s(rg, "start_offset", offs); err != nil {
			return nil, err
		}
		if bs.dur, err = sc.Int64s(rg, "duration_nano", bs.dur); err != nil {
			return nil, err
		}
		if readKind {
			if bs.kind, err = sc.Int32s(rg, "kind", bs.kind); err != nil {
				return nil, err
			}
		}
		if readStatus {
			if status, err = sc.Int64s(rg, "status", status); err != nil {
				return nil, err
			}
		}
		if bs.group, err = sc.Int32s(rg, "group", bs.group); err != nil {
			return nil, err
		}
		names := &b.names
		if err := sc.Strings(rg, "name", names); err != nil {
			return nil, err
		}
		// Dictionary entries map to the block's name IDs once per row group.
		ids := make([]int32, names.Dict)
		for e := range names.Dict {
			ids[e] = bs.nameID(nameOf, names, e)
		}
		for _, e := range names.Index {
			if e < names.Dict {
				bs.name = append(bs.name, ids[e])
			} else {
				bs.name = append(bs.name, bs.nameID(nameOf, names, e))
			}
		}
	}
	b.offs, b.status = offs, status
	for _, v := range status {
		bs.status = append(bs.status, block.StatusCode(v))
	}
	bs.bytes = tc.Bytes() + sc.Bytes()
	if len(offs) != total || len(bs.name) != total || len(bs.group) != total || len(bs.dur) != total || readKind && len(bs.kind) != total ||
		readStatus && len(bs.status) != total || len(rows) != len(starts) {
		return nil, fmt.Errorf("compare: block %s: span columns of unequal length", r.Meta().ID)
	}
	bs.traceRow = slices.Grow(bs.traceRow, total)[:total]
	bs.in = slices.Grow(bs.in, total)[:total]
	for t := range starts {
		from, to := rows[t], int64(total)
		if t+1 < len(rows) {
			to = rows[t+1]
		}
		if from < 0 || to > int64(total) || from > to {
			return nil, fmt.Errorf("compare: block %s: trace %d: span rows [%d,%d) out of range", r.Meta().ID, t, from, to)
		}
		ok := (minStart == 0 || starts[t] >= minStart) && (maxStart == 0 || starts[t] <= maxStart) && (skipRow == nil || !skipRow[t])
		counted := false
		for s := from; s < to; s++ {
			bs.traceRow[s] = int32(t)
			start := starts[t] + offs[s]
			in := ok && start > lo && start <= hi
			bs.in[s] = in
			counted = counted || in
		}
		if counted {
			bs.traces++
		}
	}
	for _, g := range bs.group {
		if g < 0 || int(g) >= len(bs.groups) {
			return nil, fmt.Errorf("compare: block %s: span group %d out of range", r.Meta().ID, g)
		}
	}
	return bs, nil
}

func (bs *blockSpans) nameID(nameOf map[string]int32, col *block.StringColumn, e int32) int32 {
	b := col.Bytes(e)
	if id, ok := nameOf[string(b)]; ok {
		return id
	}
	s := col.String(e)
	id := int32(len(bs.names))
	bs.names = append(bs.names, s)
	nameOf[string(b)] = id
	return id
}

// traceID is the ID of the trace at row t, reading the column on first use.
func (bs *blockSpans) traceID(t int32) ([16]byte, error) {
	if !bs.idsRead {
		bs.idsRead = true
		tc := bs.r.Columns(block.FileTraces)
		for rg := range tc.RowGroups() {
			var err error
			if bs.ids, err = tc.IDs16(rg, "trace_id", bs.ids); err != nil {
				return [16]byte{}, err
			}
		}
	}
	if int(t)*16+16 > len(bs.ids) {
		return [16]byte{}, fmt.Errorf("compare: block %s: trace row %d out of range", bs.r.Meta().ID, t)
	}
	return [16]byte(bs.ids[16*int(t) : 16*int(t)+16]), nil
}

// resource is group g's resource attributes, as the engine reads them.
func (bs *blockSpans) resource(g int32) []resAttr {
	if bs.res == nil {
		bs.res = make([][]resAttr, len(bs.groups))
	}
	if bs.res[g] == nil {
		bs.res[g] = []resAttr{}
		var res resourcepb.Resource
		if raw := bs.groups[g].Resource; raw != nil && proto.Unmarshal(raw, &res) == nil {
			for _, kv := range res.Attributes {
				bs.res[g] = append(bs.res[g], resAttr{kv.Key, anyValue(kv.Value)})
			}
		}
	}
	return bs.res[g]
}

// anyValue is an OTLP value as search.RowValue gives it.
func anyValue(v *commonpb.AnyValue) search.Value {
	if v == nil {
		return search.Value{}
	}
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return search.Value{Type: "string", String: x.StringValue}
	case *commonpb.AnyValue_IntValue:
		return search.Value{Type: "int", Int: x.IntValue}
	case *commonpb.AnyValue_DoubleValue:
		return search.Value{Type: "float", Float: x.DoubleValue}
	case *commonpb.AnyValue_BoolValue:
		return search.Value{Type: "bool", Bool: x.BoolValue}
	case *commonpb.AnyValue_BytesValue:
		return search.Value{Type: "string", String: hex.EncodeToString(x.BytesValue)}
	case *commonpb.AnyValue_ArrayValue:
		out := search.Value{Type: "array"}
		for _, e := range x.ArrayValue.GetValues() {
			out.Array = append(out.Array, anyValue(e))
		}
		return out
	}
	return search.Value{}
}

// attrRows are one row group of an attributes file.
type attrRows struct {
	owner []int64
	keys  *block.StringColumn
	types []int32
	strs  *block.StringColumn
	ints  []int64
	dbls  []float64
	bools []bool
	raws  *block.StringColumn
	// Strings of high-cardinality keys (block.ValueStringPlain and ValueStringPlainNew) are in
	// raws too: counting needs only their types, and raws is read when some value must be
	// shown or compared (loadRaws).
	c  *block.ColumnReader
	rg int
	b  *bufs
}

// isPlain reports whether typ is a string kept out of the dictionary.
func isPlain(typ int32) bool {
	return typ == block.ValueStringPlain || typ == block.ValueStringPlainNew
}

// loadRaws reads the row group's raw column, once.
func (a *attrRows) loadRaws() error {
	if a.raws != nil {
		return nil
	}
	if err := a.c.Strings(a.rg, "raw", &a.b.raws); err != nil {
		return err
	}
	if len(a.b.raws.Index) != len(a.owner) {
		return fmt.Errorf("compare: attribute columns of unequal length")
	}
	a.raws = &a.b.raws
	return nil
}

// readAttrs reads row group rg of an attributes file into b's buffers; the value columns only
// when some row has their type, the plain strings only with plain (else on first use,
// loadRaws).
func readAttrs(c *block.ColumnReader, rg int, b *bufs, plain bool) (*attrRows, error) {
	a := &b.attrs
	*a = attrRows{owner: a.owner[:0], types: a.types[:0], ints: a.ints[:0], dbls: a.dbls[:0], bools: a.bools[:0],
		keys: &b.keys, c: c, rg: rg, b: b}
	var err error
	if a.owner, err = c.Int64s(rg, "owner", a.owner); err != nil {
		return nil, err
	}
	if err = c.Strings(rg, "key", a.keys); err != nil {
		return nil, err
	}
	if a.types, err = c.Int32s(rg, "type", a.types); err != nil {
		return nil, err
	}
	var has [block.ValueStringPlainNew + 1]bool
	for _, t := range a.types {
		if t >= 0 && t <= block.ValueStringPlainNew {
			has[t] = true
		}
	}
	if has[block.ValueString] {
		a.strs = &b.strs
		if err = c.Strings(rg, "str", a.strs); err != nil {
			return nil, err
		}
	}
	if has[block.ValueInt] {
		if a.ints, err = c.Int64s(rg, "int", a.ints); err != nil {
			return nil, err
		}
	}
	if has[block.ValueDouble] {
		if a.dbls, err = c.Doubles(rg, "double", a.dbls); err != nil {
			return nil, err
		}
	}
	if has[block.ValueBool] {
		if a.bools, err = c.Bools(rg, "bool", a.bools); err != nil {
			return nil, err
		}
	}
	if has[block.ValueRaw] || plain && (has[block.ValueStringPlain] || has[block.ValueStringPlainNew]) {
		if err := a.loadRaws(); err != nil {
			return nil, err
		}
	}
	n := len(a.owner)
	if len(a.keys.Index) != n || len(a.types) != n || (a.strs != nil && len(a.strs.Index) != n) || (has[block.ValueInt] && len(a.ints) != n) ||
		(has[block.ValueDouble] && len(a.dbls) != n) || (has[block.ValueBool] && len(a.bools) != n) || (a.raws != nil && len(a.raws.Index) != n) {
		return nil, fmt.Errorf("compare: attribute columns of unequal length")
	}
	return a, nil
}

// value is row i's value as the engine reads it. A plain string must be loaded (loadRaws).
func (a *attrRows) value(i int) search.Value {
	switch a.types[i] {
	case block.ValueString:
		return search.Value{Type: "string", String: a.strs.String(a.strs.Index[i])}
	case block.ValueStringPlain, block.ValueStringPlainNew:
		return search.Value{Type: "string", String: a.raws.String(a.raws.Index[i])}
	case block.ValueInt:
		return search.Value{Type: "int", Int: a.ints[i]}
	case block.ValueDouble:
		return search.Value{Type: "float", Float: a.dbls[i]}
	case block.ValueBool:
		return search.Value{Type: "bool", Bool: a.bools[i]}
	case block.ValueRaw:
		return search.RowValue(block.ValueRaw, "", 0, 0, false, a.raws.Bytes(a.raws.Index[i]))
	}
	return search.Value{}
}

// evaluate marks the spans of bs that f keeps (in range or not).
func (f *colFilter) evaluate(bs *blockSpans, out []bool) ([]bool, error) {
	out = slices.Grow(out[:0], bs.n)[:bs.n]
	if f.root == nil {
		for i := range out {
			out[i] = true
		}
		return out, nil
	}
	// Each leaf's answer per span. Span attributes: the first row of the key on the span
	// decides, as the engine looks attributes up.
	vals := make([][]uint8, len(f.leaves))
	var has [][]bool // fAnyAttr: the span has the key itself
	for li, l := range f.leaves {
		v := make([]uint8, bs.n)
		vals[li] = v
		switch l.field {
		case fName:
			byName := make([]uint8, len(bs.names))
			for id, s := range bs.names {
				byName[id] = l.match(search.Value{Type: "string", String: s})
			}
			for i, id := range bs.name {
				v[i] = byName[id]
			}
		case fStatus:
			var byCode [4]uint8
			for c := range byCode {
				byCode[c] = l.match(search.Value{Type: "status", String: statusName(int32(c))})
			}
			for i, c := range bs.status {
				v[i] = byCode[statusSlot(c)]
			}
		case fKind:
			var byKind [7]uint8
			for k := range byKind {
				byKind[k] = l.match(search.Value{Type: "kind", String: kindName(int32(k) - 1)})
			}
			for i, k := range bs.kind {
				v[i] = byKind[kindSlot(k)]
			}
		case fDuration:
			st := l.b.RHS.(traceql.Static)
			if !l.presence && (st.Type == traceql.TypeDuration || st.Type == traceql.TypeInt) {
				x := st.Int
				if st.Type == traceql.TypeDuration {
					x = int64(st.Dur)
				}
				for i, d := range bs.dur {
					v[i] = boolTri(cmpHolds(l.b.Op, cmp.Compare(d, x)))
				}
			} else {
				for i, d := range bs.dur {
					v[i] = l.match(search.Value{Type: "duration", Int: d})
				}
			}
		}
		if l.field == fResAttr || l.field == fAnyAttr {
			byGroup := make([]uint8, len(bs.groups))
			for g := range bs.groups {
				byGroup[g] = l.missing()
				for _, a := range bs.resource(int32(g)) {
					if a.key == l.key {
						byGroup[g] = l.match(a.v)
						break
					}
				}
			}
			for i, g := range bs.group {
				v[i] = byGroup[g]
			}
		}
		if l.field == fSpanAttr {
			for i := range v {
				v[i] = l.missing()
			}
		}
		if l.field == fAnyAttr {
			if has == nil {
				has = make([][]bool, len(f.leaves))
			}
			has[li] = make([]bool, bs.n)
		}
	}
	if f.readsSpanAttrs() {
		if err := f.evaluateAttrs(bs, vals, has); err != nil {
			return nil, err
		}
	}
	for i := range out {
		out[i] = f.eval(f.root, vals, i) == tTrue
	}
	return out, nil
}

// evaluateAttrs answers the span attribute leaves from the attribute columns.
func (f *colFilter) evaluateAttrs(bs *blockSpans, vals [][]uint8, has [][]bool) error {
	byKey := map[string][]int{}
	for li, l := range f.leaves {
		if l.field == fSpanAttr || l.field == fAnyAttr {
			byKey[l.key] = append(byKey[l.key], li)
		}
	}
	decided := make([][]bool, len(f.leaves)) // the span's first row of the key was seen
	ac := bs.r.Columns(block.FileSpanAttrs)
	for rg := range ac.RowGroups() {
		// Filters compare values, so plain strings are read too.
		a, err := readAttrs(ac, rg, bs.buf, true)
		if err != nil {
			return err
		}
		// The leaves each key entry feeds, and per string entry each leaf's answer.
		leavesOf := make([][]int, a.keys.Entries())
		for e := range leavesOf {
			leavesOf[e] = byKey[string(a.keys.Bytes(int32(e)))]
		}
		strAns := map[[2]int32]uint8{}
		for i, owner := range a.owner {
			ls := leavesOf[a.keys.Index[i]]
			if len(ls) == 0 {
				continue
			}
			if owner < 0 || owner >= int64(bs.n) {
				return fmt.Errorf("compare: block %s: attribute owner %d out of range", bs.r.Meta().ID, owner)
			}
			for _, li := range ls {
				if decided[li] == nil {
					decided[li] = make([]bool, bs.n)
				}
				if decided[li][owner] {
					continue
				}
				decided[li][owner] = true
				l := f.leaves[li]
				var ans uint8
				if a.types[i] == block.ValueString && a.strs.Index[i] < a.strs.Dict {
					k := [2]int32{int32(li), a.strs.Index[i]}
					var ok bool
					if ans, ok = strAns[k]; !ok {
						ans = l.match(a.value(i))
						strAns[k] = ans
					}
				} else {
					ans = l.match(a.value(i))
				}
				vals[li][owner] = ans
				if l.field == fAnyAttr {
					has[li][owner] = true
				}
			}
		}
	}
	// An unscoped attribute the span lacks is its resource's: vals already hold that.
	return nil
}

func (f *colFilter) eval(n *fnode, vals [][]uint8, i int) uint8 {
	switch n.op {
	case traceql.OpAnd:
		if f.eval(n.l, vals, i) != tTrue {
			return tFalse
		}
		return boolTri(f.eval(n.r, vals, i) == tTrue)
	case traceql.OpOr:
		if f.eval(n.l, vals, i) == tTrue {
			return tTrue
		}
		return boolTri(f.eval(n.r, vals, i) == tTrue)
	case traceql.OpNot:
		switch f.eval(n.l, vals, i) {
		case tTrue:
			return tFalse
		case tFalse:
			return tTrue
		}
		return tNil
	}
	return vals[n.leaf][i]
}

func cmpHolds(op traceql.Operator, c int) bool {
	switch op {
	case traceql.OpEq:
		return c == 0
	case traceql.OpNeq:
		return c != 0
	case traceql.OpLt:
		return c < 0
	case traceql.OpLte:
		return c <= 0
	case traceql.OpGt:
		return c > 0
	case traceql.OpGte:
		return c >= 0
	}
	return false
}

// Status and kind slots as the engine names them: OTLP codes outside the known ones read as
// unset and unspecified.
func statusSlot(code int32) int {
	switch code {
	case 1:
		return 2
	case 2:
		return 3
	}
	return 1
}

var statusNames = [4]string{"", "unset", "ok", "error"}
var kindNames = [7]string{"", "unspecified", "internal", "server", "client", "producer", "consumer"}

func statusName(slot int32) string { return statusNames[slot] }

func kindSlot(k int32) int {
	if k < 0 || k > 5 {
		return 1
	}
	return int(k) + 1
}

func kindName(otlp int32) string { return kindNames[kindSlot(otlp)] }

// Which side a span of a block counts on.
const (
	sideNone uint8 = iota
	sideSel
	sideBase
)

// blockResult is one block's counts.
type blockResult struct {
	sel, base *side
	names     []string // span names of the selected spans
	// marks are the selection filter's answers per span, one bit each, from the first pass
	// (default baseline), so that the counting pass does not evaluate the filter again.
	marks []uint64
	m     search.Metrics
	err   error
}

// forBlocks runs fn on each block, on every core, and returns the results in block order.
func forBlocks(ctx context.Context, blocks []hooked, fn func(k int, h hooked, b *bufs) blockResult) []blockResult {
	out := make([]blockResult, len(blocks))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(blocks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := getBufs()
			defer putBufs(b)
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= len(blocks) {
					return
				}
				if err := ctx.Err(); err != nil {
					out[k].err = err
					continue
				}
				out[k] = fn(k, blocks[k], b)
			}
		}()
	}
	wg.Wait()
	return out
}

type hooked struct {
	r    *block.Reader
	skip map[[16]byte]bool
}

// compareByColumns is Compare over block columns (see the top of this file).
func compareByColumns(ctx context.Context, e *search.Engine, req Request, selF, baseF *colFilter) (*Result, error) {
	sel := newSide()
	baseByName := map[string]*side{}
	selNames := map[string]bool{}
	var blocks []hooked
	defer func() {
		for _, h := range blocks {
			h.r.Release()
		}
	}()
	// The head and split traces, span by span; with the default baseline every name's share is
	// kept until the blocks have told which names the selection has.
	c := &spanCounter{sel: sel, baseByName: baseByName, selNames: selNames, given: req.Baseline != nil, all: true}
	m, err := e.ScanSpans(ctx, search.SpanScanRequest{Selection: req.Selection, Baseline: req.Baseline, Start: req.Start, End: req.End,
		Blocks: func(b *block.Reader, skip map[[16]byte]bool) {
			b.Retain()
			blocks = append(blocks, hooked{b, skip})
		}}, c.count)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	sel.addResources()
	for _, sd := range baseByName {
		sd.addResources()
	}
	lo, hi := req.Start.UnixNano(), req.End.UnixNano()
	var minStart, maxStart int64
	if req.Start.IsZero() {
		lo = 0
	} else {
		minStart = req.Start.Add(-time.Hour).UnixNano()
	}
	if req.End.IsZero() {
		hi = 1<<63 - 1
	} else {
		maxStart = hi
	}
	var inSel map[string]bool
	var selMarks [][]uint64
	if req.Baseline == nil {
		// The selection's span names, from every block, before any baseline span is counted.
		res := forBlocks(ctx, blocks, func(_ int, h hooked, b *bufs) blockResult {
			bs, err := loadSpans(h.r, h.skip, lo, hi, minStart, maxStart, b, false, selF)
			if err != nil {
				return blockResult{err: err}
			}
			marks, err := selF.evaluate(bs, b.marks[0])
			b.marks[0] = marks
			if err != nil {
				return blockResult{err: err}
			}
			seen := make([]bool, len(bs.names))
			r := blockResult{marks: make([]uint64, (len(marks)+63)/64)}
			for i, ok := range marks {
				if ok {
					r.marks[i/64] |= 1 << (i % 64)
				}
				if ok && bs.in[i] && !seen[bs.name[i]] {
					seen[bs.name[i]] = true
					r.names = append(r.names, bs.names[bs.name[i]])
				}
			}
			return r
		})
		selMarks = make([][]uint64, len(blocks))
		inSel = cloneSet(selNames)
		for _, r := range res {
			if r.err != nil && !block.SkipDamaged(ctx, r.err) {
				return nil, fmt.Errorf("compare: %w", r.err)
			}
			for _, n := range r.names {
				inSel[n] = true
			}
		}
		for k, r := range res {
			selMarks[k] = r.marks
		}
	}
	res := forBlocks(ctx, blocks, func(k int, h hooked, b *bufs) blockResult {
		var marks []uint64
		if selMarks != nil {
			marks = selMarks[k]
		}
		return countBlock(h, b, selF, baseF, inSel, marks, lo, hi, minStart, maxStart)
	})
	base := newSide()
	for _, r := range res {
		if r.err != nil {
			if block.SkipDamaged(ctx, r.err) {
				continue
			}
			return nil, fmt.Errorf("compare: %w", r.err)
		}
		sel.merge(r.sel)
		base.merge(r.base)
		m = addMetrics(m, r.m)
	}
	for name, sd := range baseByName {
		if req.Baseline != nil || inSel[name] {
			base.merge(sd)
		}
	}
	out := rank(sel, base, testedKeys(req.Selection), cmp.Or(req.Limit, 20))
	out.Metrics = m
	return out, nil
}

func cloneSet(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// countBlock counts one block's selection and baseline spans from its columns; cached, when
// not nil, is the selection filter's answer per span from the first pass.
func countBlock(h hooked, b *bufs, selF, baseF *colFilter, inSel map[string]bool, cached []uint64, lo, hi, minStart, maxStart int64) blockResult {
	bs, err := loadSpans(h.r, h.skip, lo, hi, minStart, maxStart, b, true, nil)
	if err != nil {
		return blockResult{err: err}
	}
	var selMarks []bool
	if cached != nil && len(cached) == (bs.n+63)/64 {
		selMarks = slices.Grow(b.marks[0][:0], bs.n)[:bs.n]
		for i := range selMarks {
			selMarks[i] = cached[i/64]&(1<<(i%64)) != 0
		}
	} else if selMarks, err = selF.evaluate(bs, b.marks[0]); err != nil {
		return blockResult{err: err}
	}
	b.marks[0] = selMarks
	var baseMarks []bool
	if baseF != nil {
		if baseMarks, err = baseF.evaluate(bs, b.marks[1]); err != nil {
			return blockResult{err: err}
		}
		b.marks[1] = baseMarks
	}
	nameIn := make([]bool, len(bs.names))
	for id, n := range bs.names {
		nameIn[id] = baseF != nil || inSel[n]
	}
	sideOf := slices.Grow(b.sideOf[:0], bs.n)[:bs.n]
	b.sideOf = sideOf
	r := blockResult{sel: newSide(), base: newSide()}
	sides := [3]*side{nil, r.sel, r.base}
	for i := range sideOf {
		sideOf[i] = sideNone
		switch {
		case !bs.in[i]:
		case selMarks[i]:
			sideOf[i] = sideSel
		case (baseMarks == nil || baseMarks[i]) && nameIn[bs.name[i]]:
			sideOf[i] = sideBase
		}
	}
	r.m.InspectedTraces = bs.traces
	r.m.TotalBlocks = 1
	ex := &exampler{}
	if err := countSpans(bs, sideOf, sides, ex); err != nil {
		return blockResult{err: err}
	}
	if err := countAttrs(bs, sideOf, sides, ex); err != nil {
		return blockResult{err: err}
	}
	if err := countEvents(bs, sideOf, sides, ex); err != nil {
		return blockResult{err: err}
	}
	if ex.err != nil {
		return blockResult{err: ex.err}
	}
	for _, in := range bs.in {
		if in {
			r.m.InspectedSpans++ // read, whichever side it counts on
		}
	}
	r.m.InspectedBytes = bs.bytes
	return r
}

// exampler keeps up to a few example traces of a counted value, for the selection only: the
// answer lists no baseline examples.
type exampler struct {
	err error
}

// id is the trace ID of a span; a failure to read it is kept for the block's answer.
func (x *exampler) id(bs *blockSpans, span int) ([16]byte, bool) {
	id, err := bs.traceID(bs.traceRow[span])
	if err != nil {
		x.err = err
		return id, false
	}
	return id, true
}

func (x *exampler) add(ex *[examples][16]byte, n *uint8, bs *blockSpans, span int) {
	if *n >= examples {
		return
	}
	id, ok := x.id(bs, span)
	if !ok {
		return
	}
	for _, have := range ex[:*n] {
		if have == id {
			return
		}
	}
	ex[*n] = id
	*n++
}

// counted is a value's count on one side of a block, with its examples, and for a pair the
// attribute row it was first seen in (where a plain string's value is read).
type counted struct {
	n   int64
	ex  [examples][16]byte
	nex uint8
	row int32
}

func (c *counted) add(x *exampler, bs *blockSpans, span int, sd uint8) {
	c.n++
	if sd == sideSel {
		x.add(&c.ex, &c.nex, bs, span)
	}
}

// countSpans counts the intrinsics, durations and resources of the block's spans.
func countSpans(bs *blockSpans, sideOf []uint8, sides [3]*side, x *exampler) error {
	var names [3][]counted
	var status [3][4]counted
	var kinds [3][7]counted
	var groups [3][]counted
	for sd := sideSel; sd <= sideBase; sd++ {
		names[sd] = make([]counted, len(bs.names))
		groups[sd] = make([]counted, len(bs.groups))
	}
	var durEx [3]counted
	for i, sd := range sideOf {
		if sd == sideNone {
			continue
		}
		s := sides[sd]
		s.spans++
		names[sd][bs.name[i]].add(x, bs, i, sd)
		status[sd][statusSlot(bs.status[i])].add(x, bs, i, sd)
		kinds[sd][kindSlot(bs.kind[i])].add(x, bs, i, sd)
		groups[sd][bs.group[i]].add(x, bs, i, sd)
		durEx[sd].add(x, bs, i, sd)
		k := s.key(keyDuration)
		k.numSeen++
		k.hist.add(float64(bs.dur[i]), 1)
	}
	for sd := sideSel; sd <= sideBase; sd++ {
		s := sides[sd]
		for _, id := range durEx[sd].ex[:durEx[sd].nex] {
			addExample(&s.key(keyDuration).examples, id)
		}
		for id, c := range names[sd] {
			if c.n > 0 {
				s.addN(keyName, search.Value{Type: "string", String: bs.names[id]}, c.n, c.ex[:c.nex])
			}
		}
		for slot, c := range status[sd] {
			if c.n > 0 {
				s.addN(keyStatus, search.Value{Type: "status", String: statusNames[slot]}, c.n, c.ex[:c.nex])
			}
		}
		for slot, c := range kinds[sd] {
			if c.n > 0 {
				s.addN(keyKind, search.Value{Type: "kind", String: kindNames[slot]}, c.n, c.ex[:c.nex])
			}
		}
		for g, c := range groups[sd] {
			if c.n == 0 {
				continue
			}
			for _, a := range bs.resource(int32(g)) {
				if a.v.Type != "" && a.v.Type != "array" {
					s.addN(attrKey{scopeResource, a.key}, a.v, c.n, c.ex[:c.nex])
				}
			}
		}
	}
	return nil
}

// pairKey is a (key, value) pair of an attribute row group, by entries and bits.
type pairKey struct {
	side uint8
	typ  uint8
	key  int32
	v    uint64
}

// attrCounter counts one row group of an attributes file.
type attrCounter struct {
	bs    *blockSpans
	x     *exampler
	a     *attrRows
	sides [3]*side
	scope uint8
	// per key entry and side: the side's accumulator (nil until used) and how many distinct
	// values the row group has given it
	acc      [3][]*keyAcc
	distinct [3][]int
	// plainNew counts the plain strings marked new in the row group per key entry and side:
	// they are distinct values among themselves, so past maxDistinct the key is an identifier
	// for certain, and no string of it need be read. Until then the plain rows wait in
	// pending, and flush reads their strings for the keys still counted.
	plainNew [3][]int
	pending  []pendingRow
	// plain strings by content, to a number for pairKey
	plainIDs map[string]int32
	// string values by dictionary entry: the key entry that owns the entry (-1 none yet) and
	// the counts per side; an entry under a second key goes to pairs
	strKey   []int32
	strCount [3][]counted
	pairs    map[pairKey]*counted
	// plain strings (past the dictionary) by content, to one representative entry
	plain map[string]int32
}

func newAttrCounter(bs *blockSpans, x *exampler, a *attrRows, sides [3]*side, scope uint8) *attrCounter {
	c := &attrCounter{bs: bs, x: x, a: a, sides: sides, scope: scope, pairs: map[pairKey]*counted{}}
	nk := a.keys.Entries()
	for sd := sideSel; sd <= sideBase; sd++ {
		c.acc[sd] = make([]*keyAcc, nk)
		c.distinct[sd] = make([]int, nk)
		c.plainNew[sd] = make([]int, nk)
	}
	if a.strs != nil {
		c.strKey = make([]int32, a.strs.Dict)
		for i := range c.strKey {
			c.strKey[i] = -1
		}
		for sd := sideSel; sd <= sideBase; sd++ {
			c.strCount[sd] = make([]counted, a.strs.Dict)
		}
	}
	return c
}

// keyAcc is the accumulator of key entry ke on side sd.
func (c *attrCounter) keyAcc(sd uint8, ke int32) *keyAcc {
	k := c.acc[sd][ke]
	if k == nil {
		k = c.sides[sd].key(attrKey{c.scope, c.a.keys.String(ke)})
		c.acc[sd][ke] = k
	}
	return k
}

// newValue notes a distinct value of key entry ke on side sd; past three times maxDistinct in
// one row group the key is an identifier: a value may be counted up to three times, as a
// dictionary entry, as an entry past the dictionary (written plainly once it was full) and as
// a plain string (once its key passed block.MaxIndexValues values).
func (c *attrCounter) newValue(sd uint8, ke int32, k *keyAcc) {
	c.distinct[sd][ke]++
	if c.distinct[sd][ke] > 3*maxDistinct {
		k.values, k.highCard = nil, true
	}
}

// row counts attribute row i for span on side sd.
func (c *attrCounter) row(i int, span int, sd uint8) {
	a := c.a
	ke := a.keys.Index[i]
	var k *keyAcc
	if t := a.types[i]; t >= block.ValueString && t != block.ValueRaw && t <= block.ValueStringPlainNew {
		// A raw value may be one the engine does not count (an array, a map): its key is
		// made only if it is counted, below.
		k = c.keyAcc(sd, ke)
	}
	switch a.types[i] {
	case block.ValueString:
		if k.values == nil {
			return
		}
		e := a.strs.Index[i]
		if e >= a.strs.Dict {
			if c.plain == nil {
				c.plain = map[string]int32{}
			}
			b := a.strs.Bytes(e)
			if first, ok := c.plain[string(b)]; ok {
				e = first
			} else {
				c.plain[string(b)] = e
			}
			c.pair(pairKey{sd, block.ValueString, ke, uint64(e)}, k, span, i)
			return
		}
		switch c.strKey[e] {
		case -1:
			c.strKey[e] = ke
		case ke:
		default:
			c.pair(pairKey{sd, block.ValueString, ke, uint64(e)}, k, span, i)
			return
		}
		cnt := &c.strCount[sd][e]
		if cnt.n == 0 {
			c.newValue(sd, ke, k)
		}
		cnt.add(c.x, c.bs, span, sd)
	case block.ValueStringPlain, block.ValueStringPlainNew:
		// Counted once the row group is read, if the key is still counted then (flush).
		if k.values == nil {
			return
		}
		if a.types[i] == block.ValueStringPlainNew {
			if c.plainNew[sd][ke]++; c.plainNew[sd][ke] > maxDistinct {
				k.values, k.highCard = nil, true
				return
			}
		}
		c.pending = append(c.pending, pendingRow{side: sd, key: ke, row: int32(i), span: int32(span)})
	case block.ValueInt:
		n := a.ints[i]
		k.numSeen++
		k.hist.add(float64(n), 1)
		c.numExample(k, span, sd)
		if k.values != nil {
			c.pair(pairKey{sd, block.ValueInt, ke, uint64(n)}, k, span, i)
		}
	case block.ValueDouble:
		k.numSeen++
		k.hist.add(a.dbls[i], 1)
		c.numExample(k, span, sd)
	case block.ValueBool:
		if k.values != nil {
			var bit uint64
			if a.bools[i] {
				bit = 1
			}
			c.pair(pairKey{sd, block.ValueBool, ke, bit}, k, span, i)
		}
	case block.ValueRaw:
		v := a.value(i)
		if v.Type == "" || v.Type == "array" {
			return
		}
		var ex [][16]byte
		if sd == sideSel {
			if id, ok := c.x.id(c.bs, span); ok {
				ex = [][16]byte{id}
			}
		}
		c.sides[sd].addN(attrKey{c.scope, a.keys.String(ke)}, v, 1, ex)
	}
}

// numExample keeps a selection span's trace as an example of numeric key k.
func (c *attrCounter) numExample(k *keyAcc, span int, sd uint8) {
	if sd != sideSel || len(k.examples) >= examples {
		return
	}
	if id, ok := c.x.id(c.bs, span); ok {
		addExample(&k.examples, id)
	}
}

// pair counts the value of attribute row i, of span, under pk.
func (c *attrCounter) pair(pk pairKey, k *keyAcc, span, i int) {
	p := c.pairs[pk]
	if p == nil {
		p = &counted{row: int32(i)}
		c.pairs[pk] = p
		c.newValue(pk.side, pk.key, k)
	}
	p.add(c.x, c.bs, span, pk.side)
}

// pendingRow is a plain string row waiting for flush.
type pendingRow struct {
	side      uint8
	key       int32
	row, span int32
}

// flush hands the row group's counts to the sides, building a string per counted pair.
func (c *attrCounter) flush() error {
	a := c.a
	for _, p := range c.pending {
		k := c.acc[p.side][p.key]
		if k.values == nil {
			continue
		}
		if err := a.loadRaws(); err != nil {
			return err
		}
		if c.plainIDs == nil {
			c.plainIDs = map[string]int32{}
		}
		b := a.raws.Bytes(a.raws.Index[p.row])
		id, ok := c.plainIDs[string(b)]
		if !ok {
			id = int32(len(c.plainIDs))
			c.plainIDs[string(b)] = id
		}
		c.pair(pairKey{p.side, block.ValueStringPlain, p.key, uint64(id)}, k, int(p.span), int(p.row))
	}
	for sd := sideSel; sd <= sideBase; sd++ {
		for e, cnt := range c.strCount[sd] {
			if cnt.n == 0 {
				continue
			}
			k := c.acc[sd][c.strKey[e]]
			if k.values == nil {
				continue
			}
			v := search.Value{Type: "string", String: a.strs.String(int32(e))}
			k.addValue(keyOf(v), v, cnt.n, cnt.ex[:cnt.nex])
		}
	}
	for pk, cnt := range c.pairs {
		k := c.acc[pk.side][pk.key]
		if k.values == nil {
			continue
		}
		var v search.Value
		switch pk.typ {
		case block.ValueString:
			v = search.Value{Type: "string", String: a.strs.String(int32(pk.v))}
		case block.ValueStringPlain:
			v = search.Value{Type: "string", String: a.raws.String(a.raws.Index[cnt.row])}
		case block.ValueInt:
			v = search.Value{Type: "int", Int: int64(pk.v)}
		case block.ValueBool:
			v = search.Value{Type: "bool", Bool: pk.v == 1}
		}
		k.addValue(keyOf(v), v, cnt.n, cnt.ex[:cnt.nex])
	}
	return nil
}

// countAttrs counts the span attributes of the block's counted spans.
func countAttrs(bs *blockSpans, sideOf []uint8, sides [3]*side, x *exampler) error {
	ac := bs.r.Columns(block.FileSpanAttrs)
	defer func() { bs.bytes += ac.Bytes() }()
	for rg := range ac.RowGroups() {
		a, err := readAttrs(ac, rg, bs.buf, false)
		if err != nil {
			return err
		}
		c := newAttrCounter(bs, x, a, sides, scopeSpan)
		for i, owner := range a.owner {
			if owner < 0 || owner >= int64(bs.n) {
				return fmt.Errorf("compare: block %s: attribute owner %d out of range", bs.r.Meta().ID, owner)
			}
			if sd := sideOf[owner]; sd != sideNone {
				c.row(i, int(owner), sd)
			}
		}
		if err := c.flush(); err != nil {
			return err
		}
	}
	return nil
}

// countEvents counts event names and event attributes, each value once per span however many
// of its events have it.
func countEvents(bs *blockSpans, sideOf []uint8, sides [3]*side, x *exampler) error {
	if bs.r.Meta().Events == 0 {
		return nil
	}
	ec := bs.r.Columns(block.FileEvents)
	defer func() { bs.bytes += ec.Bytes() }()
	var spanOf []int64
	lastSpan := int64(-1)
	var seen []string
	for rg := range ec.RowGroups() {
		owners, err := ec.Int64s(rg, "span", bs.buf.offs[:0])
		if err != nil {
			return err
		}
		bs.buf.offs = owners
		names := &bs.buf.names
		if err := ec.Strings(rg, "name", names); err != nil {
			return err
		}
		if len(names.Index) != len(owners) {
			return fmt.Errorf("compare: block %s: event columns of unequal length", bs.r.Meta().ID)
		}
		for i, sp := range owners {
			if sp < 0 || sp >= int64(bs.n) {
				return fmt.Errorf("compare: block %s: event span %d out of range", bs.r.Meta().ID, sp)
			}
			spanOf = append(spanOf, sp)
			sd := sideOf[sp]
			if sd == sideNone {
				continue
			}
			if sp != lastSpan {
				lastSpan, seen = sp, seen[:0]
			}
			name := names.String(names.Index[i])
			if slices.Contains(seen, name) {
				continue
			}
			seen = append(seen, name)
			var ex [][16]byte
			if sd == sideSel {
				id, err := bs.traceID(bs.traceRow[sp])
				if err != nil {
					return err
				}
				ex = [][16]byte{id}
			}
			sides[sd].addN(attrKey{scopeEventName, "name"}, search.Value{Type: "string", String: name}, 1, ex)
		}
	}
	if bs.r.Meta().EventAttrs == 0 {
		return nil
	}
	eac := bs.r.Columns(block.FileEventAttrs)
	defer func() { bs.bytes += eac.Bytes() }()
	lastSpan = -1
	type seenVal struct {
		key string
		v   valueKey
	}
	var seenVals []seenVal
	for rg := range eac.RowGroups() {
		a, err := readAttrs(eac, rg, bs.buf, true)
		if err != nil {
			return err
		}
		for i, ev := range a.owner {
			if ev < 0 || ev >= int64(len(spanOf)) {
				return fmt.Errorf("compare: block %s: event attribute owner %d out of range", bs.r.Meta().ID, ev)
			}
			sp := spanOf[ev]
			sd := sideOf[sp]
			if sd == sideNone {
				continue
			}
			if sp != lastSpan {
				lastSpan, seenVals = sp, seenVals[:0]
			}
			v := a.value(i)
			if v.Type == "" || v.Type == "array" {
				continue
			}
			sv := seenVal{a.keys.String(a.keys.Index[i]), keyOf(v)}
			if slices.Contains(seenVals, sv) {
				continue
			}
			seenVals = append(seenVals, sv)
			var ex [][16]byte
			if sd == sideSel {
				id, err := bs.traceID(bs.traceRow[sp])
				if err != nil {
					return err
				}
				ex = [][16]byte{id}
			}
			sides[sd].addN(attrKey{scopeEvent, sv.key}, v, 1, ex)
		}
	}
	return nil
}
