package traceql

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Parse parses and type-checks a TraceQL query. Every error it returns is a
// *ParseError carrying the position of the offending token.
func Parse(q string) (query *Query, err error) {
	p := &parser{lx: lexer{src: q}}
	// Errors unwind by panic so that each grammar rule reads straight
	// through; only *ParseError is caught, so real bugs still crash.
	defer func() {
		if r := recover(); r != nil {
			pe, ok := r.(*ParseError)
			if !ok {
				panic(r)
			}
			query, err = nil, pe
		}
	}()
	p.next()
	if p.tok.kind == tEOF {
		p.failAt(p.tok.pos, nil, "empty query: expected a spanset such as \"{ }\"")
	}
	return p.query(), nil
}

type parser struct {
	lx    lexer
	tok   token // current, not yet consumed
	prev  token // last consumed, for "after X" messages
	depth int   // current nesting, see enter
	// sawMetrics: a parenthesised metrics query was read as an operand of arithmetic.
	sawMetrics bool
}

// maxDepth bounds the depth of the AST: parentheses, unary operators and
// each operator of a chain all count. The parser, String and the engine
// recurse once per level, and a Go stack overflow kills the process
// instead of returning an error; typing arithmetic is also quadratic in
// chain length. Generated queries with hundreds of "||" terms still fit.
const maxDepth = 1000

func (p *parser) enter() {
	p.depth++
	if p.depth > maxDepth {
		p.failAt(p.tok.pos, nil, "query too deep: more than %d levels of nesting and chained operators", maxDepth)
	}
}

// leave undoes enter. It is called directly rather than deferred: a
// failed parse is abandoned anyway, and deferred calls in every frame make
// unwinding a deep stack slow.
func (p *parser) leave() { p.depth-- }

func (p *parser) next() {
	p.prev = p.tok
	tok, err := p.lx.next()
	if err != nil {
		panic(err)
	}
	p.tok = tok
}

func (p *parser) failAt(pos int, err error, format string, args ...any) {
	panic(newParseError(p.lx.src, pos, err, fmt.Sprintf(format, args...)))
}

// describe names a token for an error message.
func describe(t token) string {
	if t.kind == tEOF {
		return "end of query"
	}
	text := t.text
	if r := []rune(text); len(r) > 24 {
		text = string(r[:24]) + "…"
	}
	if t.kind == tString {
		// Already quoted in the source; quoting again would show \".
		return "string " + text
	}
	return strconv.Quote(text)
}

func (p *parser) expect(kind tokenKind, what string) token {
	if p.tok.kind != kind {
		p.failAt(p.tok.pos, nil, "expected %s, found %s", what, describe(p.tok))
	}
	t := p.tok
	p.next()
	return t
}

func (p *parser) isIdent(word string) bool { return p.tok.kind == tIdent && p.tok.text == word }

func (p *parser) query() *Query {
	var q *Query
	switch p.tok.kind {
	case tInt, tFloat, tMinus:
		// Only metrics arithmetic starts with a number: "100 * ({ } | rate())".
		q = p.mathQuery()
	case tLParen:
		// "(" opens a spanset operand, "({ } | count() > 1) && { .a }", or metrics
		// arithmetic, "({ } | rate()) * 100": try the arithmetic and fall back.
		saved := *p
		mathErr := p.try(func() { q = p.mathQuery() })
		if mathErr == nil {
			break
		}
		// Once a parenthesised metrics query was read, arithmetic was meant.
		if p.sawMetrics {
			panic(mathErr)
		}
		*p = saved
		q = p.pipeline(&Query{})
	default:
		q = p.pipeline(&Query{})
	}
	if q.Metrics != nil && q.Metrics.Func == MetricsCompare && len(q.MetricsStages) > 0 {
		// compare()'s series are selection/baseline counts per attribute value:
		// ranking or thresholding them mixes the two halves (Tempo refuses it too).
		p.failAt(p.prev.pos, nil, "compare() cannot be followed by thresholds, topk() or bottomk()")
	}
	if p.isIdent("with") {
		q.Hints = p.hints()
	}
	if p.tok.kind != tEOF {
		p.failAt(p.tok.pos, nil, "unexpected %s after the end of the query", describe(p.tok))
	}
	return q
}

