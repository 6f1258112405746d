package traceql

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// intrinsicNames is the canonical spelling of each intrinsic: the short
// legacy name where TraceQL has one, else the scoped name.
var intrinsicNames = map[Intrinsic]string{
	IntrinsicName:                   "name",
	IntrinsicStatus:                 "status",
	IntrinsicStatusMessage:          "statusMessage",
	IntrinsicKind:                   "kind",
	IntrinsicDuration:               "duration",
	IntrinsicSpanID:                 "span:id",
	IntrinsicParentID:               "span:parentID",
	IntrinsicRootName:               "rootName",
	IntrinsicRootServiceName:        "rootServiceName",
	IntrinsicTraceDuration:          "traceDuration",
	IntrinsicTraceID:                "trace:id",
	IntrinsicEventName:              "event:name",
	IntrinsicEventTimeSinceStart:    "event:timeSinceStart",
	IntrinsicLinkTraceID:            "link:traceID",
	IntrinsicLinkSpanID:             "link:spanID",
	IntrinsicInstrumentationName:    "instrumentation:name",
	IntrinsicInstrumentationVersion: "instrumentation:version",
	IntrinsicChildCount:             "span:childCount",
	IntrinsicNestedSetLeft:          "nestedSetLeft",
	IntrinsicNestedSetRight:         "nestedSetRight",
	IntrinsicNestedSetParent:        "nestedSetParent",
}

// intrinsicByName accepts every spelling, aliases included.
var intrinsicByName = func() map[string]Intrinsic {
	m := map[string]Intrinsic{
		"span:name":            IntrinsicName,
		"span:status":          IntrinsicStatus,
		"span:statusMessage":   IntrinsicStatusMessage,
		"span:kind":            IntrinsicKind,
		"span:duration":        IntrinsicDuration,
		"trace:rootName":       IntrinsicRootName,
		"trace:rootService":    IntrinsicRootServiceName,
		"trace:duration":       IntrinsicTraceDuration,
		"childCount":           IntrinsicChildCount,
		"span:nestedSetLeft":   IntrinsicNestedSetLeft,
		"span:nestedSetRight":  IntrinsicNestedSetRight,
		"span:nestedSetParent": IntrinsicNestedSetParent,
	}
	for i, n := range intrinsicNames {
		m[n] = i
	}
	return m
}()

var scopeNames = map[AttributeScope]string{
	ScopeResource:        "resource",
	ScopeSpan:            "span",
	ScopeEvent:           "event",
	ScopeLink:            "link",
	ScopeInstrumentation: "instrumentation",
}

var scopeByName = map[string]AttributeScope{
	"resource":        ScopeResource,
	"span":            ScopeSpan,
	"event":           ScopeEvent,
	"link":            ScopeLink,
	"instrumentation": ScopeInstrumentation,
}

var statusNames = map[Status]string{StatusUnset: "unset", StatusOk: "ok", StatusError: "error"}

var kindNames = map[Kind]string{
	KindUnspecified: "unspecified",
	KindInternal:    "internal",
	KindServer:      "server",
	KindClient:      "client",
	KindProducer:    "producer",
	KindConsumer:    "consumer",
}

var operatorText = map[Operator]string{
	OpOr: "||", OpAnd: "&&",
	OpEq: "=", OpNeq: "!=", OpRegex: "=~", OpNotRegex: "!~",
	OpGt: ">", OpGte: ">=", OpLt: "<", OpLte: "<=",
	OpAdd: "+", OpSub: "-", OpMul: "*", OpDiv: "/", OpMod: "%", OpPow: "^",
	OpNot: "!", OpNeg: "-",
}

var spansetOperatorText = map[SpansetOperator]string{
	SpansetAnd: "&&", SpansetOr: "||",
	Descendant: ">>", Child: ">", Sibling: "~", Ancestor: "<<", Parent: "<",
	NotDescendant: "!>>", NotChild: "!>", NotSibling: "!~", NotAncestor: "!<<", NotParent: "!<",
	UnionDescendant: "&>>", UnionChild: "&>", UnionSibling: "&~", UnionAncestor: "&<<", UnionParent: "&<",
}

var aggregateNames = map[AggregateFunc]string{
	AggCount: "count", AggAvg: "avg", AggMin: "min", AggMax: "max", AggSum: "sum",
}

var metricsNames = map[MetricsFunc]string{
	MetricsRate:              "rate",
	MetricsCountOverTime:     "count_over_time",
	MetricsMinOverTime:       "min_over_time",
	MetricsMaxOverTime:       "max_over_time",
	MetricsAvgOverTime:       "avg_over_time",
	MetricsSumOverTime:       "sum_over_time",
	MetricsQuantileOverTime:  "quantile_over_time",
	MetricsHistogramOverTime: "histogram_over_time",
	MetricsCompare:           "compare",
}

