package search

import (
	"encoding/hex"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// spanset is a set of spans of one trace, as span indexes in increasing order, with the by()
// labels that produced it.
type spanset struct {
	spans []int32
	by    []label
}

type label struct {
	key string // as Tempo writes it: "by(resource.service.name)"
	val value
}

// evalPipeline runs every stage of q over t and returns the non-empty spansets left.
func evalPipeline(q *traceql.Query, t *trace) []spanset {
	all := make([]int32, len(t.spans))
	for i := range all {
		all[i] = int32(i)
	}
	return evalStages(q.Stages, t, all)
}

// evalStages runs a pipeline over the spans of universe.
func evalStages(stages []traceql.Stage, t *trace, universe []int32) []spanset {
	first := evalSpanset(stages[0].(traceql.SpansetExpr), t, universe)
	if len(first) == 0 {
		return nil
	}
	sets := []spanset{{spans: first}}
	for _, st := range stages[1:] {
		var next []spanset
		switch st := st.(type) {
		case traceql.SpansetExpr:
			for _, ss := range sets {
				if spans := evalSpanset(st, t, ss.spans); len(spans) > 0 {
					next = append(next, spanset{spans: spans, by: ss.by})
				}
			}
		case *traceql.ScalarFilter:
			for _, ss := range sets {
				if agg, ok := aggregate(st.Agg, t, ss.spans); ok && compare(st.Op, agg, staticValue(st.Value), nil) {
					next = append(next, ss)
				}
			}
		case *traceql.GroupBy:
			for _, ss := range sets {
				next = append(next, groupBy(st.Fields, t, ss)...)
			}
		case *traceql.Select:
			next = sets // select only adds fields to the output, which the caller reads from q
		case *traceql.Coalesce:
			var merged []int32
			for _, ss := range sets {
				merged = union(merged, ss.spans)
			}
			next = []spanset{{spans: merged}}
		}
		sets = next
		if len(sets) == 0 {
			return nil
		}
	}
	return sets
}

// evalSpanset returns the spans of universe that e selects, in increasing order.
func evalSpanset(e traceql.SpansetExpr, t *trace, universe []int32) []int32 {
	switch e := e.(type) {
	case *traceql.SpansetFilter:
		if e.Cond == nil {
			return slices.Clone(universe)
		}
		var out []int32
		for _, i := range universe {
			if v := evalField(e.Cond, t, &t.spans[i]); v.k == kBool && v.b {
				out = append(out, i)
			}
		}
		return out
	case *traceql.Pipeline:
		var out []int32
		for _, ss := range evalStages(e.Stages, t, universe) {
			out = union(out, ss.spans)
		}
		return out
	case *traceql.SpansetOp:
		lhs := evalSpanset(e.LHS, t, universe)
		if e.Op == traceql.SpansetAnd && len(lhs) == 0 {
			return nil
		}
		rhs := evalSpanset(e.RHS, t, universe)
		switch e.Op {
		case traceql.SpansetAnd:
			if len(rhs) == 0 {
				return nil
			}
			return union(lhs, rhs)
		case traceql.SpansetOr:
			return union(lhs, rhs)
		}
		return structural(e.Op, t, lhs, rhs)
	}
	return nil
}

func union(a, b []int32) []int32 {
	out := make([]int32, 0, len(a)+len(b))
	out = append(append(out, a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// structural relates lhs and rhs spans by their places in the span tree.
func structural(op traceql.SpansetOperator, t *trace, lhs, rhs []int32) []int32 {
	inL := make([]bool, len(t.spans))
	for _, i := range lhs {
		inL[i] = true
	}
	inR := make([]bool, len(t.spans))
	for _, i := range rhs {
		inR[i] = true
	}
	// related(y) reports whether rhs span y stands in the relation to some lhs span, and marks
	// those lhs spans in usedL for the union forms.
	usedL := make([]bool, len(t.spans))
	related := func(y int32) bool {
		s := t.spans
		found := false
		switch op {
		case traceql.Descendant, traceql.NotDescendant, traceql.UnionDescendant:
			for p, hops := s[y].parent, 0; p >= 0 && hops < len(s); p, hops = s[p].parent, hops+1 {
				if inL[p] {
					found, usedL[p] = true, true
				}
			}
		case traceql.Child, traceql.NotChild, traceql.UnionChild:
			if p := s[y].parent; p >= 0 && inL[p] {
				found, usedL[p] = true, true
			}
		case traceql.Sibling, traceql.NotSibling, traceql.UnionSibling:
			if s[y].parent < 0 {
				return false
			}
			for _, x := range lhs {
				if x != y && s[x].parent == s[y].parent {
					found, usedL[x] = true, true
				}
			}
		case traceql.Ancestor, traceql.NotAncestor, traceql.UnionAncestor:
			for _, x := range lhs {
				for p, hops := s[x].parent, 0; p >= 0 && hops < len(s); p, hops = s[p].parent, hops+1 {
					if p == y {
						found, usedL[x] = true, true
						break
					}
				}
			}
		case traceql.Parent, traceql.NotParent, traceql.UnionParent:
			for _, x := range lhs {
				if s[x].parent == y {
					found, usedL[x] = true, true
				}
			}
		}
		return found
	}
	var out []int32
	negated := op >= traceql.NotDescendant && op <= traceql.NotParent
	for _, y := range rhs {
		if related(y) != negated {
			out = append(out, y)
		}
	}
	if op >= traceql.UnionDescendant && op <= traceql.UnionParent {
		for i, u := range usedL {
			if u {
				out = append(out, int32(i))
			}
		}
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out
}

func aggregate(a traceql.Aggregate, t *trace, spans []int32) (value, bool) {
	if a.Func == traceql.AggCount {
		return value{k: kInt, i: int64(len(spans))}, true
	}
	var sum, lo, hi float64
	n := 0
	isDur := false
	for _, i := range spans {
		v := evalField(a.Field, t, &t.spans[i])
		f, ok := v.number()
		if !ok {
			continue
		}
		isDur = isDur || v.k == kDuration
		if n == 0 {
			lo, hi = f, f
		}
		sum += f
		lo, hi = min(lo, f), max(hi, f)
		n++
	}
	if n == 0 {
		return value{}, false
	}
	var r float64
	switch a.Func {
	case traceql.AggAvg:
		r = sum / float64(n)
	case traceql.AggMin:
		r = lo
	case traceql.AggMax:
		r = hi
	case traceql.AggSum:
		r = sum
	}
	if isDur {
		return value{k: kDuration, i: int64(r)}, true
	}
	return value{k: kFloat, f: r}, true
}

func groupBy(fields []traceql.FieldExpr, t *trace, ss spanset) []spanset {
	var order []string
	groups := map[string]*spanset{}
	for _, i := range ss.spans {
		var key strings.Builder
		labels := slices.Clone(ss.by)
		for _, f := range fields {
			v := evalField(f, t, &t.spans[i])
			key.WriteByte(byte(v.k))
			key.WriteString(v.text())
			key.WriteByte(0)
			labels = append(labels, label{key: "by(" + f.String() + ")", val: v})
		}
		g := groups[key.String()]
		if g == nil {
			g = &spanset{by: labels}
			groups[key.String()] = g
			order = append(order, key.String())
		}
		g.spans = append(g.spans, i)
	}
	out := make([]spanset, 0, len(order))
	for _, k := range order {
		out = append(out, *groups[k])
	}
	return out
}

func staticValue(s traceql.Static) value {
	switch s.Type {
	case traceql.TypeString:
		return value{k: kString, s: s.Str}
	case traceql.TypeInt:
		return value{k: kInt, i: s.Int}
	case traceql.TypeFloat:
		return value{k: kFloat, f: s.Float}
	case traceql.TypeBool:
		return value{k: kBool, b: s.Bool}
	case traceql.TypeDuration:
		return value{k: kDuration, i: int64(s.Dur)}
	case traceql.TypeStatus:
		return value{k: kStatus, i: int64(s.Status)}
	case traceql.TypeKind:
		return value{k: kKind, i: int64(s.Kind)}
	}
	return value{}
}

// evalField evaluates a field expression for one span. Fields with several values per span
// (event and link fields) give an array, which comparisons treat as "any element".
func evalField(e traceql.FieldExpr, t *trace, s *span) value {
	switch e := e.(type) {
	case traceql.Static:
		return staticValue(e)
	case traceql.Intrinsic:
		return intrinsic(e, t, s)
	case traceql.Attribute:
		return attribute(e, s)
	case *traceql.UnaryOp:
		v := evalField(e.Expr, t, s)
		switch e.Op {
		case traceql.OpNot:
			if v.k == kBool {
				return value{k: kBool, b: !v.b}
			}
		case traceql.OpNeg:
			switch v.k {
			case kInt, kDuration:
				v.i = -v.i
				return v
			case kFloat:
				v.f = -v.f
				return v
			}
		}
		return value{}
	case *traceql.BinaryOp:
		switch e.Op {
		case traceql.OpAnd:
			l := evalField(e.LHS, t, s)
			if l.k != kBool || !l.b {
				return value{k: kBool}
			}
			r := evalField(e.RHS, t, s)
			return value{k: kBool, b: r.k == kBool && r.b}
		case traceql.OpOr:
			l := evalField(e.LHS, t, s)
			if l.k == kBool && l.b {
				return l
			}
			r := evalField(e.RHS, t, s)
			return value{k: kBool, b: r.k == kBool && r.b}
		}
		if st, ok := e.RHS.(traceql.Static); ok && st.Type == traceql.TypeNil {
			present := evalField(e.LHS, t, s).k != kNil
			return value{k: kBool, b: present == (e.Op == traceql.OpNeq)}
		}
		l, r := evalField(e.LHS, t, s), evalField(e.RHS, t, s)
		if e.Op.IsComparison() {
			if l.k == kNil || r.k == kNil {
				// A missing attribute makes the comparison nil, not false, so that
				// "!span.flag" does not match a span without the flag.
				return value{}
			}
			return value{k: kBool, b: compare(e.Op, l, r, e)}
		}
		return arithmetic(e.Op, l, r)
	}
	return value{}
}

func hexValue(b []byte) value {
	if len(b) == 0 {
		return value{}
	}
	return value{k: kString, s: hex.EncodeToString(b)}
}

func intrinsic(i traceql.Intrinsic, t *trace, s *span) value {
	switch i {
	case traceql.IntrinsicName:
		return value{k: kString, s: s.name}
	case traceql.IntrinsicStatus:
		return value{k: kStatus, i: statusOf(s.status)}
	case traceql.IntrinsicStatusMessage:
		return value{k: kString, s: s.statusMsg}
	case traceql.IntrinsicKind:
		return value{k: kKind, i: kindOf(s.kind)}
	case traceql.IntrinsicDuration:
		return value{k: kDuration, i: s.dur}
	case traceql.IntrinsicSpanID:
		return hexValue(s.id)
	case traceql.IntrinsicParentID:
		if s.parent >= 0 {
			return hexValue(t.spans[s.parent].id)
		}
		return value{}
	case traceql.IntrinsicRootName, traceql.IntrinsicRootServiceName:
		// Only a span without a parent is a root: a rootless trace has neither value.
		r := t.tree().root
		if r < 0 {
			return value{}
		}
		if i == traceql.IntrinsicRootName {
			return value{k: kString, s: t.spans[r].name}
		}
		if res := t.spans[r].res; res != nil {
			return value{k: kString, s: res.service}
		}
		return value{}
	case traceql.IntrinsicChildCount:
		return value{k: kInt, i: int64(t.tree().children[spanIndex(t, s)])}
	case traceql.IntrinsicNestedSetLeft:
		return value{k: kInt, i: int64(t.tree().left[spanIndex(t, s)])}
	case traceql.IntrinsicNestedSetRight:
		return value{k: kInt, i: int64(t.tree().right[spanIndex(t, s)])}
	case traceql.IntrinsicNestedSetParent:
		return value{k: kInt, i: int64(t.tree().parentLeft[spanIndex(t, s)])}
	case traceql.IntrinsicTraceDuration:
		return value{k: kDuration, i: t.dur}
	case traceql.IntrinsicTraceID:
		return hexValue(t.id[:])
	case traceql.IntrinsicEventName, traceql.IntrinsicEventTimeSinceStart:
		var vs []value
		for _, ev := range s.events {
			if i == traceql.IntrinsicEventName {
				vs = append(vs, value{k: kString, s: ev.name})
			} else {
				vs = append(vs, value{k: kDuration, i: ev.since})
			}
		}
		return many(vs)
	case traceql.IntrinsicLinkTraceID, traceql.IntrinsicLinkSpanID:
		var vs []value
		for _, l := range s.links {
			if i == traceql.IntrinsicLinkTraceID {
				vs = append(vs, hexValue(l.traceID))
			} else {
				vs = append(vs, hexValue(l.spanID))
			}
		}
		return many(vs)
	case traceql.IntrinsicInstrumentationName:
		if s.res != nil {
			return value{k: kString, s: s.res.scopeName}
		}
	case traceql.IntrinsicInstrumentationVersion:
		if s.res != nil {
			return value{k: kString, s: s.res.scopeVersion}
		}
	}
	return value{}
}

func many(vs []value) value {
	if len(vs) == 0 {
		return value{}
	}
	return value{k: kArray, arr: vs, multi: true}
}

// spanIndex is the index of s within t.spans.
func spanIndex(t *trace, s *span) int32 {
	if s.self >= 0 && int(s.self) < len(t.spans) && &t.spans[s.self] == s {
		return s.self
	}
	for i := range t.spans {
		if &t.spans[i] == s {
			return int32(i)
		}
	}
	return 0
}

func attribute(a traceql.Attribute, s *span) value {
	switch a.Scope {
	case traceql.ScopeSpan:
		v, _ := s.attr(a.Name)
		return v
	case traceql.ScopeResource:
		if s.res != nil {
			v, _ := findAttr(s.res.attrs, a.Name)
			return v
		}
	case traceql.ScopeNone:
		if v, ok := s.attr(a.Name); ok {
			return v
		}
		if s.res != nil {
			v, _ := findAttr(s.res.attrs, a.Name)
			return v
		}
	case traceql.ScopeInstrumentation:
		if s.res != nil {
			v, _ := findAttr(s.res.scopeAttrs, a.Name)
			return v
		}
	case traceql.ScopeEvent:
		var vs []value
		for _, ev := range s.events {
			if v, ok := findAttr(ev.attrs, a.Name); ok {
				vs = append(vs, v)
			}
		}
		return many(vs)
	case traceql.ScopeLink:
		var vs []value
		for _, l := range s.links {
			if v, ok := findAttr(l.attrs, a.Name); ok {
				vs = append(vs, v)
			}
		}
		return many(vs)
	}
	return value{}
}

// compare applies a comparison operator. Arrays match when any element does, except that an
// array attribute is != a value (or !~ a pattern) only when no element is equal (matches); a
// missing value never compares true, not even with "!=", as in TraceQL.
func compare(op traceql.Operator, l, r value, b *traceql.BinaryOp) bool {
	if l.k == kArray && !l.multi && (op == traceql.OpNeq || op == traceql.OpNotRegex) {
		pos := traceql.OpEq
		if op == traceql.OpNotRegex {
			pos = traceql.OpRegex
		}
		for _, e := range l.arr {
			if compare(pos, e, r, b) {
				return false
			}
		}
		return len(l.arr) > 0
	}
	if l.k == kArray {
		for _, e := range l.arr {
			if compare(op, e, r, b) {
				return true
			}
		}
		return false
	}
	if r.k == kArray {
		for _, e := range r.arr {
			if compare(op, l, e, b) {
				return true
			}
		}
		return false
	}
	if l.k == kNil || r.k == kNil {
		return false
	}
	if op == traceql.OpRegex || op == traceql.OpNotRegex {
		if l.k != kString || b == nil || b.Regex == nil {
			return false
		}
		return b.Regex.MatchString(l.s) == (op == traceql.OpRegex)
	}
	var c int
	switch {
	case l.k == kString && r.k == kString:
		c = strings.Compare(l.s, r.s)
	case (l.k == kInt || l.k == kDuration) && (r.k == kInt || r.k == kDuration):
		c = cmpInt(l.i, r.i)
	case l.k == kBool && r.k == kBool:
		if op != traceql.OpEq && op != traceql.OpNeq {
			return false
		}
		c = 1
		if l.b == r.b {
			c = 0
		}
	case (l.k == kStatus && r.k == kStatus) || (l.k == kKind && r.k == kKind):
		if op != traceql.OpEq && op != traceql.OpNeq {
			return false
		}
		c = cmpInt(l.i, r.i)
	default:
		lf, ok1 := l.number()
		rf, ok2 := r.number()
		if !ok1 || !ok2 || math.IsNaN(lf) || math.IsNaN(rf) {
			return false
		}
		switch {
		case lf < rf:
			c = -1
		case lf > rf:
			c = 1
		}
	}
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

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func arithmetic(op traceql.Operator, l, r value) value {
	lf, ok1 := l.number()
	rf, ok2 := r.number()
	if !ok1 || !ok2 {
		return value{}
	}
	var f float64
	switch op {
	case traceql.OpAdd:
		f = lf + rf
	case traceql.OpSub:
		f = lf - rf
	case traceql.OpMul:
		f = lf * rf
	case traceql.OpDiv:
		if rf == 0 {
			return value{}
		}
		f = lf / rf
	case traceql.OpMod:
		if rf == 0 {
			return value{}
		}
		f = math.Mod(lf, rf)
	case traceql.OpPow:
		f = math.Pow(lf, rf)
	}
	switch {
	case l.k == kDuration || r.k == kDuration:
		return value{k: kDuration, i: int64(f)}
	case l.k == kInt && r.k == kInt && op != traceql.OpDiv && op != traceql.OpPow:
		return value{k: kInt, i: int64(f)}
	}
	return value{k: kFloat, f: f}
}

// sortSpansByStart orders span indexes by start time, then index, for output.
func sortSpansByStart(t *trace, spans []int32) []int32 {
	out := slices.Clone(spans)
	sort.SliceStable(out, func(a, b int) bool { return t.spans[out[a]].start < t.spans[out[b]].start })
	return out
}