// try runs fn and returns the parse error it raised, if any.
func (p *parser) try(fn func()) (pe *ParseError) {
	defer func() {
		if r := recover(); r != nil {
			var ok bool
			if pe, ok = r.(*ParseError); !ok {
				panic(r)
			}
		}
	}()
	fn()
	return nil
}

// mathQuery parses metrics arithmetic and the thresholds and topk/bottomk after it. A lone
// parenthesised metrics query, "({ } | rate()) > 10", is that query.
func (p *parser) mathQuery() *Query {
	start := p.tok
	var q *Query
	switch e := p.mathExpr(1).(type) {
	case *Query:
		q = e
	case *MetricsMath:
		if !hasQuery(e) {
			p.failAt(start.pos, nil, "arithmetic needs a metrics query, as in \"({ } | rate()) * 100\"")
		}
		q = &Query{Math: e}
	default:
		p.failAt(start.pos, nil, "expected \"{\" to start a spanset, found %s", describe(start))
	}
	q.MetricsStages = append(q.MetricsStages, p.metricsFilters()...)
	p.metricsTail(q)
	return q
}

func hasQuery(o MetricsOperand) bool {
	switch o := o.(type) {
	case *Query:
		return true
	case *MetricsMath:
		return hasQuery(o.LHS) || hasQuery(o.RHS)
	}
	return false
}

var mathOperators = map[tokenKind]Operator{tPlus: OpAdd, tMinus: OpSub, tStar: OpMul, tSlash: OpDiv}

// mathExpr parses arithmetic over metrics operands by precedence climbing, left-associative.
func (p *parser) mathExpr(minPrec int) MetricsOperand {
	lhs := p.mathPrimary()
	levels := 0
	for {
		op, ok := mathOperators[p.tok.kind]
		if !ok || op.precedence() < minPrec {
			p.depth -= levels
			return lhs
		}
		p.enter()
		levels++
		p.next()
		lhs = &MetricsMath{Op: op, LHS: lhs, RHS: p.mathExpr(op.precedence() + 1)}
	}
}

func (p *parser) mathPrimary() MetricsOperand {
	p.enter()
	defer p.leave()
	t := p.tok
	switch t.kind {
	case tInt:
		p.next()
		return MetricsNumber(t.i)
	case tFloat:
		p.next()
		return MetricsNumber(t.f)
	case tMinus:
		p.next()
		o := p.mathPrimary()
		if n, ok := o.(MetricsNumber); ok {
			return -n
		}
		return &MetricsMath{Op: OpMul, LHS: MetricsNumber(-1), RHS: o}
	case tLParen:
		p.next()
		var o MetricsOperand
		if p.tok.kind == tLBrace || p.startsStage() {
			q := p.pipeline(&Query{})
			p.sawMetrics = p.sawMetrics || q.Metrics != nil
			if q.Metrics == nil {
				p.failAt(t.pos, nil, "arithmetic applies to metrics queries, as in \"({ } | rate()) * 100\": this one has no metrics function")
			}
			if q.Metrics.Func == MetricsCompare {
				p.failAt(t.pos, nil, "compare() cannot be used in arithmetic")
			}
			o = q
		} else {
			o = p.mathExpr(1)
		}
		if p.tok.kind != tRParen {
			p.failAt(p.tok.pos, nil, "expected \")\" to close \"(\" at %s, found %s", p.where(t.pos), describe(p.tok))
		}
		p.next()
		return o
	}
	p.failAt(t.pos, nil, "expected a number or a parenthesised metrics query after %s, found %s", describe(p.prev), describe(t))
	return nil
}

// pipeline parses stages separated by "|", a metrics function and what follows it, into q.
func (p *parser) pipeline(q *Query) *Query {
	if p.startsStage() {
		// "count() > 1 | ...", "by(.a) | ...", "select(.a)": a pipeline over
		// every span of the trace, as if written after "{ } |".
		q.Stages = []Stage{&SpansetFilter{}, p.stage(nil)}
	} else {
		q.Stages = []Stage{p.spansetExpr(1)}
	}
	for p.tok.kind == tPipe {
		if q.Metrics != nil {
			p.metricsTail(q)
			break
		}
		p.next()
		if stage := p.stage(q); stage != nil {
			q.Stages = append(q.Stages, stage)
		}
	}
	return q
}