var typeNames = map[Type]string{
	TypeAttribute: "attribute",
	TypeNil:       "nil",
	TypeBool:      "bool",
	TypeInt:       "int",
	TypeFloat:     "float",
	TypeString:    "string",
	TypeDuration:  "duration",
	TypeStatus:    "status",
	TypeKind:      "kind",
}

// String returns the canonical spelling, the short legacy name where TraceQL
// has one, else the scoped name ("span:id").
func (i Intrinsic) String() string { return nameOr(intrinsicNames, i) }

// String returns the scope's prefix without the dot, or "" for ScopeNone.
func (s AttributeScope) String() string {
	if s == ScopeNone {
		return ""
	}
	return nameOr(scopeNames, s)
}

// String returns the status literal as written in queries.
func (s Status) String() string { return nameOr(statusNames, s) }

// String returns the kind literal as written in queries.
func (k Kind) String() string { return nameOr(kindNames, k) }

// String returns the operator as written in queries.
func (op Operator) String() string { return nameOr(operatorText, op) }

// String returns the operator as written in queries.
func (op SpansetOperator) String() string { return nameOr(spansetOperatorText, op) }

// String returns the function name as written in queries.
func (f AggregateFunc) String() string { return nameOr(aggregateNames, f) }

// String returns the function name as written in queries.
func (f MetricsFunc) String() string { return nameOr(metricsNames, f) }

// String returns the type's name as used in error messages.
func (t Type) String() string { return nameOr(typeNames, t) }

// nameOr keeps a corrupt enum value visible in output instead of printing
// an empty string that would hide the bug.
func nameOr[K ~int](m map[K]string, k K) string {
	if s, ok := m[k]; ok {
		return s
	}
	return "<invalid " + strconv.Itoa(int(k)) + ">"
}

// String prints the canonical form of the query.
func (q *Query) String() string {
	var b strings.Builder
	if q.Math != nil {
		b.WriteString(q.Math.String())
	}
	for i, s := range q.Stages {
		if i > 0 {
			b.WriteString(" | ")
		}
		b.WriteString(s.String())
	}
	if q.Metrics != nil {
		b.WriteString(" | ")
		b.WriteString(q.Metrics.String())
	}
	for _, st := range q.MetricsStages {
		b.WriteString(st.String())
	}
	if len(q.Hints) > 0 {
		b.WriteString(" with(")
		for i, h := range q.Hints {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(h.Name)
			b.WriteString("=")
			b.WriteString(h.Value.String())
		}
		b.WriteString(")")
	}
	return b.String()
}

func (f *SpansetFilter) String() string {
	if f.Cond == nil {
		return "{ }"
	}
	return "{ " + f.Cond.String() + " }"
}

func (p *Pipeline) String() string {
	parts := make([]string, len(p.Stages))
	for i, s := range p.Stages {
		parts[i] = s.String()
	}
	return "(" + strings.Join(parts, " | ") + ")"
}

// String prints the filter with its leading space, as it follows the
// metrics function directly: "{ } | rate() > 10".
func (f *MetricsFilter) String() string { return " " + f.Op.String() + " " + f.Value.String() }

// String prints the stage with its leading pipe.
func (t *TopK) String() string {
	name := "topk"
	if t.Bottom {
		name = "bottomk"
	}
	return " | " + name + "(" + strconv.Itoa(t.K) + ")"
}

func (o *SpansetOp) String() string {
	p := o.Op.precedence()
	return wrapSpanset(o.LHS, p, false) + " " + o.Op.String() + " " + wrapSpanset(o.RHS, p, true)
}

// precedence orders spanset operators; all of them associate to the left.
func (op SpansetOperator) precedence() int {
	switch op {
	case SpansetOr:
		return 1
	case SpansetAnd:
		return 2
	}
	return 3
}

func wrapSpanset(e SpansetExpr, parent int, right bool) string {
	if o, ok := e.(*SpansetOp); ok {
		p := o.Op.precedence()
		if p < parent || (right && p == parent) {
			return "(" + o.String() + ")"
		}
	}
	return e.String()
}

func (s *ScalarFilter) String() string {
	return s.Agg.String() + " " + s.Op.String() + " " + s.Value.String()
}

func (a Aggregate) String() string {
	if a.Field == nil {
		return a.Func.String() + "()"
	}
	return a.Func.String() + "(" + a.Field.String() + ")"
}

func (g *GroupBy) String() string { return "by(" + joinFields(g.Fields) + ")" }
func (s *Select) String() string  { return "select(" + joinFields(s.Fields) + ")" }
func (*Coalesce) String() string  { return "coalesce()" }