// metricsTail parses "| topk(n)" and "| bottomk(n)", each with its thresholds, after a
// metrics function or arithmetic.
func (p *parser) metricsTail(q *Query) {
	for p.tok.kind == tPipe {
		p.next()
		if !p.isIdent("topk") && !p.isIdent("bottomk") {
			what := "arithmetic"
			if q.Metrics != nil {
				what = q.Metrics.Func.String() + "()"
			}
			p.failAt(p.tok.pos, nil, "only topk() or bottomk() may follow %s, found %s", what, describe(p.tok))
		}
		q.MetricsStages = append(q.MetricsStages, p.topK())
		q.MetricsStages = append(q.MetricsStages, p.metricsFilters()...)
	}
}

// startsStage reports whether the current token opens a pipeline stage that
// may also start a pipeline: an aggregate, by() or select().
func (p *parser) startsStage() bool {
	if p.tok.kind != tIdent {
		return false
	}
	_, agg := aggregateByName[p.tok.text]
	return agg || p.tok.text == "by" || p.tok.text == "select"
}

// stage parses what follows a "|". A metrics function is stored on q rather
// than returned, since it is not a Stage; q is nil inside parentheses, where
// metrics functions are not allowed.
func (p *parser) stage(q *Query) Stage {
	switch p.tok.kind {
	case tLBrace, tLParen:
		return p.spansetExpr(1)
	case tIdent:
	default:
		p.failAt(p.tok.pos, nil, "expected a spanset, an aggregate or a function after \"|\", found %s", describe(p.tok))
	}
	word := p.tok
	if agg, ok := aggregateByName[word.text]; ok {
		return p.scalarFilter(agg)
	}
	if fn, ok := metricsByName[word.text]; ok {
		if q == nil {
			p.failAt(word.pos, nil, "%s() ends a whole query; it cannot be used inside parentheses", word.text)
		}
		q.Metrics = p.metrics(fn)
		q.MetricsStages = p.metricsFilters()
		return nil
	}
	switch word.text {
	case "by":
		p.next()
		return &GroupBy{Fields: p.fieldList("by", false)}
	case "select":
		p.next()
		return &Select{Fields: p.fieldList("select", true)}
	case "coalesce":
		p.next()
		p.expect(tLParen, `"(" after coalesce`)
		p.expect(tRParen, `")": coalesce() takes no arguments`)
		return &Coalesce{}
	case "topk", "bottomk":
		p.failAt(word.pos, nil, "%s() applies to the series of a metrics function, as in \"{ } | rate() by (name) | %s(5)\"", word.text, word.text)
	}
	p.failAt(word.pos, nil, "unknown pipeline function %q", word.text)
	return nil
}

// topK parses "topk(n)" or "bottomk(n)".
func (p *parser) topK() *TopK {
	t := &TopK{Bottom: p.tok.text == "bottomk"}
	name := p.tok.text
	p.next()
	p.expect(tLParen, fmt.Sprintf("\"(\" after %s", name))
	k := p.tok
	if k.kind != tInt || k.i <= 0 || k.i > 1<<20 {
		p.failAt(k.pos, nil, "%s() needs a positive whole number of series, found %s", name, describe(k))
	}
	t.K = int(k.i)
	p.next()
	p.expect(tRParen, fmt.Sprintf("\")\" to close %s(", name))
	return t
}

// metricsFilters parses the thresholds that may follow a metrics function,
// as in "rate() by (name) > 10".
func (p *parser) metricsFilters() []MetricsStage {
	var out []MetricsStage
	for {
		opTok := p.tok
		op, ok := fieldOperator(opTok.kind)
		if !ok || !op.IsComparison() || op == OpRegex || op == OpNotRegex {
			return out
		}
		p.next()
		valTok := p.tok
		v, isStatic := foldNumber(p.field(OpAdd.precedence()))
		if !isStatic || !isNumeric(v.Type) {
			p.failAt(valTok.pos, nil, "expected a number or a duration after %s in a metrics threshold, found %s", op, describe(valTok))
		}
		out = append(out, &MetricsFilter{Op: op, Value: v})
	}
}

var aggregateByName = map[string]AggregateFunc{
	"count": AggCount, "avg": AggAvg, "min": AggMin, "max": AggMax, "sum": AggSum,
}

var metricsByName = func() map[string]MetricsFunc {
	m := map[string]MetricsFunc{}
	for f, n := range metricsNames {
		m[n] = f
	}
	return m
}()

func (p *parser) scalarFilter(fn AggregateFunc) *ScalarFilter {
	p.next()
	p.expect(tLParen, fmt.Sprintf("\"(\" after %s", fn))
	agg := Aggregate{Func: fn}
	if fn == AggCount {
		p.expect(tRParen, `")": count() takes no arguments`)
	} else {
		agg.Field = p.numericArg(fn.String())
		p.expect(tRParen, fmt.Sprintf("\")\" to close %s(", fn))
	}
	opTok := p.tok
	op, ok := fieldOperator(opTok.kind)
	if !ok || !op.IsComparison() || op == OpRegex || op == OpNotRegex {
		p.failAt(opTok.pos, nil, "expected a comparison (=, !=, <, <=, >, >=) after %s, found %s", agg, describe(opTok))
	}
	p.next()
	valTok := p.tok
	v, isStatic := p.unary().(Static)
	if !isStatic {
		p.failAt(valTok.pos, nil, "expected a literal after %s %s, found %s", agg, op, describe(valTok))
	}
	if !isNumeric(v.Type) {
		p.failAt(valTok.pos, nil, "cannot compare %s with %s", agg, describeExpr(v))
	}
	if fn == AggCount && v.Type == TypeDuration {
		p.failAt(valTok.pos, nil, "cannot compare count(), a number, with %s", describeExpr(v))
	}
	return &ScalarFilter{Agg: agg, Op: op, Value: v}
}

// numericArg parses the field an aggregate reads, which must be able to hold
// a number.
func (p *parser) numericArg(fn string) FieldExpr {
	start := p.tok
	e := p.field(1)
	if !isNumeric(e.StaticType()) && e.StaticType() != TypeAttribute {
		p.failAt(start.pos, nil, "%s() needs a numeric field, found %s", fn, describeExpr(e))
	}
	if !referencesSpan(e) {
		p.failAt(start.pos, nil, "%s() needs a field, found %s", fn, describeExpr(e))
	}
	return e
}

// referencesSpan reports whether e reads anything of the span: an aggregate
// or a group over a constant ("max(1h + 2h)", "by(1)") means nothing.
func referencesSpan(e FieldExpr) bool {
	switch e := e.(type) {
	case Attribute, Intrinsic:
		return true
	case *BinaryOp:
		return referencesSpan(e.LHS) || referencesSpan(e.RHS)
	case *UnaryOp:
		return referencesSpan(e.Expr)
	}
	return false
}

// fieldList parses "(f, ...)" after by or select. select only takes plain
// fields because it names what to return, not a computation.
func (p *parser) fieldList(fn string, plain bool) []FieldExpr {
	p.expect(tLParen, fmt.Sprintf("\"(\" after %s", fn))
	var fields []FieldExpr
	for {
		start := p.tok
		e := p.field(1)
		switch e.(type) {
		case Attribute, Intrinsic:
		default:
			if !referencesSpan(e) {
				p.failAt(start.pos, nil, "%s() needs attributes or intrinsics, found %s", fn, describeExpr(e))
			}
			if plain {
				p.failAt(start.pos, nil, "%s() takes attributes and intrinsics, found %s", fn, describeExpr(e))
			}
		}
		fields = append(fields, e)
		if p.tok.kind != tComma {
			break
		}
		p.next()
	}
	p.expect(tRParen, fmt.Sprintf("\",\" or \")\" in %s(...)", fn))
	return fields
}