func (m *MetricsAggregate) String() string {
	var b strings.Builder
	b.WriteString(m.Func.String())
	b.WriteString("(")
	if m.Field != nil {
		b.WriteString(m.Field.String())
	}
	if m.Selection != nil {
		b.WriteString(m.Selection.String())
		if m.TopN != 0 || m.CompareStart != 0 || m.CompareEnd != 0 {
			b.WriteString(", " + strconv.Itoa(m.TopN))
		}
		if m.CompareStart != 0 || m.CompareEnd != 0 {
			b.WriteString(", " + strconv.FormatInt(m.CompareStart, 10) + ", " + strconv.FormatInt(m.CompareEnd, 10))
		}
	}
	for _, q := range m.Quantiles {
		b.WriteString(", ")
		b.WriteString(formatFloat(q))
	}
	b.WriteString(")")
	if len(m.By) > 0 {
		b.WriteString(" by (")
		b.WriteString(joinFields(m.By))
		b.WriteString(")")
	}
	return b.String()
}

func joinFields(fs []FieldExpr) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.String()
	}
	return strings.Join(parts, ", ")
}

func (a Attribute) String() string {
	name := a.Name
	if needsQuotes(name, a.Scope == ScopeNone) {
		name = strconv.Quote(name)
	}
	if a.Scope == ScopeNone {
		return "." + name
	}
	return a.Scope.String() + "." + name
}

// needsQuotes reports whether an attribute name would not lex back as the
// same bare name.
func needsQuotes(name string, unscoped bool) bool {
	if name == "" {
		return true
	}
	// ".5" lexes as a number, so an unscoped name may not open with a digit.
	if unscoped && name[0] >= '0' && name[0] <= '9' {
		return true
	}
	for i, r := range name {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(name[i:]); size == 1 {
				return true
			}
		}
		if !isNameRune(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

func (s Static) String() string {
	switch s.Type {
	case TypeNil:
		return "nil"
	case TypeBool:
		return strconv.FormatBool(s.Bool)
	case TypeInt:
		if s.Int == math.MinInt64 {
			// Its digits alone overflow an int64, so "-9223372036854775808" would not lex back.
			return "minInt"
		}
		return strconv.FormatInt(s.Int, 10)
	case TypeFloat:
		return formatFloat(s.Float)
	case TypeString:
		return strconv.Quote(s.Str)
	case TypeDuration:
		return formatDuration(s.Dur)
	case TypeStatus:
		return s.Status.String()
	case TypeKind:
		return s.Kind.String()
	}
	return "<invalid static>"
}

// formatFloat never uses an exponent and always keeps a decimal point, so
// the literal lexes back as the same float, not as an int.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".IN") {
		s += ".0"
	}
	return s
}

// formatDuration prefers the largest whole unit ("2m" rather than "2m0s")
// and ASCII "us" over "µs" so canonical queries are easy to type.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strings.ReplaceAll(d.String(), "µs", "us")
}

// precedence orders field operators; higher binds tighter.
func (op Operator) precedence() int {
	switch op {
	case OpOr:
		return 1
	case OpAnd:
		return 2
	case OpAdd, OpSub:
		return 4
	case OpMul, OpDiv, OpMod:
		return 5
	case OpPow:
		return 6
	}
	if op.IsComparison() {
		return 3
	}
	return 7
}

func (b *BinaryOp) String() string {
	p := b.Op.precedence()
	return wrapField(b.LHS, b.Op, p, false) + " " + b.Op.String() + " " + wrapField(b.RHS, b.Op, p, true)
}

// wrapField parenthesises a child only where the parser would otherwise
// build a different tree: lower precedence, or equal precedence on the side
// the operator does not associate to. Comparisons do not chain at all.
func wrapField(e FieldExpr, parent Operator, pp int, right bool) string {
	c, ok := e.(*BinaryOp)
	if !ok {
		return e.String()
	}
	cp := c.Op.precedence()
	wrap := cp < pp
	if cp == pp {
		switch {
		case parent.IsComparison():
			wrap = true
		case parent == OpPow:
			wrap = !right
		default:
			wrap = right
		}
	}
	if wrap {
		return "(" + c.String() + ")"
	}
	return c.String()
}

func (u *UnaryOp) String() string {
	if _, ok := u.Expr.(*BinaryOp); ok {
		return u.Op.String() + "(" + u.Expr.String() + ")"
	}
	return u.Op.String() + u.Expr.String()
}

// String prints the operation with every operand but numbers in parentheses.
func (m *MetricsMath) String() string {
	return mathOperand(m.LHS) + " " + m.Op.String() + " " + mathOperand(m.RHS)
}

func mathOperand(o MetricsOperand) string {
	if n, ok := o.(MetricsNumber); ok {
		return n.String()
	}
	return "(" + o.String() + ")"
}

func (n MetricsNumber) String() string { return strconv.FormatFloat(float64(n), 'f', -1, 64) }