func (p *parser) metrics(fn MetricsFunc) *MetricsAggregate {
	p.next()
	p.expect(tLParen, fmt.Sprintf("\"(\" after %s", fn))
	m := &MetricsAggregate{Func: fn}
	switch fn {
	case MetricsRate, MetricsCountOverTime:
		p.expect(tRParen, fmt.Sprintf("\")\": %s() takes no arguments", fn))
	case MetricsCompare:
		m.Selection = p.spansetExpr(1)
		if p.tok.kind == tComma {
			p.next()
			m.TopN = int(p.intArg("compare()'s number of values per attribute", 1))
			if p.tok.kind == tComma {
				p.next()
				m.CompareStart = p.intArg("compare()'s start, in unix nanoseconds", 0)
				p.expect(tComma, `"," and an end after compare()'s start`)
				m.CompareEnd = p.intArg("compare()'s end, in unix nanoseconds", 0)
				if m.CompareEnd <= m.CompareStart {
					p.failAt(p.prev.pos, nil, "compare()'s end must be after its start")
				}
			}
		}
		p.expect(tRParen, `")" to close compare(`)
	case MetricsQuantileOverTime:
		m.Field = p.numericArg(fn.String())
		if p.tok.kind != tComma {
			p.failAt(p.tok.pos, nil, "expected \",\" and at least one quantile in %s(), found %s", fn, describe(p.tok))
		}
		for p.tok.kind == tComma {
			p.next()
			m.Quantiles = append(m.Quantiles, p.quantile())
		}
		p.expect(tRParen, fmt.Sprintf("\",\" or \")\" in %s(...)", fn))
	default:
		m.Field = p.numericArg(fn.String())
		p.expect(tRParen, fmt.Sprintf("\")\" to close %s(", fn))
	}
	if p.isIdent("by") {
		p.next()
		m.By = p.fieldList("by", false)
	}
	return m
}

// intArg parses a whole number of at least least.
func (p *parser) intArg(what string, least int64) int64 {
	t := p.tok
	if t.kind != tInt || t.i < least {
		p.failAt(t.pos, nil, "expected %s, a whole number of at least %d, found %s", what, least, describe(t))
	}
	p.next()
	return t.i
}

func (p *parser) quantile() float64 {
	t := p.tok
	var q float64
	switch t.kind {
	case tFloat:
		q = t.f
	case tInt:
		q = float64(t.i)
	default:
		p.failAt(t.pos, nil, "expected a quantile between 0 and 1, found %s", describe(t))
	}
	if q < 0 || q > 1 {
		p.failAt(t.pos, nil, "quantile %s is outside [0, 1]", t.text)
	}
	p.next()
	return q
}

func (p *parser) hints() []Hint {
	p.next()
	p.expect(tLParen, `"(" after with`)
	var hints []Hint
	for {
		name := p.tok
		if name.kind != tIdent || strings.Contains(name.text, ":") {
			p.failAt(name.pos, nil, "expected a hint name in with(...), found %s", describe(name))
		}
		p.next()
		p.expect(tEq, fmt.Sprintf("\"=\" after hint %q", name.text))
		valTok := p.tok
		v, ok := p.unary().(Static)
		if !ok {
			p.failAt(valTok.pos, nil, "expected a literal value for hint %q, found %s", name.text, describe(valTok))
		}
		hints = append(hints, Hint{Name: name.text, Value: v})
		if p.tok.kind != tComma {
			break
		}
		p.next()
	}
	p.expect(tRParen, `"," or ")" in with(...)`)
	return hints
}

var spansetOperators = map[tokenKind]SpansetOperator{
	tAnd: SpansetAnd, tOr: SpansetOr,
	tDesc: Descendant, tGt: Child, tTilde: Sibling, tAnc: Ancestor, tLt: Parent,
	tNotDesc: NotDescendant, tNotChild: NotChild, tNre: NotSibling, tNotAnc: NotAncestor, tNotParent: NotParent,
	tUnionDesc: UnionDescendant, tUnionChild: UnionChild, tUnionSib: UnionSibling, tUnionAnc: UnionAncestor, tUnionParent: UnionParent,
}

// spansetExpr parses by precedence climbing; every spanset operator is
// left-associative, so "{a} >> {b} >> {c}" chains left to right and
// returns the c spans.
func (p *parser) spansetExpr(minPrec int) SpansetExpr {
	lhs := p.spansetPrimary()
	levels := 0
	for {
		op, ok := spansetOperators[p.tok.kind]
		if !ok || op.precedence() < minPrec {
			p.depth -= levels
			return lhs
		}
		p.enter()
		levels++
		p.next()
		rhs := p.spansetExpr(op.precedence() + 1)
		lhs = &SpansetOp{Op: op, LHS: lhs, RHS: rhs}
	}
}

func (p *parser) spansetPrimary() SpansetExpr {
	p.enter()
	e := p.spansetPrimaryInner()
	p.leave()
	return e
}

func (p *parser) spansetPrimaryInner() SpansetExpr {
	open := p.tok
	switch open.kind {
	case tLBrace:
		p.next()
		f := &SpansetFilter{}
		if p.tok.kind != tRBrace {
			start := p.tok
			f.Cond = p.boolOperand(p.field(1), start)
		}
		if p.tok.kind != tRBrace {
			p.failAt(p.tok.pos, nil, "expected \"}\" to close the spanset at %s, found %s", p.where(open.pos), describe(p.tok))
		}
		p.next()
		return f
	case tLParen:
		p.next()
		e := p.spansetExpr(1)
		if p.tok.kind == tPipe {
			// A parenthesised pipeline: "({ } | count() > 1) && { .a }".
			pl := &Pipeline{Stages: []Stage{e}}
			for p.tok.kind == tPipe {
				p.next()
				pl.Stages = append(pl.Stages, p.stage(nil))
			}
			e = pl
		}
		if p.tok.kind != tRParen {
			p.failAt(p.tok.pos, nil, "expected \")\" to close \"(\" at %s, found %s", p.where(open.pos), describe(p.tok))
		}
		p.next()
		return e
	}
	if p.prev.kind == tEOF { // nothing consumed yet: the query's first token
		p.failAt(open.pos, nil, "expected \"{\" to start a spanset, found %s", describe(open))
	}
	p.failAt(open.pos, nil, "expected a spanset \"{ ... }\" after %s, found %s", describe(p.prev), describe(open))
	return nil
}

func (p *parser) where(pos int) string {
	e := newParseError(p.lx.src, pos, nil, "")
	return fmt.Sprintf("%d:%d", e.Line, e.Col)
}

var fieldOperators = map[tokenKind]Operator{
	tOr: OpOr, tAnd: OpAnd,
	tEq: OpEq, tNeq: OpNeq, tRe: OpRegex, tNre: OpNotRegex,
	tGt: OpGt, tGte: OpGte, tLt: OpLt, tLte: OpLte,
	tPlus: OpAdd, tMinus: OpSub, tStar: OpMul, tSlash: OpDiv, tPercent: OpMod, tCaret: OpPow,
}

func fieldOperator(k tokenKind) (Operator, bool) {
	op, ok := fieldOperators[k]
	return op, ok
}

// field parses a field expression by precedence climbing. "^" is
// right-associative; comparisons do not chain.
func (p *parser) field(minPrec int) FieldExpr {
	start := p.tok
	lhs := p.unary()
	justCompared := false
	levels := 0
	for {
		opTok := p.tok
		op, ok := fieldOperator(opTok.kind)
		if !ok || op.precedence() < minPrec {
			p.depth -= levels
			return lhs
		}
		p.enter()
		levels++
		if justCompared && op.IsComparison() {
			p.failAt(opTok.pos, nil, "comparisons do not chain: found %s after a comparison; use \"&&\" or parentheses", describe(opTok))
		}
		p.next()
		next := op.precedence() + 1
		if op == OpPow {
			next = op.precedence()
		}
		rhsTok := p.tok
		rhs := p.field(next)
		lhs = p.binary(op, opTok, lhs, start, rhs, rhsTok)
		justCompared = op.IsComparison()
	}
}

func (p *parser) unary() FieldExpr {
	p.enter()
	e := p.unaryInner()
	p.leave()
	return e
}

func (p *parser) unaryInner() FieldExpr {
	t := p.tok
	switch t.kind {
	case tNot:
		p.next()
		operand := p.tok
		return &UnaryOp{Op: OpNot, Expr: p.boolOperand(p.unary(), operand)}
	case tMinus:
		p.next()
		operand := p.tok
		e := p.unary()
		if s, ok := e.(Static); ok {
			switch s.Type {
			case TypeInt:
				s.Int = -s.Int
				return s
			case TypeFloat:
				s.Float = -s.Float
				return s
			case TypeDuration:
				s.Dur = -s.Dur
				return s
			}
		}
		if !isNumeric(e.StaticType()) && e.StaticType() != TypeAttribute {
			p.failAt(operand.pos, nil, "cannot negate %s", describeExpr(e))
		}
		return &UnaryOp{Op: OpNeg, Expr: e}
	}
	return p.primary()
}

var keywordValues = map[string]Static{
	"true":  {Type: TypeBool, Bool: true},
	"false": {Type: TypeBool},
	"nil":   {Type: TypeNil},
	// The extremes of an int attribute, as in "{ span.retries > minInt }".
	"minInt": {Type: TypeInt, Int: math.MinInt64},
	"maxInt": {Type: TypeInt, Int: math.MaxInt64},
}

func init() {
	for s, n := range statusNames {
		keywordValues[n] = Static{Type: TypeStatus, Status: s}
	}
	for k, n := range kindNames {
		keywordValues[n] = Static{Type: TypeKind, Kind: k}
	}
}

func (p *parser) primary() FieldExpr {
	t := p.tok
	switch t.kind {
	case tLParen:
		p.next()
		e := p.field(1)
		if p.tok.kind != tRParen {
			p.failAt(p.tok.pos, nil, "expected \")\" to close \"(\" at %s, found %s", p.where(t.pos), describe(p.tok))
		}
		p.next()
		return e
	case tAttr:
		p.next()
		return t.attr
	case tString:
		p.next()
		return Static{Type: TypeString, Str: t.str}
	case tInt:
		p.next()
		return Static{Type: TypeInt, Int: t.i}
	case tFloat:
		p.next()
		return Static{Type: TypeFloat, Float: t.f}
	case tDuration:
		p.next()
		return Static{Type: TypeDuration, Dur: t.d}
	case tIdent:
		if v, ok := keywordValues[t.text]; ok {
			p.next()
			return v
		}
		if in, ok := intrinsicByName[t.text]; ok {
			p.next()
			return in
		}
		if strings.Contains(t.text, ":") {
			p.failAt(t.pos, nil, "unknown intrinsic %q", t.text)
		}
		p.failAt(t.pos, nil, "unknown intrinsic %q; attributes need a scope, as in \".%s\" or \"span.%s\"", t.text, t.text, t.text)
	}
	p.failAt(t.pos, nil, "expected a value after %s, found %s", describe(p.prev), describe(t))
	return nil
}

// boolOperand checks e where a condition is required. A bare attribute
// there means "attribute = true", as in "{ span.cache_hit }".
func (p *parser) boolOperand(e FieldExpr, start token) FieldExpr {
	if a, ok := e.(Attribute); ok {
		return &BinaryOp{Op: OpEq, LHS: a, RHS: Static{Type: TypeBool, Bool: true}}
	}
	if e.StaticType() != TypeBool {
		p.failAt(start.pos, nil, "expected a condition, found %s", describeExpr(e))
	}
	return e
}

func (p *parser) binary(op Operator, opTok token, lhs FieldExpr, lhsTok token, rhs FieldExpr, rhsTok token) FieldExpr {
	b := &BinaryOp{Op: op, LHS: lhs, RHS: rhs}
	switch {
	case op == OpAnd || op == OpOr:
		b.LHS = p.boolOperand(lhs, lhsTok)
		b.RHS = p.boolOperand(rhs, rhsTok)
	case op == OpRegex || op == OpNotRegex:
		b.Regex = p.regex(op, lhs, lhsTok, rhs, rhsTok)
	case op.IsComparison():
		p.checkComparison(op, opTok, lhs, rhs)
		if l, ok := lhs.(Static); ok && l.Type == TypeNil && (op == OpEq || op == OpNeq) {
			// "nil = x" is "x = nil": the engine tests existence with nil on the right.
			b.LHS, b.RHS = rhs, lhs
		}
	default:
		for _, side := range []struct {
			e FieldExpr
			t token
		}{{lhs, lhsTok}, {rhs, rhsTok}} {
			if !isNumeric(side.e.StaticType()) && side.e.StaticType() != TypeAttribute {
				p.failAt(side.t.pos, nil, "%q needs numbers, found %s", op.String(), describeExpr(side.e))
			}
		}
	}
	return b
}

func (p *parser) regex(op Operator, lhs FieldExpr, lhsTok token, rhs FieldExpr, rhsTok token) *regexp.Regexp {
	if t := lhs.StaticType(); t != TypeString && t != TypeAttribute {
		p.failAt(lhsTok.pos, nil, "%q matches strings, found %s", op.String(), describeExpr(lhs))
	}
	s, ok := rhs.(Static)
	if !ok || s.Type != TypeString {
		p.failAt(rhsTok.pos, nil, "the right side of %q must be a string literal holding a regular expression, found %s", op.String(), describeExpr(rhs))
	}
	// Compiling the bare pattern first rejects inputs such as "a)|(b" that
	// would otherwise slip out of the anchoring group below.
	if _, err := regexp.Compile(s.Str); err != nil {
		p.failAt(rhsTok.pos, err, "invalid regular expression %s: %v", strconv.Quote(s.Str), err)
	}
	re, err := regexp.Compile("^(?:" + s.Str + ")$")
	if err != nil {
		p.failAt(rhsTok.pos, err, "invalid regular expression %s: %v", strconv.Quote(s.Str), err)
	}
	return re
}

func (p *parser) checkComparison(op Operator, opTok token, lhs, rhs FieldExpr) {
	lt, rt := lhs.StaticType(), rhs.StaticType()
	if op != OpEq && op != OpNeq {
		for _, t := range []Type{lt, rt} {
			switch t {
			case TypeBool, TypeStatus, TypeKind, TypeNil:
				p.failAt(opTok.pos, nil, "%q cannot order %s values (only = and != apply)", op.String(), t)
			}
		}
	}
	if (lt == TypeNil || rt == TypeNil) && op == OpEq {
		// "= nil" asks for a missing value, which only attributes can be;
		// every span has its intrinsics, and every resource its service name
		// (Tempo refuses both the same way). "!= nil" on them is allowed: it
		// holds whenever the value exists.
		for _, e := range []FieldExpr{lhs, rhs} {
			if in, ok := e.(Intrinsic); ok {
				p.failAt(opTok.pos, nil, "cannot compare %s with nil: intrinsics always have a value (nil tests whether an attribute exists)", in)
			}
			if a, ok := e.(Attribute); ok && a.Scope == ScopeResource && a.Name == "service.name" {
				p.failAt(opTok.pos, nil, "cannot compare %s with nil: every resource has a service name", a)
			}
		}
	}
	if !comparable(lt, rt) {
		p.failAt(opTok.pos, nil, "cannot compare %s with %s", describeExpr(lhs), describeExpr(rhs))
	}
}

// comparable reports whether values of the two static types can ever be
// compared. Attributes are untyped until read but never hold a status or a
// kind, and ints, floats and durations compare as numbers (a bare number
// against a duration counts nanoseconds).
func comparable(a, b Type) bool {
	switch {
	case a == TypeNil || b == TypeNil:
		return true
	case a == TypeAttribute:
		return b != TypeStatus && b != TypeKind
	case b == TypeAttribute:
		return a != TypeStatus && a != TypeKind
	case isNumeric(a) && isNumeric(b):
		return true
	}
	return a == b
}

func isNumeric(t Type) bool { return t == TypeInt || t == TypeFloat || t == TypeDuration }

// describeExpr names an expression and its type for error messages.
func describeExpr(e FieldExpr) string {
	switch e := e.(type) {
	case Static:
		if e.Type == TypeNil {
			return "nil"
		}
		return e.Type.String() + " " + e.String()
	case Intrinsic:
		if e.String() == e.StaticType().String() {
			return e.String()
		}
		return e.String() + " (" + e.StaticType().String() + ")"
	case Attribute:
		return "attribute " + e.String()
	}
	return e.StaticType().String() + " expression " + e.String()
}

// foldNumber computes arithmetic over number literals, as in "rate() > 1 / 2". A lone
// literal of any type comes back as it is; arithmetic over durations is not folded.
func foldNumber(e FieldExpr) (Static, bool) {
	if st, ok := e.(Static); ok {
		return st, true
	}
	f, ok := foldFloat(e)
	if !ok {
		return Static{}, false
	}
	return Static{Type: TypeFloat, Float: f}, true
}

func foldFloat(e FieldExpr) (float64, bool) {
	switch e := e.(type) {
	case Static:
		switch e.Type {
		case TypeInt:
			return float64(e.Int), true
		case TypeFloat:
			return e.Float, true
		}
	case *UnaryOp:
		if v, ok := foldFloat(e.Expr); ok && e.Op == OpNeg {
			return -v, true
		}
	case *BinaryOp:
		l, ok1 := foldFloat(e.LHS)
		r, ok2 := foldFloat(e.RHS)
		if !ok1 || !ok2 {
			return 0, false
		}
		switch e.Op {
		case OpAdd:
			return l + r, true
		case OpSub:
			return l - r, true
		case OpMul:
			return l * r, true
		case OpDiv:
			if r != 0 {
				return l / r, true
			}
		}
	}
	return 0, false
}
